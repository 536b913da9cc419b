package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// MapRequest describes a snapshot whose block map already exists: a cached
// volume's live block map, whose chunks are all in the store. Nothing is
// read or uploaded but the manifest and the catalogue entry.
type MapRequest struct {
	// ID is the snapshot id; empty picks a new one (NewID). An id whose
	// entry is pending is resumed; one that completed returns its entry.
	ID string
	// Volume names the volume.
	Volume string
	// Size, BlockSize and Codec describe the image; Freeze must return a
	// map of this geometry.
	Size      int64
	BlockSize int
	Codec     Codec
	// Parent is recorded in the entry (informational).
	Parent string
	// Freeze returns the block map to store. It is called once the pending
	// entry is recorded and no garbage collection is running, so every
	// chunk the map references (and that is in the store at that moment)
	// stays until the snapshot completes. The map must not change after
	// Freeze returns.
	Freeze func(ctx context.Context) (*BlockMap, error)
	// Description and Tags are stored in the entry.
	Description string
	Tags        map[string]string
}

// CreateFromMap records a completed snapshot from a block map (see
// MapRequest): pending entry, wait for a running GC, Freeze, manifest,
// completed entry. The failpoints are those of Create
// ("create.manifest-written", "create.committed"). On failure the entry is
// marked failed unless ctx was cancelled or the store is unreachable; it
// then stays pending and the same ID resumes it.
func (c *Catalog) CreateFromMap(ctx context.Context, req MapRequest) (Info, error) {
	if req.Freeze == nil {
		return Info{}, fmt.Errorf("no block map: %w", ErrInvalid)
	}
	// checkRequest wants a source; the map plays that part.
	creq := CreateRequest{
		ID: req.ID, Volume: req.Volume, Size: req.Size, BlockSize: req.BlockSize, Codec: req.Codec,
		Parent: req.Parent, Source: mapSource{}, Description: req.Description, Tags: req.Tags,
	}
	if err := c.checkRequest(creq); err != nil {
		return Info{}, err
	}
	if creq.ID == "" {
		creq.ID = NewID(c.o.Now())
	}
	r := &createRun{c: c, req: creq}
	done, err := r.begin(ctx)
	if err != nil || done {
		return r.info, err
	}
	err = r.runFromMap(ctx, req.Freeze)
	if err == nil {
		return r.info, nil
	}
	if errors.Is(err, ErrFailpoint) {
		return r.snapshotInfo(), err
	}
	if ctx.Err() == nil && !errors.Is(err, ErrConflict) && !objstore.IsRetryable(err) {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if merr := r.fail(mctx, err); merr != nil {
			c.log.Warn("cannot record snapshot failure", "id", creq.ID, "err", merr)
		}
	}
	return r.snapshotInfo(), err
}

// mapSource satisfies CreateRequest.Source for checkRequest; it is never
// read.
type mapSource struct{}

func (mapSource) ReadBlock(context.Context, int64, []byte) error {
	return fmt.Errorf("block map snapshots read no blocks: %w", ErrInvalid)
}

func (r *createRun) runFromMap(ctx context.Context, freeze func(context.Context) (*BlockMap, error)) error {
	c, req := r.c, r.req
	if err := c.waitGC(ctx); err != nil {
		return err
	}
	bm, err := freeze(ctx)
	if err != nil {
		return fmt.Errorf("freezing block map of %s: %w", req.Volume, err)
	}
	if bm.Size != req.Size || bm.BlockSize != req.BlockSize || int64(len(bm.Blocks)) != bm.NumBlocks() {
		return fmt.Errorf("block map geometry of %s does not match the request: %w", req.Volume, ErrInvalid)
	}
	m := &Manifest{ID: req.ID, Volume: req.Volume, Parent: req.Parent, Created: r.info.Created, Map: *bm}
	mb := m.Encode()
	if _, err := c.store.Put(ctx, c.manifestKey(req.ID), bytes.NewReader(mb), int64(len(mb)), objstore.PutOptions{}); err != nil {
		return fmt.Errorf("writing manifest of %s: %w", req.ID, err)
	}
	if err := c.failpoint("create.manifest-written"); err != nil {
		return err
	}
	logical, referenced, _ := bm.Stats()
	var blocks int64
	for _, b := range bm.Blocks {
		if !b.ID.IsZero() {
			blocks++
		}
	}
	now := c.o.Now().UTC()
	err = r.update(ctx, func(in *Info) {
		in.Status = StatusCompleted
		in.Completed = &now
		in.Heartbeat = now
		in.LogicalBytes = logical
		in.ReferencedBytes = referenced
		in.Blocks = blocks
	})
	if err != nil {
		return fmt.Errorf("committing snapshot %s: %w", req.ID, err)
	}
	if err := c.failpoint("create.committed"); err != nil {
		return err
	}
	c.log.Info("snapshot completed from block map", "id", req.ID, "volume", req.Volume, "blocks", blocks)
	return nil
}

// WaitGC returns when no garbage collection holds the collector lease (or
// ctx ends). Writers that add chunks outside Create (cached volumes'
// uploaders) call it after registering the chunks they are about to
// reference with their GCOptions.Roots, so that a collection either sees
// those chunks or runs entirely before the writer looks at the store.
func (c *Catalog) WaitGC(ctx context.Context) error {
	if err := c.waitGC(ctx); err != nil {
		return fmt.Errorf("waiting for gc: %w", err)
	}
	return nil
}

// liveMapKey is where a cached volume's live block map is kept.
func (c *Catalog) liveMapKey(volume string) string { return c.o.Prefix + "live/" + volume + ".map" }

// PutLiveMap stores a cached volume's live block map (manifest encoding,
// volume name in the Volume field) under live/<volume>.map, replacing the
// previous one. It is the volume's state in the store for recovery when
// its cache is lost; garbage collection does not read it (the cache's
// Roots keep the chunks alive while the cache exists).
func (c *Catalog) PutLiveMap(ctx context.Context, volume string, bm *BlockMap) error {
	if !validID(volume) {
		return fmt.Errorf("volume name %q: %w", volume, ErrInvalid)
	}
	b := (&Manifest{Volume: volume, Created: c.o.Now(), Map: *bm}).Encode()
	if _, err := c.store.Put(ctx, c.liveMapKey(volume), bytes.NewReader(b), int64(len(b)), objstore.PutOptions{}); err != nil {
		return fmt.Errorf("storing live map of %s: %w", volume, err)
	}
	return nil
}

// LiveMap reads a cached volume's live block map stored by PutLiveMap
// (ErrNotFound when there is none) and when it was stored.
func (c *Catalog) LiveMap(ctx context.Context, volume string) (*BlockMap, time.Time, error) {
	if !validID(volume) {
		return nil, time.Time{}, fmt.Errorf("volume name %q: %w", volume, ErrInvalid)
	}
	rc, _, err := c.store.Get(ctx, c.liveMapKey(volume), objstore.GetOptions{})
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, time.Time{}, fmt.Errorf("live map of %s: %w", volume, ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reading live map of %s: %w", volume, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestBlocks*48))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reading live map of %s: %w", volume, err)
	}
	m, err := DecodeManifest(b)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("live map of %s: %w", volume, err)
	}
	if m.Volume != volume {
		return nil, time.Time{}, fmt.Errorf("live map of %s names %q: %w", volume, m.Volume, ErrCorrupt)
	}
	return &m.Map, m.Created, nil
}

// DeleteLiveMap removes a cached volume's live block map.
func (c *Catalog) DeleteLiveMap(ctx context.Context, volume string) error {
	if !validID(volume) {
		return fmt.Errorf("volume name %q: %w", volume, ErrInvalid)
	}
	if err := c.store.Delete(ctx, c.liveMapKey(volume)); err != nil {
		return fmt.Errorf("deleting live map of %s: %w", volume, err)
	}
	return nil
}
