package nfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Foreground first: while clients keep the server busy (at least busyCalls
// NFS calls in the last busyWindow), a file ready for upload waits, up to
// Config.UploadHold after its last write, so the uploads' CPU (and the
// object store's, when it runs on the same machine) does not slow the
// clients down. Its data is already durable in the cache; a burst of writes
// is absorbed at local speed and uploaded right after it. The hold also
// ends when the cache is over half full (dirty data cannot be evicted),
// and shutdown's drain never waits.
const (
	busyWindow = 250 * time.Millisecond
	busyCalls  = 32 // 128 calls a second
	busySlots  = 5  // the window is sampled in busySlots steps
)

// uploader runs the upload workers, the settle scanner and the evictor.
type uploader struct {
	s *Server
	q chan *cfile

	nextEvict time.Time     // run loop only: see evictNow
	calls     atomic.Uint64 // NFS calls received (counted by dispatch)
	busy      atomic.Bool   // clients sent busyCalls in the last busyWindow
	flushing  atomic.Bool   // shutdown drain: nothing waits
}

func newUploader(s *Server) *uploader {
	return &uploader{s: s, q: make(chan *cfile, 1<<16)}
}

// enqueue queues f for upload unless it is queued already.
func (u *uploader) enqueue(f *cfile) {
	f.mu.Lock()
	if f.queued {
		f.mu.Unlock()
		return
	}
	f.queued = true
	f.mu.Unlock()
	select {
	case u.q <- f:
	default: // the settle scanner will queue it again
		f.mu.Lock()
		f.queued = false
		f.mu.Unlock()
	}
}

// run works until quit is closed.
func (u *uploader) run(quit <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-quit; cancel() }()
	var wg sync.WaitGroup
	for range u.s.cfg.UploadConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case f := <-u.q:
					u.hold(ctx, f)
					u.uploadOne(ctx, f)
				}
			}
		}()
	}
	tick := time.NewTicker(min(u.s.cfg.SettleTime/4+time.Millisecond, time.Second))
	defer tick.Stop()
	busyTick := time.NewTicker(busyWindow / busySlots)
	defer busyTick.Stop()
	var (
		seen [busySlots]uint64 // call counts at the last busySlots ticks
		slot int
	)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-busyTick.C:
			n := u.calls.Load()
			u.busy.Store(n-seen[slot] >= busyCalls)
			seen[slot] = n
			slot = (slot + 1) % busySlots
		case <-tick.C:
			u.scan(false)
			if c := u.s.cache; c.used.Load() > c.limit {
				u.evictNow()
			}
		case <-u.s.cache.wake:
			u.evictNow()
		}
	}
}

// hold waits while clients keep the server busy, at most until
// Config.UploadHold after f's last write and while the cache is less than
// half full (see busyWindow).
func (u *uploader) hold(ctx context.Context, f *cfile) {
	if u.s.cfg.UploadHold < 0 {
		return
	}
	f.mu.Lock()
	until := f.lastWrite.Add(u.s.cfg.UploadHold)
	f.mu.Unlock()
	var t *time.Timer
	c := u.s.cache
	for u.busy.Load() && !u.flushing.Load() && c.used.Load() < c.limit/2 {
		wait := min(time.Until(until), busyWindow/busySlots)
		if wait <= 0 {
			return
		}
		if t == nil {
			t = time.NewTimer(wait)
			defer t.Stop()
		} else {
			t.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// shares returns the served shares.
func (u *uploader) shares() []*share {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	out := make([]*share, 0, len(u.s.shares))
	for _, x := range u.s.shares {
		out = append(out, x)
	}
	return out
}

// scan queues files idle for the settle time (all pending files with
// force) and returns how many files still have pending changes.
func (u *uploader) scan(force bool) int {
	pending := 0
	now := time.Now()
	for _, x := range u.shares() {
		x.sweep()
		if x.wal.needsRotate() {
			if err := x.rotateJournal(); err != nil {
				x.log.Warn("journal compaction failed", "err", err)
			}
		}
		x.mu.Lock()
		var ready []*cfile
		for _, f := range x.files {
			f.mu.Lock()
			if f.pending() && !f.gone {
				pending++
				if !f.queued && !f.uploading && (force || now.Sub(f.lastWrite) >= u.s.cfg.SettleTime) && now.After(f.retryAt) {
					ready = append(ready, f)
				}
			}
			f.mu.Unlock()
		}
		x.mu.Unlock()
		for _, f := range ready {
			u.enqueue(f)
		}
	}
	return pending
}

// drain uploads every pending file of shares, until none is left or ctx
// ends.
func (u *uploader) drain(ctx context.Context, shares []*share) error {
	u.flushing.Store(true)
	for {
		if u.scan(true) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nfs: files left to upload at shutdown (kept in the cache): %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (u *uploader) uploadOne(ctx context.Context, f *cfile) {
	f.mu.Lock()
	f.queued = false
	f.mu.Unlock()
	if err := f.x.upload(ctx, f); err != nil {
		f.x.log.Warn("upload failed, will retry", "path", f.path, "err", err)
		f.mu.Lock()
		f.retryAt = time.Now().Add(2 * time.Second)
		f.mu.Unlock()
	}
}

// evictNow evicts, unless the last pass found too little clean data to get
// under the bound less than a second ago: dirty data beyond the bound would
// otherwise have every write rescan all files.
func (u *uploader) evictNow() {
	if time.Now().Before(u.nextEvict) {
		return
	}
	if !u.evict() {
		u.nextEvict = time.Now().Add(time.Second)
	}
}

// evict drops least recently used clean files until the cache is under
// nine tenths of its limit, and reports whether it got there.
func (u *uploader) evict() bool {
	c := u.s.cache
	target := c.limit / 10 * 9
	type cand struct {
		x *share
		f *cfile
		t time.Time
	}
	var cands []cand
	for _, x := range u.shares() {
		x.mu.Lock()
		for _, f := range x.files {
			f.mu.Lock()
			if !f.pending() && !f.uploading && len(f.present) > 0 {
				cands = append(cands, cand{x, f, f.lastUse})
			}
			f.mu.Unlock()
		}
		x.mu.Unlock()
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].t.Before(cands[j].t) })
	for _, cd := range cands {
		if c.used.Load() <= target {
			return true
		}
		cd.x.mu.Lock()
		if cd.f.mu.TryLock() {
			if !cd.f.pending() && !cd.f.uploading {
				cd.f.removeData()
				cd.f.gone = true
				delete(cd.x.files, cd.f.id)
			}
			cd.f.mu.Unlock()
		}
		cd.x.mu.Unlock()
	}
	return c.used.Load() <= target
}

// upload sends f's pending changes to the store: metadata only with a
// server-side self-copy, small files with one PUT, large files with a
// multipart upload whose unchanged parts are copied server-side from the
// previous version.
func (x *share) upload(ctx context.Context, f *cfile) error {
	if x.removed.Load() {
		return nil // uploaded when the share is added again
	}
	f.upMu.Lock()
	defer f.upMu.Unlock()
	return x.uploadHeld(ctx, f)
}

// uploadHeld is upload with f.upMu already held.
func (x *share) uploadHeld(ctx context.Context, f *cfile) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.mu.Lock()
	f.cancelUpload = cancel
	defer func() {
		f.mu.Lock()
		f.cancelUpload = nil
		f.mu.Unlock()
	}()
	if f.gone || !f.pending() {
		f.mu.Unlock()
		return nil
	}
	gen, p, a, size := f.gen, f.path, f.a, f.a.size
	metaOnly := !f.dataDirty && !f.local
	base, baseSize, local := f.base, f.baseSize, f.local
	dirty := append(bitmap(nil), f.dirty...)
	f.lowWater = size
	partSize := x.srv.cfg.PartSize
	for size/partSize >= 10000 {
		partSize *= 2
	}
	multipart := size > partSize
	var mem []byte
	if f.inMem {
		mem = f.memBytes()
	}
	var err error
	// Bring in every block that will be sent (not copied) from the store.
	switch {
	case metaOnly:
	case !multipart || local || base == "":
		err = f.fetch(ctx, 0, size, 0)
	default:
		for off := int64(0); off < size && err == nil; off += partSize {
			end := min(size, off+partSize)
			if !canCopy(dirty, off, end, baseSize) {
				err = f.fetch(ctx, off, end, 0)
			}
		}
	}
	if err != nil {
		f.mu.Unlock()
		return err
	}
	f.uploading = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.uploading = false
		f.mu.Unlock()
	}()
	key := x.key(p)
	md := metaOf(a)
	var oi objstore.ObjectInfo
	var copied int64
	switch {
	case metaOnly:
		oi, err = x.store.Copy(ctx, key, key, objstore.CopyOptions{ReplaceMetadata: true, Metadata: md, IfMatch: base})
		copied = size
	case !multipart:
		var r io.Reader
		if mem != nil {
			r = bytes.NewReader(mem)
		} else {
			df, oerr := os.Open(f.dataPath())
			if oerr != nil && !errors.Is(oerr, os.ErrNotExist) {
				return fmt.Errorf("upload %s: %w", p, oerr)
			}
			if df != nil {
				defer df.Close()
			}
			r = sectionReader(df, 0, size)
		}
		oi, err = x.store.Put(ctx, key, r, size, objstore.PutOptions{Metadata: md})
	default:
		oi, copied, err = x.multipart(ctx, f, key, md, size, partSize, dirty, base, baseSize, local)
	}
	if err != nil && metaOnly && errors.Is(err, objstore.ErrPreconditionFailed) {
		// The object changed in the store meanwhile: its version wins.
		f.mu.Lock()
		if f.gen == gen {
			f.metaDirty = false
			if !f.pending() {
				f.logDone(recClean)
			}
		}
		f.mu.Unlock()
		x.log.Info("attribute change dropped: object changed in the store", "path", p)
		return nil
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	// Publish the new version's attributes before the file stops counting
	// as changed, so that no stat in between sees the previous version.
	f.mu.Lock()
	if f.gen == gen && !f.gone {
		cur := f.a
		cur.etag = oi.ETag
		f.mu.Unlock()
		x.setNode(p, cur)
		f.mu.Lock()
	}
	f.baseAt = time.Now()
	f.base = oi.ETag
	f.baseSize = min(size, f.lowWater)
	f.local = false
	clean := f.gen == gen && !f.gone
	if clean {
		f.dataDirty, f.metaDirty = false, false
		f.dirty = nil
		if f.inMem {
			// Uploaded: the store holds the data now, reads fetch it.
			f.inMem, f.mem, f.present = false, nil, nil
			f.recharge()
		}
	}
	if !f.gone {
		if f.pending() {
			_ = f.logState(false)
		} else {
			f.logDone(recClean)
		}
	}
	f.a.etag = oi.ETag
	f.mu.Unlock()
	dir, name := splitPath(p)
	x.listAdd(dir, name, dirEnt{typ: typeReg, size: size, etag: oi.ETag, mtime: a.mtime})
	x.log.Debug("uploaded", "path", p, "size", size, "multipart", multipart, "copied", copied, "clean", clean, "etag", oi.ETag)
	if cb := x.srv.cfg.OnUpload; cb != nil {
		cb(UploadEvent{Share: x.cfg.Name, Path: p, Key: key, Size: size, ETag: oi.ETag,
			Multipart: multipart && !metaOnly, CopiedBytes: copied, Time: time.Now()})
	}
	return nil
}

// sectionReader reads n bytes at off of the cached data file df (nil when
// there is none), with zeros where the sparse file ends early.
func sectionReader(df *os.File, off, n int64) io.Reader {
	var r io.Reader = zeroReader{}
	if df != nil {
		r = io.MultiReader(io.NewSectionReader(df, off, n), r)
	}
	return io.LimitReader(r, n)
}

// canCopy reports whether the part [off, end) can be copied from the
// previous version: none of it is dirty and all of it is still valid there.
func canCopy(dirty bitmap, off, end, baseSize int64) bool {
	return end <= baseSize && !dirty.anyIn(off/blockSize, (end+blockSize-1)/blockSize)
}

// multipart uploads f in parts of partSize, UploadConcurrency at once.
func (x *share) multipart(ctx context.Context, f *cfile, key string, md map[string]string, size, partSize int64,
	dirty bitmap, base string, baseSize int64, local bool) (objstore.ObjectInfo, int64, error) {
	id, err := x.store.CreateMultipart(ctx, key, objstore.PutOptions{Metadata: md})
	if err != nil {
		return objstore.ObjectInfo{}, 0, err
	}
	df, err := os.Open(f.dataPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = x.store.AbortMultipart(ctx, key, id)
		return objstore.ObjectInfo{}, 0, err
	}
	if df != nil {
		defer df.Close()
	}
	n := int((size + partSize - 1) / partSize)
	parts := make([]objstore.Part, n)
	var (
		mu     sync.Mutex
		first  error
		copied int64
		wg     sync.WaitGroup
		slots  = make(chan struct{}, x.srv.cfg.UploadConcurrency)
	)
	for i := range n {
		off := int64(i) * partSize
		end := min(size, off+partSize)
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			var p objstore.Part
			var err error
			if !local && base != "" && canCopy(dirty, off, end, baseSize) {
				p, err = x.store.UploadPartCopy(ctx, key, id, i+1, key, off, end-off)
				mu.Lock()
				copied += end - off
				mu.Unlock()
			} else {
				p, err = x.store.UploadPart(ctx, key, id, i+1, sectionReader(df, off, end-off), end-off)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			parts[i] = p
		}()
	}
	wg.Wait()
	if first != nil {
		_ = x.store.AbortMultipart(context.WithoutCancel(ctx), key, id)
		return objstore.ObjectInfo{}, 0, first
	}
	oi, err := x.store.CompleteMultipart(ctx, key, id, parts)
	if err != nil {
		_ = x.store.AbortMultipart(context.WithoutCancel(ctx), key, id)
		return objstore.ObjectInfo{}, 0, err
	}
	return oi, copied, nil
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}
