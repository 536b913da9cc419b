package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// BlockSource is the point-in-time image a snapshot reads. It must keep
// returning the content the volume had when the snapshot was taken, even
// while the volume is written (stored volumes copy a block aside before
// overwriting it). Implementations must be safe for concurrent use.
type BlockSource interface {
	// ReadBlock fills p with block i of the image; len(p) is the block
	// length (the last block of a volume may be short).
	ReadBlock(ctx context.Context, i int64, p []byte) error
}

// CreateRequest describes a snapshot to take.
type CreateRequest struct {
	// ID is the snapshot id; empty picks a new one (NewID). Creating an id
	// whose entry is pending resumes that snapshot (after a crash); an id
	// that already completed returns its entry.
	ID string
	// Volume names the volume.
	Volume string
	// Size and BlockSize describe the image; BlockSize must be a valid
	// block size (see ValidBlockSize).
	Size      int64
	BlockSize int
	// Codec compresses new chunks.
	Codec Codec
	// Parent is the id of a completed snapshot of the same image geometry
	// that Changed is relative to; blocks not in Changed are taken from it.
	Parent string
	// Changed is the set of blocks to read from Source. With a Parent,
	// blocks outside it keep the parent's chunks; without one they are
	// holes. Nil means every block.
	Changed *Bitmap
	// Source supplies the blocks.
	Source BlockSource
	// Description and Tags are stored in the entry.
	Description string
	Tags        map[string]string
}

// createRun is the state of one Create.
type createRun struct {
	c      *Catalog
	req    CreateRequest
	bm     *BlockMap
	parent *BlockMap

	mu   sync.Mutex
	info Info
	etag string
	// known holds the chunks this run stored or found, so a content
	// repeated within the changed set is sent once; it grows with the
	// changed set only.
	known map[ChunkID]uint32
	// check: ask the store before uploading (resumes, CheckExisting).
	check bool
	// packs, when the run packs its new chunks, and the chunk objects
	// listed at its start (a conditional PUT no longer tells whether a
	// chunk exists).
	packs  *packWriter
	listed listedChunks

	uploaded, uploadedBytes, read atomic.Int64
}

// Create takes a snapshot: it records a pending entry, reads the changed
// blocks from req.Source with Concurrency workers (hashing, skipping
// all-zero blocks, compressing and uploading only chunks the store does
// not have), writes the manifest and marks the entry completed.
//
// A failure marks the entry as failed, except when ctx is cancelled or the
// store cannot be reached to record it: the entry then stays pending and
// Create with the same ID resumes it. Chunks already stored are found again
// and not re-uploaded.
func (c *Catalog) Create(ctx context.Context, req CreateRequest) (Info, error) {
	if err := c.checkRequest(req); err != nil {
		return Info{}, err
	}
	if req.ID == "" {
		req.ID = NewID(c.o.Now())
	}
	r := &createRun{c: c, req: req, check: c.o.CheckExisting}
	done, err := r.begin(ctx)
	if err != nil || done {
		return r.info, err
	}
	err = r.run(ctx)
	if err == nil {
		return r.info, nil
	}
	if errors.Is(err, ErrFailpoint) {
		return r.snapshotInfo(), err // a simulated crash: no cleanup
	}
	if ctx.Err() == nil && !errors.Is(err, ErrConflict) {
		// Record the failure; if the store is down, the entry stays
		// pending and can be resumed or goes stale.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if merr := r.fail(mctx, err); merr != nil {
			c.log.Warn("cannot record snapshot failure", "id", req.ID, "err", merr)
		}
	}
	return r.snapshotInfo(), err
}

func (c *Catalog) checkRequest(req CreateRequest) error {
	switch {
	case req.Volume == "" || len(req.Volume) > maxNameLen:
		return fmt.Errorf("volume name %q: %w", req.Volume, ErrInvalid)
	case req.ID != "" && !validID(req.ID):
		return fmt.Errorf("snapshot id %q: %w", req.ID, ErrInvalid)
	case !ValidBlockSize(req.BlockSize):
		return fmt.Errorf("block size %d: %w", req.BlockSize, ErrInvalid)
	case req.Size <= 0 || req.Size > MaxVolumeSize:
		return fmt.Errorf("volume size %d: %w", req.Size, ErrInvalid)
	case req.Codec > CodecLZ4:
		return fmt.Errorf("codec %d: %w", req.Codec, ErrInvalid)
	case req.Source == nil:
		return fmt.Errorf("no block source: %w", ErrInvalid)
	}
	n := (req.Size + int64(req.BlockSize) - 1) / int64(req.BlockSize)
	if req.Changed != nil && req.Changed.Len() != n {
		return fmt.Errorf("changed-block set covers %d blocks, volume has %d: %w", req.Changed.Len(), n, ErrInvalid)
	}
	return nil
}

func (r *createRun) snapshotInfo() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// begin writes (or takes over) the pending entry. done is true when the
// snapshot had already completed.
func (r *createRun) begin(ctx context.Context) (done bool, err error) {
	c, req := r.c, r.req
	now := c.o.Now().UTC()
	in, etag, err := c.readEntry(ctx, req.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		in = Info{
			ID: req.ID, Volume: req.Volume, Parent: req.Parent, Status: StatusPending,
			Created: now, Heartbeat: now, Size: req.Size, BlockSize: req.BlockSize,
			Codec: req.Codec, Description: req.Description, Tags: req.Tags,
		}
		etag, err = c.writeEntry(ctx, in, true, "")
		if err != nil {
			return false, err
		}
	case err != nil:
		return false, err
	case in.Status == StatusCompleted:
		r.info = in
		return true, nil
	case in.Status == StatusError:
		r.info = in
		return false, fmt.Errorf("snapshot %s failed earlier (%s): %w", req.ID, in.Error, ErrConflict)
	default:
		if in.Volume != req.Volume || in.Size != req.Size || in.BlockSize != req.BlockSize || in.Parent != req.Parent {
			return false, fmt.Errorf("resuming snapshot %s with a different request: %w", req.ID, ErrInvalid)
		}
		in.Heartbeat = now
		if etag, err = c.writeEntry(ctx, in, false, etag); err != nil {
			return false, err
		}
		r.check = true // most chunks may be stored already
		c.log.Info("resuming snapshot", "id", req.ID, "volume", req.Volume)
	}
	r.info, r.etag = in, etag
	return false, nil
}

// heartbeat refreshes the entry until ctx ends; when the entry was changed
// by someone else (GC declared it stale) it cancels the run.
func (r *createRun) heartbeat(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(r.c.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.update(ctx, func(in *Info) { in.Heartbeat = r.c.o.Now().UTC() })
		if errors.Is(err, ErrConflict) {
			cancel(err)
			return
		}
		if err != nil {
			r.c.log.Warn("snapshot heartbeat", "id", r.req.ID, "err", err)
		}
	}
}

// update writes the entry with fn applied, conditional on the last ETag.
func (r *createRun) update(ctx context.Context, fn func(*Info)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.info
	fn(&in)
	etag, err := r.c.writeEntry(ctx, in, false, r.etag)
	if err != nil {
		return err
	}
	r.info, r.etag = in, etag
	return nil
}

func (r *createRun) fail(ctx context.Context, cause error) error {
	if err := r.update(ctx, func(in *Info) { in.Status, in.Error = StatusError, cause.Error() }); err != nil {
		return err
	}
	r.c.log.Warn("snapshot failed", "id", r.req.ID, "volume", r.req.Volume, "err", cause)
	return r.c.store.Delete(ctx, r.c.manifestKey(r.req.ID))
}

func (r *createRun) run(ctx context.Context) error {
	c, req := r.c, r.req
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hbCtx, hbStop := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		r.heartbeat(hbCtx, cancel)
	}()
	defer func() { hbStop(); <-hbDone }()

	start := time.Now()
	if err := c.waitGC(ctx); err != nil {
		return err
	}
	var err error
	r.bm, err = NewBlockMap(req.Size, req.BlockSize, req.Codec)
	if err != nil {
		return err
	}
	r.known = make(map[ChunkID]uint32)
	if req.Parent != "" {
		pm, err := c.Manifest(ctx, req.Parent)
		if err != nil {
			return fmt.Errorf("parent of %s: %w", req.ID, err)
		}
		if pm.Map.Size != req.Size || pm.Map.BlockSize != req.BlockSize {
			return fmt.Errorf("parent %s has a different geometry: %w", req.Parent, ErrInvalid)
		}
		r.parent = &pm.Map
		copy(r.bm.Blocks, pm.Map.Blocks)
	}
	// The pack indexes are re-read after waitGC: from here on no
	// collection deletes anything (it defers to this pending entry), so
	// every chunk they name can be shared.
	if err := c.chunks.Refresh(ctx); err != nil {
		return err
	}
	if err := r.upload(ctx); err != nil {
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrConflict) {
			return cause
		}
		return err
	}
	if err := c.failpoint("create.chunks-stored"); err != nil {
		return err
	}
	m := &Manifest{ID: req.ID, Volume: req.Volume, Parent: req.Parent, Created: r.info.Created, Map: *r.bm}
	mb := m.Encode()
	if _, err := c.store.Put(ctx, c.manifestKey(req.ID), bytes.NewReader(mb), int64(len(mb)), objstore.PutOptions{}); err != nil {
		return fmt.Errorf("writing manifest of %s: %w", req.ID, err)
	}
	if err := c.failpoint("create.manifest-written"); err != nil {
		return err
	}
	logical, referenced, _ := r.bm.Stats()
	var blocks int64
	for _, b := range r.bm.Blocks {
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
		in.StoredBytes = r.uploadedBytes.Load()
		in.ChunksUploaded = r.uploaded.Load()
		in.BlocksRead = r.read.Load()
		in.Blocks = blocks
	})
	if err != nil {
		return fmt.Errorf("committing snapshot %s: %w", req.ID, err)
	}
	if err := c.failpoint("create.committed"); err != nil {
		return err
	}
	c.log.Info("snapshot completed", "id", req.ID, "volume", req.Volume, "parent", req.Parent,
		"blocks_read", r.read.Load(), "chunks_uploaded", r.uploaded.Load(),
		"stored_bytes", r.uploadedBytes.Load(), "duration", time.Since(start))
	return nil
}

// upload reads, hashes, compresses and stores the blocks to process.
func (r *createRun) upload(ctx context.Context) error {
	c, req := r.c, r.req
	n := r.bm.NumBlocks()
	var (
		mu   sync.Mutex
		next int64
	)
	// nextBlock hands out block indexes in order.
	nextBlock := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if next >= n {
			return -1
		}
		i := next
		if req.Changed != nil {
			i = req.Changed.Next(next)
			if i < 0 {
				next = n
				return -1
			}
		}
		next = i + 1
		return i
	}
	todo := n
	if req.Changed != nil {
		todo = req.Changed.Count()
	}
	if c.o.PackSize > 0 && todo*int64(req.BlockSize) >= c.o.PackMinBytes {
		var err error
		if r.listed, err = c.chunks.listChunks(ctx); err != nil {
			return err
		}
		r.packs = newPackWriter(c.chunks, c.o.PackSize, packsInFlight(c.o.Concurrency), &c.packBufs, c.o.Failpoint)
	}
	zero := make([]byte, req.BlockSize)
	err := parallel(ctx, c.o.Concurrency, c.o.Concurrency, func(ctx context.Context, _ int) error {
		raw := c.getBuf(req.BlockSize)
		enc := c.getBuf(EncodeBound(req.BlockSize))
		defer c.putBuf(raw)
		defer c.putBuf(enc)
		for {
			i := nextBlock()
			if i < 0 {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			p := raw[:r.bm.BlockLen(i)]
			if err := req.Source.ReadBlock(ctx, i, p); err != nil {
				return fmt.Errorf("reading block %d of %s: %w", i, req.Volume, err)
			}
			r.read.Add(1)
			ref, err := r.store(ctx, p, zero[:len(p)], enc, i)
			if err != nil {
				return err
			}
			r.bm.Blocks[i] = ref
		}
	})
	if r.packs == nil {
		return err
	}
	if err != nil {
		r.packs.discard()
		return err
	}
	return r.packs.flush(ctx)
}

// packsInFlight is how many packs a run may hold in memory: enough to keep
// a few uploads going while the workers fill the next one.
func packsInFlight(concurrency int) int { return max(2, min(4, concurrency/4)) }

// store turns one block into a block reference, uploading its chunk when
// the store does not have it.
func (r *createRun) store(ctx context.Context, p, zero, enc []byte, i int64) (BlockRef, error) {
	if bytes.Equal(p, zero) {
		return BlockRef{}, nil
	}
	id := HashChunk(p)
	if r.parent != nil && r.parent.Blocks[i].ID == id {
		return r.parent.Blocks[i], nil
	}
	c := r.c
	if l, ok := c.chunks.lookup(id); ok {
		return BlockRef{ID: id, Stored: l.len}, nil
	}
	if r.packs != nil {
		return r.pack(ctx, id, p, enc)
	}
	r.mu.Lock()
	st, ok := r.known[id]
	r.mu.Unlock()
	if ok {
		return BlockRef{ID: id, Stored: st}, nil
	}
	var (
		size int64
		have bool
		err  error
	)
	if r.check {
		if size, have, err = c.chunks.Stat(ctx, id); err != nil {
			return BlockRef{}, err
		}
	}
	if !have {
		obj := c.coder.Encode(enc[:0], p, r.req.Codec)
		size = int64(len(obj))
		created, err := c.chunks.PutIfAbsent(ctx, id, obj)
		if err != nil {
			return BlockRef{}, err
		}
		if created {
			r.uploaded.Add(1)
			r.uploadedBytes.Add(size)
		}
	}
	r.mu.Lock()
	r.known[id] = uint32(size)
	r.mu.Unlock()
	return BlockRef{ID: id, Stored: uint32(size)}, nil
}

// pack stores a new chunk in the run's packs unless it exists.
func (r *createRun) pack(ctx context.Context, id ChunkID, p, enc []byte) (BlockRef, error) {
	if n, ok := r.listed.find(id); ok {
		return BlockRef{ID: id, Stored: n}, nil
	}
	if n, ok := r.packs.packed(id); ok {
		return BlockRef{ID: id, Stored: n}, nil
	}
	obj := r.c.coder.Encode(enc[:0], p, r.req.Codec)
	n, added, err := r.packs.add(ctx, id, obj)
	if err != nil {
		return BlockRef{}, err
	}
	if added {
		r.uploaded.Add(1)
		r.uploadedBytes.Add(int64(n))
	}
	return BlockRef{ID: id, Stored: n}, nil
}

// gcLease is the content of the garbage collector's lock object.
type gcLease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// waitGC waits while a garbage collection holds its lease. The caller has
// already written its pending entry, so any collection that starts later
// sees it and keeps its hands off (see DESIGN.md).
func (c *Catalog) waitGC(ctx context.Context) error {
	for {
		l, _, err := c.readLease(ctx)
		if errors.Is(err, objstore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if c.o.Now().After(l.Expires) {
			return nil
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Catalog) readLease(ctx context.Context) (gcLease, string, error) {
	var l gcLease
	rc, oi, err := c.store.Get(ctx, c.gcLockKey(), objstore.GetOptions{})
	if err != nil {
		return l, "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 4096))
	if err != nil {
		return l, "", fmt.Errorf("reading gc lease: %w", err)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		// A garbled lease is treated as expired.
		return gcLease{}, oi.ETag, nil
	}
	return l, oi.ETag, nil
}

// getBuf returns a pooled buffer of length n.
func (c *Catalog) getBuf(n int) []byte {
	if b, ok := c.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func (c *Catalog) putBuf(b []byte) {
	c.bufs.Put(&b)
}
