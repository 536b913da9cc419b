package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// Chunks is the number of chunk objects found.
	Chunks int `json:"chunks"`
	// Deleted and DeletedBytes count the unreferenced chunks removed (or
	// that would be, with DryRun).
	Deleted      int   `json:"deleted"`
	DeletedBytes int64 `json:"deleted_bytes"`
	// Young counts unreferenced chunks kept because they are younger than
	// the grace period.
	Young int `json:"young"`
	// StaleMarked lists pending snapshots found abandoned and marked failed.
	StaleMarked []string `json:"stale_marked,omitempty"`
	// OrphanManifests counts manifests without a completed entry removed.
	OrphanManifests int `json:"orphan_manifests"`
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
			return nil
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
		"deleted", res.Deleted, "deleted_bytes", res.DeletedBytes, "young", res.Young, "dry_run", opts.DryRun)
	return res, nil
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
