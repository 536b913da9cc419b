package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// GCOptions control a garbage collection.
type GCOptions struct {
	// DryRun counts what would be deleted without deleting anything.
	DryRun bool
	// Roots, when set, adds chunks that are live for reasons the catalogue
	// does not know (the block maps of cached volumes): it calls add for
	// each. It runs while the collector holds its lease.
	Roots func(ctx context.Context, add func(ChunkID)) error
}

// GCResult reports a garbage collection.
type GCResult struct {
	// Deferred is true when a snapshot was being written: nothing was
	// deleted, try again later.
	Deferred bool `json:"deferred"`
	// Snapshots is the number of completed manifests read.
	Snapshots int `json:"snapshots"`
	// LiveChunks is the number of distinct referenced chunks.
	LiveChunks int `json:"live_chunks"`
	// Chunks is the number of stored chunks found: chunk objects and
	// chunks in packs.
	Chunks int `json:"chunks"`
	// Deleted and DeletedBytes count the unreferenced (or redundant: stored
	// twice) chunks removed, or that would be with DryRun.
	Deleted      int   `json:"deleted"`
	DeletedBytes int64 `json:"deleted_bytes"`
	// Young counts unreferenced chunks kept because they are younger than
	// the grace period.
	Young int `json:"young"`
	// StaleMarked lists pending snapshots found abandoned and marked failed.
	StaleMarked []string `json:"stale_marked,omitempty"`
	// OrphanManifests counts manifests without a completed entry removed.
	OrphanManifests int `json:"orphan_manifests"`
	// Packs is the number of packs found. A pack with unreferenced chunks
	// is rewritten (its live chunks, ChunksMoved, go to new packs) or,
	// when none is live, deleted. OrphanPacks counts packs without an
	// index (a writer crashed between the two) removed, and
	// DanglingIndexes indexes without a pack.
	Packs           int `json:"packs"`
	PacksRewritten  int `json:"packs_rewritten"`
	PacksDeleted    int `json:"packs_deleted"`
	ChunksMoved     int `json:"chunks_moved"`
	OrphanPacks     int `json:"orphan_packs"`
	DanglingIndexes int `json:"dangling_indexes"`
	// IndexesWritten counts the merged index objects written, and
	// IndexesDeleted the index objects they replaced or whose packs went.
	IndexesWritten int `json:"indexes_written"`
	IndexesDeleted int `json:"indexes_deleted"`
}

// GC deletes chunks that no completed snapshot references. It takes the
// collector lease (ErrBusy when another collection holds it), marks
// abandoned pending snapshots as failed, and defers (Deferred) when a live
// snapshot is being written; see DESIGN.md for why this never deletes a
// chunk a completed or in-flight snapshot needs.
func (c *Catalog) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	var res GCResult
	release, err := c.acquireLease(ctx)
	if err != nil {
		return res, err
	}
	defer release()

	infos, err := c.List(ctx, ListFilter{})
	if err != nil {
		return res, err
	}
	live := make(map[ChunkID]struct{})
	completed := make(map[string]bool)
	for _, in := range infos {
		switch in.Status {
		case StatusPending:
			if !c.stale(in) {
				res.Deferred = true
				continue
			}
			if opts.DryRun {
				res.Deferred = true
				continue
			}
			err := c.MarkFailed(ctx, in.ID, "abandoned: no heartbeat since "+in.Heartbeat.Format(time.RFC3339))
			if errors.Is(err, ErrConflict) {
				res.Deferred = true // its writer came back
				continue
			}
			if err != nil {
				return res, err
			}
			res.StaleMarked = append(res.StaleMarked, in.ID)
		case StatusCompleted:
			completed[in.ID] = true
		}
	}
	if res.Deferred {
		c.log.Info("gc deferred: a snapshot is being written")
		return res, nil
	}
	for id := range completed {
		m, err := c.readManifest(ctx, id)
		if err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
		res.Snapshots++
		for _, b := range m.Map.Blocks {
			if !b.ID.IsZero() {
				live[b.ID] = struct{}{}
			}
		}
	}
	if opts.Roots != nil {
		if err := opts.Roots(ctx, func(id ChunkID) { live[id] = struct{}{} }); err != nil {
			return res, fmt.Errorf("gc roots: %w", err)
		}
	}
	res.LiveChunks = len(live)

	// Manifests whose entry is gone or failed.
	mprefix := c.o.Prefix + "manifests/"
	var orphans []string
	err = objstore.ListAll(ctx, c.store, mprefix, func(o objstore.ObjectInfo) error {
		if !completed[strings.TrimPrefix(o.Key, mprefix)] {
			orphans = append(orphans, o.Key)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gc: listing manifests: %w", err)
	}
	res.OrphanManifests = len(orphans)
	if !opts.DryRun {
		for _, k := range orphans {
			if err := c.store.Delete(ctx, k); err != nil {
				return res, fmt.Errorf("gc: %w", err)
			}
		}
	}

	cutoff := c.o.Now().Add(-c.o.GCGrace)
	// Packs first: a chunk kept in a pack makes its other copies (chunk
	// objects, or another pack) redundant.
	kept := make(map[ChunkID]struct{}, len(live))
	if err := c.sweepPacks(ctx, opts, live, kept, cutoff, &res); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	var doomed []ChunkID
	flush := func() error {
		if len(doomed) == 0 || opts.DryRun {
			doomed = doomed[:0]
			return nil
		}
		if err := c.failpoint("gc.delete"); err != nil {
			return err
		}
		err := c.chunks.deleteMany(ctx, doomed)
		doomed = doomed[:0]
		return err
	}
	err = objstore.ListAll(ctx, c.store, c.chunks.Prefix(), func(o objstore.ObjectInfo) error {
		id, ok := c.chunks.IDFromKey(o.Key)
		if !ok {
			return nil
		}
		res.Chunks++
		if _, ok := live[id]; ok {
			if _, dup := kept[id]; !dup {
				kept[id] = struct{}{}
				return nil
			}
		}
		if o.LastModified.After(cutoff) {
			res.Young++
			return nil
		}
		res.Deleted++
		res.DeletedBytes += o.Size
		doomed = append(doomed, id)
		if len(doomed) == objstore.MaxDeleteBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	c.log.Info("gc done", "snapshots", res.Snapshots, "live", res.LiveChunks, "chunks", res.Chunks,
		"deleted", res.Deleted, "deleted_bytes", res.DeletedBytes, "young", res.Young,
		"packs", res.Packs, "packs_rewritten", res.PacksRewritten, "packs_deleted", res.PacksDeleted,
		"dry_run", opts.DryRun)
	return res, nil
}

// sweepPacks is GC's pass over the packs. Every live chunk found in a pack
// is added to kept, once: a later copy is redundant. A pack whose chunks
// are all kept stays. A pack with unreferenced or redundant chunks has its
// kept chunks written to new packs, and only after those and their indexes
// are stored do its index and then the pack go, so a reader always finds
// a live chunk somewhere (a reader that knew the old place looks again;
// see ChunkStore.GetObject). Packs younger than the grace period are left
// as they are.
func (c *Catalog) sweepPacks(ctx context.Context, opts GCOptions, live, kept map[ChunkID]struct{}, cutoff time.Time, res *GCResult) error {
	cs := c.chunks
	if err := cs.Refresh(ctx); err != nil {
		return err
	}
	for id, err := range cs.badIndexes() {
		// Its pack would look like an orphan, and its live chunks go.
		return fmt.Errorf("index of pack %s is damaged, not collecting: %w", id, err)
	}
	objs := make(map[string]objstore.ObjectInfo)
	prefix := cs.root + "packs/"
	err := objstore.ListAll(ctx, c.store, prefix, func(o objstore.ObjectInfo) error {
		if id := strings.TrimPrefix(o.Key, prefix); validPackID(id) {
			objs[id] = o
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing packs: %w", err)
	}
	var (
		w       *packWriter
		retired []string
		gone    = make(map[string]bool) // packs retired or missing: their descriptions go
	)
	defer func() {
		if w != nil {
			w.discard()
		}
	}()
	for _, p := range cs.loadedPacks() {
		o, ok := objs[p.id]
		if !ok {
			res.DanglingIndexes++
			gone[p.id] = true
			continue
		}
		delete(objs, p.id)
		res.Packs++
		young := o.LastModified.After(cutoff)
		var (
			keep      []packEntry
			dead      int
			deadBytes int64
		)
		for _, e := range p.entries {
			res.Chunks++
			_, isLive := live[e.ID]
			_, dup := kept[e.ID]
			switch {
			case isLive && !dup:
				kept[e.ID] = struct{}{}
				keep = append(keep, e)
			case young:
				res.Young++
			default:
				dead++
				deadBytes += int64(e.Len)
			}
		}
		if young || dead == 0 {
			continue
		}
		res.Deleted += dead
		res.DeletedBytes += deadBytes
		if len(keep) == 0 {
			res.PacksDeleted++
		} else {
			res.PacksRewritten++
			res.ChunksMoved += len(keep)
		}
		if opts.DryRun {
			continue
		}
		if len(keep) > 0 {
			if w == nil {
				size := c.o.PackSize
				if size <= 0 { // packing is off for new runs; rewrites still pack
					size = DefaultPackSize
				}
				w = newPackWriter(cs, size, 2, &c.packBufs, c.o.Failpoint)
			}
			if err := c.movePacked(ctx, w, p.id, o.Size, keep); err != nil {
				return err
			}
		}
		retired = append(retired, p.id)
		gone[p.id] = true
	}
	if w != nil {
		if err := w.flush(ctx); err != nil {
			return err
		}
	}
	if len(retired) > 0 {
		if err := c.failpoint("gc.repacked"); err != nil {
			return err
		}
	}
	// Descriptions first: a pack no index describes is never read.
	if !opts.DryRun {
		if err := c.reindex(ctx, gone, res); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(retired))
	for _, id := range retired {
		keys = append(keys, cs.packKey(id))
	}
	// Packs without an index: a writer crashed before storing it.
	for id, o := range objs {
		if o.LastModified.After(cutoff) {
			continue
		}
		res.OrphanPacks++
		if !opts.DryRun {
			keys = append(keys, cs.packKey(id))
		}
	}
	if err := deleteKeys(ctx, c.store, keys); err != nil {
		return err
	}
	return cs.Refresh(ctx)
}

// reindex deletes the index objects of gone packs and rewrites merged ones
// that describe any; and once IndexMergeMin packs have index objects of
// their own, it merges those too. The surviving packs of every index object
// it replaces go into new merged index objects (of about 8 MiB), which are
// stored before the old ones are deleted, so every surviving pack stays
// described at every instant. A pack described twice (after a crash in
// here) keeps one description.
func (c *Catalog) reindex(ctx context.Context, gone map[string]bool, res *GCResult) error {
	cs := c.chunks
	sources := cs.loadedSources() // after the rewrites: GC's new packs included
	names := slices.Sorted(maps.Keys(sources))
	singles := 0
	for _, name := range names {
		if validPackID(name) {
			singles++
		}
	}
	merge := singles >= c.o.IndexMergeMin
	// Merged indexes that stay: clean ones, each pack described once.
	kept := make(map[string]bool)
	replace := make(map[string]bool)
	for _, name := range names {
		if validPackID(name) {
			continue
		}
		clean := true
		for _, p := range sources[name] {
			clean = clean && !gone[p.id] && !kept[p.id]
		}
		if !clean {
			replace[name] = true
			continue
		}
		for _, p := range sources[name] {
			kept[p.id] = true
		}
	}
	var drop []string
	for _, name := range names {
		if !validPackID(name) {
			continue
		}
		switch {
		case gone[name] || kept[name]:
			drop = append(drop, name) // its pack goes, or a merged index has it
		case merge:
			replace[name] = true
		}
	}
	var move []*packInfo
	for _, name := range names {
		if !replace[name] {
			continue
		}
		drop = append(drop, name)
		for _, p := range sources[name] {
			if !gone[p.id] && !kept[p.id] {
				kept[p.id] = true
				move = append(move, p)
			}
		}
	}
	slices.SortFunc(move, func(a, b *packInfo) int { return strings.Compare(a.id, b.id) })
	for len(move) > 0 {
		k, size := 0, packIndexHeaderLen+sha256.Size
		for k < len(move) && k < maxMergedPacks {
			n := 20 + len(move[k].entries)*packEntryLen
			if k > 0 && size+n > mergedTarget {
				break
			}
			size += n
			k++
		}
		b := encodeMergedIndex(move[:k])
		name := mergedPrefix + newPackID()
		if _, err := c.store.Put(ctx, cs.indexKey(name), bytes.NewReader(b), int64(len(b)), objstore.PutOptions{}); err != nil {
			return fmt.Errorf("storing merged pack index %s: %w", name, err)
		}
		res.IndexesWritten++
		move = move[k:]
	}
	if res.IndexesWritten > 0 {
		if err := c.failpoint("gc.reindexed"); err != nil {
			return err
		}
	}
	res.IndexesDeleted = len(drop)
	keys := make([]string, len(drop))
	for i, name := range drop {
		keys[i] = cs.indexKey(name)
	}
	return deleteKeys(ctx, c.store, keys)
}

// movePacked reads a pack and adds the chunks in keep to w.
func (c *Catalog) movePacked(ctx context.Context, w *packWriter, id string, size int64, keep []packEntry) error {
	if size < 0 || size > maxPackData+packIndexHeaderLen+maxPackChunks*packEntryLen+64+packFooterLen {
		return fmt.Errorf("pack %s is %d bytes: %w", id, size, ErrCorrupt)
	}
	rc, _, err := c.store.Get(ctx, c.chunks.packKey(id), objstore.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading pack %s: %w", id, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, size))
	if err != nil {
		return fmt.Errorf("reading pack %s: %w", id, err)
	}
	for _, e := range keep {
		end := int64(e.Off) + int64(e.Len)
		if end > int64(len(body)) {
			return fmt.Errorf("pack %s: chunk %s at %d+%d past its end (%d): %w", id, e.ID, e.Off, e.Len, len(body), ErrCorrupt)
		}
		if _, _, err := w.add(ctx, e.ID, body[e.Off:end]); err != nil {
			return err
		}
	}
	return nil
}

// deleteKeys removes objects in batches; missing ones are ignored.
func deleteKeys(ctx context.Context, s objstore.Store, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), objstore.MaxDeleteBatch)
		failed, err := s.DeleteMany(ctx, keys[:n])
		if err != nil {
			return fmt.Errorf("deleting: %w", err)
		}
		for k, e := range failed {
			return fmt.Errorf("deleting %s: %w", k, e)
		}
		keys = keys[n:]
	}
	return nil
}

// acquireLease takes the collector lease and keeps it fresh until release
// is called.
func (c *Catalog) acquireLease(ctx context.Context) (release func(), err error) {
	holder := NewID(c.o.Now())
	write := func(ctx context.Context, create bool, ifMatch string) (string, error) {
		b, _ := json.Marshal(gcLease{Holder: holder, Expires: c.o.Now().Add(c.o.StaleAfter)})
		oi, err := c.store.Put(ctx, c.gcLockKey(), bytes.NewReader(b), int64(len(b)),
			objstore.PutOptions{ContentType: "application/json", IfNoneMatch: create, IfMatch: ifMatch})
		if errors.Is(err, objstore.ErrPreconditionFailed) || (ifMatch != "" && errors.Is(err, objstore.ErrNotFound)) {
			return "", fmt.Errorf("gc lease: %w", ErrBusy)
		}
		if err != nil {
			return "", fmt.Errorf("gc lease: %w", err)
		}
		return oi.ETag, nil
	}
	l, etag, err := c.readLease(ctx)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		etag, err = write(ctx, true, "")
	case err != nil:
		return nil, fmt.Errorf("gc lease: %w", err)
	case c.o.Now().Before(l.Expires):
		return nil, fmt.Errorf("gc lease held by %s until %s: %w", l.Holder, l.Expires.Format(time.RFC3339), ErrBusy)
	default:
		etag, err = write(ctx, false, etag)
	}
	if err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(c.o.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			if e, err := write(rctx, false, etag); err == nil {
				etag = e
			} else {
				c.log.Warn("gc lease refresh", "err", err)
			}
		}
	}()
	return func() {
		stop()
		<-done
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, cur, err := c.readLease(dctx); err == nil && cur == etag {
			_ = c.store.Delete(dctx, c.gcLockKey())
		}
	}, nil
}
