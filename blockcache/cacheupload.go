package blockcache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// upload is one dirty block on its way to the store.
type upload struct {
	e   *entry
	gen uint64
	raw []byte
	ref snapshot.BlockRef
	err error
	// n and codec are the block's length and codec when it was claimed.
	n     int
	codec snapshot.Codec
	// registered: the chunk id is counted in Cache.inflight.
	registered bool
	new        bool // this upload stored the chunk
}

// getBuf returns a pooled buffer of length n.
func (c *Cache) getBuf(n int) []byte {
	if b, ok := c.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n, max(n, c.cfg.SlotSize))
}

func (c *Cache) putBuf(b []byte) { c.bufs.Put(&b) }

// uploader turns dirty blocks into chunks, in rounds of up to Uploaders
// blocks: read and hash each block, register the chunk ids as in flight
// (Roots reports them), wait while a garbage collection runs, upload the
// chunks the store does not have, and record each block's new chunk. A
// block written again meanwhile stays dirty and goes round again. Failed
// uploads are retried with back-off for as long as it takes: the cache
// never drops dirty data.
func (c *Cache) uploader(ctx context.Context) {
	defer c.bg.Done()
	delay := c.cfg.RetryDelay
	for {
		batch, err := c.takeDirty(ctx)
		if err != nil {
			return
		}
		if err := c.uploadRound(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.noteStoreError(err)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(delay*2, c.maxRetryDelay())
			continue
		}
		delay = c.cfg.RetryDelay
	}
}

func (c *Cache) noteStoreError(err error) {
	if !c.degraded.Swap(true) {
		c.log.Warn("object store failing; cache degraded", "err", err)
	}
	c.lastError.Store(err.Error())
}

func (c *Cache) noteStoreOK() {
	if c.degraded.Swap(false) {
		c.log.Info("object store reachable again")
	}
}

// takeDirty waits for dirty blocks and claims up to Uploaders of them.
func (c *Cache) takeDirty(ctx context.Context) ([]*upload, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		var batch []*upload
		k := 0
		for k < len(c.queue) && len(batch) < c.cfg.Uploaders {
			e := c.queue[k]
			k++
			e.queued = false
			if !e.dirty || e.uploading || e.writers > 0 || e.v.entries[e.block] != e {
				continue
			}
			e.uploading = true
			e.pins++
			batch = append(batch, &upload{e: e, gen: e.gen, n: e.v.bm.BlockLen(e.block), codec: e.v.bm.Codec})
		}
		c.queue = append(c.queue[:0], c.queue[k:]...)
		if len(batch) > 0 {
			return batch, nil
		}
		c.mu.Unlock()
		select {
		case <-c.kick:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			return nil, ctx.Err()
		}
	}
}

// uploadRound uploads a batch; it returns the first store error after
// every block of the batch was settled (uploaded or put back).
func (c *Cache) uploadRound(ctx context.Context, batch []*upload) error {
	defer func() {
		for _, u := range batch {
			if u.raw != nil {
				c.putBuf(u.raw)
			}
		}
	}()
	// Read and hash.
	each(batch, func(u *upload) {
		u.raw = c.getBuf(u.n)
		if _, err := c.data.ReadAt(u.raw, c.slotOff(u.e.slot)); err != nil {
			u.err = fmt.Errorf("reading cache slot: %w", err)
			return
		}
		if isZero(u.raw) {
			return // a hole: nothing to store
		}
		u.ref.ID = snapshot.HashChunk(u.raw)
	})
	c.mu.Lock()
	for _, u := range batch {
		if u.err == nil && !u.ref.ID.IsZero() {
			c.inflight[u.ref.ID]++
			u.registered = true
		}
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		for _, u := range batch {
			if u.registered {
				if n := c.inflight[u.ref.ID] - 1; n > 0 {
					c.inflight[u.ref.ID] = n
				} else {
					delete(c.inflight, u.ref.ID)
				}
			}
		}
		c.mu.Unlock()
	}()
	err := c.cat.WaitGC(ctx)
	if err == nil {
		each(batch, func(u *upload) {
			if u.err != nil || u.ref.ID.IsZero() {
				return
			}
			// Not pooled: the HTTP client may still read a request body
			// after the call returned (a 412 answered before the body was
			// sent).
			obj := c.coder.Encode(make([]byte, 0, snapshot.EncodeBound(len(u.raw))), u.raw, u.codec)
			u.ref.Stored = uint32(len(obj))
			u.new, u.err = c.chunks.PutIfAbsent(ctx, u.ref.ID, obj)
		})
	}
	var first error
	c.mu.Lock()
	defer c.mu.Unlock()
	var seq uint64
	for _, u := range batch {
		e := u.e
		e.uploading = false
		e.pins--
		uerr := u.err
		if uerr == nil {
			uerr = err
		}
		live := e.v.entries[e.block] == e && !e.v.deleted
		if uerr != nil || !live || e.gen != u.gen {
			if uerr != nil && first == nil {
				first = uerr
			}
			if live && e.dirty {
				c.enqueue(e)
			}
			continue
		}
		if u.new {
			e.v.up.Add(int64(u.ref.Stored))
		}
		if e.v.bm.Blocks[e.block] != u.ref {
			e.v.bm.Blocks[e.block] = u.ref
			e.v.mapDirty = true
		}
		e.dirty = false
		c.nDirty--
		e.v.dirty--
		if e.v.dirty == 0 {
			e.v.lastRecovery = time.Now()
		}
		c.addClean(e, true)
		seq = c.j.append(journalRec{typ: recMap, slot: uint32(e.slot), key: e.v.key, block: uint64(e.block), ref: u.ref})
	}
	_ = seq // committed by the flusher (a lost record only means a re-upload)
	c.broadcast()
	if first == nil {
		c.noteStoreOK()
	}
	return first
}

// each runs fn for every upload of a batch concurrently.
func each(batch []*upload, fn func(u *upload)) {
	var wg sync.WaitGroup
	for _, u := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(u)
		}()
	}
	wg.Wait()
}

func isZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

var zeroBlock [snapshot.MaxBlockSize]byte

// startFetch returns the download of block b of v, starting it when none
// is running. Caller holds mu.
func (c *Cache) startFetch(v *vstate, b int64, ref snapshot.BlockRef) *fetch {
	k := fetchKey{v.key, b}
	if f := c.fetches[k]; f != nil && f.ref == ref {
		return f
	}
	f := &fetch{done: make(chan struct{}), ref: ref}
	c.fetches[k] = f
	n := v.bm.BlockLen(b)
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		c.runFetch(v, b, n, ref, f)
	}()
	return f
}

// runFetch downloads and decodes one block, stores it in a clean slot when
// one can be had without waiting, and wakes the readers.
func (c *Cache) runFetch(v *vstate, b int64, n int, ref snapshot.BlockRef, f *fetch) {
	// The fetch is shared by its readers: it lives as long as the cache.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		c.mu.Lock()
		if k := (fetchKey{v.key, b}); c.fetches[k] == f {
			delete(c.fetches, k)
		}
		c.mu.Unlock()
		close(f.done)
	}()
	obj := c.getBuf(snapshot.EncodeBound(n))
	defer c.putBuf(obj)
	o, err := c.chunks.GetObject(ctx, ref.ID, obj[:0])
	if err != nil {
		if objstore.IsRetryable(err) {
			c.noteStoreError(err)
		}
		f.err = fmt.Errorf("fetching block %d of %s: %w", b, v.name, err)
		return
	}
	c.noteStoreOK()
	raw, err := c.coder.Decode(make([]byte, 0, n), o, ref.ID)
	if err == nil && len(raw) > n {
		err = fmt.Errorf("chunk %s has %d bytes for a %d-byte block: %w", ref.ID, len(raw), n, ErrCorrupt)
	}
	if err != nil {
		f.err = fmt.Errorf("block %d of %s: %w", b, v.name, err)
		return
	}
	v.down.Add(int64(len(o)))
	// A chunk shorter than the block (the volume grew) reads as zeros
	// beyond its end.
	raw = append(raw, zeroBlock[:n-len(raw)]...)
	f.raw = raw
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.usable() != nil || v.deleted || v.entries[b] != nil || v.bm.Blocks[b] != ref || v.bm.BlockLen(b) != n {
		return
	}
	s, err := c.allocSlot(ctx, false)
	if err != nil || s < 0 {
		return
	}
	if v.deleted || v.entries[b] != nil || v.bm.Blocks[b] != ref {
		c.releaseSlot(s)
		return
	}
	// Fill the slot before it is indexed: nobody reads an unindexed slot,
	// and its record is committed only after the data is synced.
	c.mu.Unlock()
	_, werr := c.data.WriteAt(raw, c.slotOff(s))
	c.mu.Lock()
	if werr != nil || v.deleted || v.entries[b] != nil || v.bm.Blocks[b] != ref {
		c.releaseSlot(s)
		return
	}
	// Volatile: no journal record, so reads never cost a sync, and the
	// slot can be reused without one. A checkpoint (Close) keeps it.
	e := &entry{v: v, block: b, slot: s, volatile: true, prefetched: f.prefetch}
	v.entries[b] = e
	c.slots[s] = e
	c.addClean(e, false)
	c.broadcast()
}

// readAhead starts fetches of the blocks after b when v is being read
// sequentially from the store. Caller holds mu.
func (c *Cache) readAhead(v *vstate, b int64) {
	sequential := v.lastMiss == b-1
	v.lastMiss = b
	if !sequential || c.cfg.ReadAhead <= 0 {
		return
	}
	for k := b + 1; k <= b+int64(c.cfg.ReadAhead) && k < int64(len(v.bm.Blocks)); k++ {
		ref := v.bm.Blocks[k]
		if f := c.fetches[fetchKey{v.key, k}]; ref.ID.IsZero() || v.entries[k] != nil || f != nil && f.ref == ref {
			continue
		}
		if len(c.free) == 0 && !c.hasClean() {
			return // no room: read-ahead would only evict itself
		}
		c.startFetch(v, k, ref).prefetch = true
	}
}

// writeZeros fills [off, off+n) of the cache file with zeros.
func (c *Cache) writeZeros(off int64, n int) error {
	for n > 0 {
		k := min(n, len(zeroBlock))
		if _, err := c.data.WriteAt(zeroBlock[:k], off); err != nil {
			return err
		}
		off += int64(k)
		n -= k
	}
	return nil
}

// maxRetryDelay caps the back-off between upload or fetch attempts.
func (c *Cache) maxRetryDelay() time.Duration {
	return min(5*time.Second, 25*c.cfg.RetryDelay)
}

// mapSyncer stores changed live block maps every MapInterval.
func (c *Cache) mapSyncer(ctx context.Context) {
	defer c.bg.Done()
	if c.cfg.MapInterval < 0 {
		return
	}
	t := time.NewTicker(c.cfg.MapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.syncMaps(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("storing live block maps", "err", err)
		}
	}
}

// syncMaps stores the live block map of every volume whose map changed.
func (c *Cache) syncMaps(ctx context.Context) error {
	type job struct {
		v  *vstate
		bm snapshot.BlockMap
	}
	var jobs []job
	c.mu.Lock()
	for _, v := range c.vols {
		if v.mapDirty {
			v.mapDirty = false
			bm := *v.bm
			bm.Blocks = append([]snapshot.BlockRef(nil), v.bm.Blocks...)
			jobs = append(jobs, job{v, bm})
		}
	}
	c.mu.Unlock()
	var first error
	for _, j := range jobs {
		if err := c.cat.PutLiveMap(ctx, j.v.name, &j.bm); err != nil {
			c.mu.Lock()
			j.v.mapDirty = true
			c.mu.Unlock()
			if objstore.IsRetryable(err) {
				c.noteStoreError(err)
			}
			if first == nil {
				first = err
			}
		}
	}
	return first
}
