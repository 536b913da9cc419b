package blockcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicegw/sluice/snapshot"
)

// CacheConfig sizes a gateway's block cache. Zero fields take the defaults
// shown.
type CacheConfig struct {
	// Size is the cache file's size in bytes (required; at least 4 slots).
	// It holds both recently used blocks and the upload buffer.
	Size int64
	// SlotSize is the size of one cache entry (default
	// snapshot.DefaultBlockSize). A cached volume's block size must not
	// exceed it; a smaller block still takes a whole slot.
	SlotSize int
	// UploadBufferPercent is the share of the slots that may hold dirty
	// blocks (default 80). Writes that need a new slot beyond it wait for
	// the uploader (back-pressure); reads always find room or bypass the
	// cache.
	UploadBufferPercent int
	// Uploaders is the number of concurrent chunk uploads (default 8).
	Uploaders int
	// ReadAhead is the number of blocks fetched ahead of a sequential
	// reader (default 16; negative disables it).
	ReadAhead int
	// DirtyWindow bounds how long a write acknowledged without FUA can
	// stay volatile: the journal is committed at this interval (default
	// 1s).
	DirtyWindow time.Duration
	// CheckpointBytes: the journal is folded into a new checkpoint when
	// it grows beyond this (default 16 MiB).
	CheckpointBytes int64
	// MapInterval is how often each volume's live block map is stored in
	// the object store when it changed (default 10s; negative disables
	// it). See snapshot.Catalog.PutLiveMap and RecoverCached.
	MapInterval time.Duration
	// Policy is the replacement policy of clean blocks: Policy2Q (default)
	// or PolicyLRU; see cachepolicy.go.
	Policy string
	// RetryDelay is the first back-off after a failed upload (default
	// 200ms, doubling up to 25 times that or 5s).
	RetryDelay time.Duration
}

func (c *CacheConfig) defaults() {
	if c.SlotSize == 0 {
		c.SlotSize = snapshot.DefaultBlockSize
	}
	if c.UploadBufferPercent <= 0 || c.UploadBufferPercent > 100 {
		c.UploadBufferPercent = 80
	}
	if c.Uploaders <= 0 {
		c.Uploaders = 8
	}
	if c.ReadAhead == 0 {
		c.ReadAhead = 16
	}
	if c.DirtyWindow <= 0 {
		c.DirtyWindow = time.Second
	}
	if c.CheckpointBytes <= 0 {
		c.CheckpointBytes = 16 << 20
	}
	if c.Policy == "" {
		c.Policy = Policy2Q
	}
	if c.MapInterval == 0 {
		c.MapInterval = 10 * time.Second
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 200 * time.Millisecond
	}
}

// entry is a cached block: which slot of the cache file holds it and its
// state. Entries are guarded by Cache.mu.
type entry struct {
	v     *vstate
	block int64
	slot  int32
	dirty bool
	// uploading: an upload of this entry is in flight.
	uploading bool
	// queued: the entry is in the upload queue.
	queued bool
	// gen counts writes; an upload completes only if it did not change.
	gen uint64
	// writers counts writes under way; the uploader leaves the entry
	// alone until they are done.
	writers int
	// pins counts readers, writers and uploaders using the slot; a pinned
	// entry is never evicted.
	pins int
	// prefetched: fetched by read-ahead and not read since.
	prefetched bool
	// volatile: no durable index names this slot for this block (a block
	// fetched by a read since the last checkpoint); evicting it needs no
	// journal commit.
	volatile bool
	// guard is the journal record that marked a formerly clean entry
	// dirty: writes wait for it to be durable before overwriting the slot.
	guard uint64
	// list is the clean list the entry is on (nil when dirty); prev and
	// next link it there (cachepolicy.go).
	list       *cleanList
	prev, next *entry
}

// vstate is a cached volume's state in the cache: geometry, live block
// map and cached blocks. The cache owns it whether or not the volume is
// open, so dirty blocks are uploaded after a restart before the volume is
// opened again.
type vstate struct {
	key     uint64
	name    string
	bm      *snapshot.BlockMap
	entries map[int64]*entry
	dirty   int
	open    bool
	deleted bool
	// lastRecovery is when the volume last had no dirty block.
	lastRecovery time.Time
	// lastMiss is the last block read from the store (read-ahead).
	lastMiss int64
	// lastRead is the block of the last cache hit (replacement policy).
	lastRead int64
	// mapDirty: the map changed since it was last stored.
	mapDirty bool

	hits, misses, up, down atomic.Int64
}

// fetch is a download of one block that concurrent readers share.
type fetch struct {
	ref snapshot.BlockRef
	// prefetch: started by read-ahead (guarded by Cache.mu).
	prefetch bool
	done     chan struct{}
	raw      []byte
	err      error
}

type fetchKey struct {
	key   uint64
	block int64
}

// Cache is a gateway's local block cache: one file of fixed-size slots
// shared by every cached volume, an index of what each slot holds (kept
// durable in a checkpoint and journal), LRU eviction of clean blocks and a
// background uploader that turns dirty blocks into chunks in the snapshot
// chunk store. It is safe for concurrent use.
type Cache struct {
	dir    string
	cfg    CacheConfig
	o      Options
	log    *slog.Logger
	cat    *snapshot.Catalog
	chunks *snapshot.ChunkStore
	coder  *snapshot.Coder

	data *os.File
	j    *journal

	mu        sync.Mutex
	journalID uint64
	vols      map[uint64]*vstate
	slots     []*entry
	free      []int32
	prob      cleanList // clean blocks used once (cachepolicy.go)
	prot      cleanList // clean blocks used again, or written
	queue     []*entry  // dirty entries in upload order
	nDirty    int
	maxDirty  int
	evicting  bool
	fetches   map[fetchKey]*fetch
	// fills are the new slots writes are filling before they index them
	// (cacheio.go); their slots are neither free nor in slots.
	fills    map[fetchKey]*slotFill
	inflight map[snapshot.ChunkID]int
	wake     chan struct{}
	waiters  int
	// kick wakes the uploader when a block is queued.
	kick     chan struct{}
	closed   bool
	failed   error
	bufs     sync.Pool
	bgCancel context.CancelFunc
	// stop is closed when the cache closes: fetches in flight give up.
	stop      chan struct{}
	bg        sync.WaitGroup
	degraded  atomic.Bool
	lastError atomic.Value // string
}

// OpenCache opens (or creates) the cache in dir. Chunks go to the
// catalogue's chunk store, so snapshots and cached volumes share them. A
// cache that existed is reloaded from its checkpoint and journal; dirty
// blocks found there are uploaded in the background.
func OpenCache(dir string, cat *snapshot.Catalog, cfg CacheConfig, o Options) (*Cache, error) {
	o.defaults()
	cfg.defaults()
	if cat == nil || (cfg.Policy != Policy2Q && cfg.Policy != PolicyLRU) || !snapshot.ValidBlockSize(cfg.SlotSize) || cfg.Size < 4*int64(cfg.SlotSize) || cfg.Size/int64(cfg.SlotSize) > maxCacheSlots {
		return nil, fmt.Errorf("cache of %d bytes in %d-byte slots: %w", cfg.Size, cfg.SlotSize, ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	nslots := int(cfg.Size / int64(cfg.SlotSize))
	c := &Cache{
		dir: dir, cfg: cfg, o: o, log: o.Logger.With("component", "cache"), cat: cat,
		chunks: cat.Chunks(), coder: cat.Coder(),
		vols: map[uint64]*vstate{}, slots: make([]*entry, nslots),
		fetches: map[fetchKey]*fetch{}, fills: map[fetchKey]*slotFill{}, inflight: map[snapshot.ChunkID]int{},
		wake: make(chan struct{}), kick: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	c.maxDirty = max(nslots*cfg.UploadBufferPercent/100, 1)
	f, err := os.OpenFile(filepath.Join(dir, cacheDataFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache data: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("cache %s: %w", dir, ErrLocked)
	}
	c.data = f
	c.j = &journal{data: f, failpoint: c.failpoint}
	if err := c.load(); err != nil {
		f.Close()
		return nil, err
	}
	if st, err := f.Stat(); err != nil || st.Size() < int64(nslots)*int64(cfg.SlotSize) {
		if err == nil {
			err = f.Truncate(int64(nslots) * int64(cfg.SlotSize))
		}
		if err != nil {
			c.closeFiles()
			return nil, fmt.Errorf("cache data: %w", err)
		}
	}
	// A fresh checkpoint folds the journal in and drops a torn tail.
	if err := c.checkpoint(); err != nil {
		c.closeFiles()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.bgCancel = cancel
	c.bg.Add(3)
	go c.uploader(ctx)
	go c.flusher(ctx)
	go c.mapSyncer(ctx)
	c.log.Info("cache open", "slots", nslots, "used", nslots-len(c.free), "dirty", c.nDirty, "volumes", len(c.vols))
	return c, nil
}

// load reads the checkpoint and replays the journal.
func (c *Cache) load() error {
	nslots := uint32(len(c.slots))
	b, err := os.ReadFile(filepath.Join(c.dir, indexFile))
	if errors.Is(err, os.ErrNotExist) {
		c.journalID = 1
		c.rebuildFree()
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading cache index: %w", err)
	}
	st, err := decodeIndex(b)
	if err != nil {
		return err
	}
	if st.slotSize != uint32(c.cfg.SlotSize) {
		return fmt.Errorf("cache slot size is %d, configured %d: %w", st.slotSize, c.cfg.SlotSize, ErrInvalid)
	}
	c.journalID = st.journalID
	for _, iv := range st.vols {
		c.vols[iv.key] = newVstate(iv.key, iv.name, iv.bm)
	}
	for _, s := range st.used {
		if s.slot >= nslots {
			return fmt.Errorf("cache holds slot %d; configured for %d slots (the cache cannot shrink): %w", s.slot, nslots, ErrInvalid)
		}
		c.slots[s.slot] = &entry{v: c.vols[s.key], block: int64(s.block), slot: int32(s.slot), dirty: s.state == slotStateDirty}
	}
	jb, err := readJournal(filepath.Join(c.dir, journalFile))
	if err != nil {
		return err
	}
	if len(jb) > 0 {
		id, recs, _, err := decodeJournal(jb)
		if err == nil && id == st.journalID {
			for _, r := range recs {
				if err := c.replay(r); err != nil {
					return err
				}
			}
		}
	}
	// Build the per-volume indexes; a block claimed by two slots keeps
	// the dirty one (or the later one) and frees the other.
	for s, e := range c.slots {
		if e == nil {
			continue
		}
		if e.v == nil || e.v.deleted || e.block >= e.v.bm.NumBlocks() {
			c.slots[s] = nil
			continue
		}
		if old := e.v.entries[e.block]; old != nil {
			if old.dirty && !e.dirty {
				c.slots[s] = nil
				continue
			}
			c.slots[old.slot] = nil
			c.dropEntryCounts(old)
		}
		e.v.entries[e.block] = e
		if e.dirty {
			c.nDirty++
			e.v.dirty++
			c.enqueue(e)
		} else {
			c.addClean(e, false)
		}
	}
	for k, v := range c.vols {
		if v.deleted {
			delete(c.vols, k)
		}
	}
	c.rebuildFree()
	return nil
}

func (c *Cache) dropEntryCounts(e *entry) {
	if e.dirty {
		c.nDirty--
		e.v.dirty--
	} else {
		c.removeClean(e)
	}
}

func newVstate(key uint64, name string, bm *snapshot.BlockMap) *vstate {
	return &vstate{key: key, name: name, bm: bm, entries: map[int64]*entry{}, lastRecovery: time.Now(), lastMiss: -2, lastRead: -1, mapDirty: true}
}

// replay applies one journal record to the state being loaded (slots
// only; entries are indexed afterwards).
func (c *Cache) replay(r journalRec) error {
	slotOK := func() bool { return int(r.slot) < len(c.slots) }
	switch r.typ {
	case recVol:
		v := c.vols[r.key]
		if v == nil || v.deleted {
			bm, err := snapshot.NewBlockMap(int64(r.block), int(r.bs), r.codec)
			if err != nil {
				return fmt.Errorf("cache journal: %w", ErrCorrupt)
			}
			c.vols[r.key] = newVstate(r.key, r.name, bm)
			return nil
		}
		growMap(v.bm, int64(r.block))
		v.bm.Codec = r.codec
	case recDelVol:
		if v := c.vols[r.key]; v != nil {
			v.deleted = true
		}
	case recSlot:
		v := c.vols[r.key]
		if !slotOK() || v == nil {
			return nil
		}
		c.slots[r.slot] = &entry{v: v, block: int64(r.block), slot: int32(r.slot), dirty: r.state == slotStateDirty}
	case recMap:
		v := c.vols[r.key]
		if v == nil || int64(r.block) >= int64(len(v.bm.Blocks)) {
			return nil
		}
		v.bm.Blocks[r.block] = r.ref
		if r.slot != noSlot && slotOK() {
			if e := c.slots[r.slot]; e != nil && e.v == v && e.block == int64(r.block) {
				e.dirty = false
			}
		}
	case recFree:
		if slotOK() {
			c.slots[r.slot] = nil
		}
	}
	return nil
}

// growMap extends a block map to size bytes.
func growMap(bm *snapshot.BlockMap, size int64) {
	if size <= bm.Size {
		return
	}
	bm.Size = size
	for int64(len(bm.Blocks)) < bm.NumBlocks() {
		bm.Blocks = append(bm.Blocks, snapshot.BlockRef{})
	}
}

func (c *Cache) rebuildFree() {
	c.free = c.free[:0]
	for s := len(c.slots) - 1; s >= 0; s-- {
		if c.slots[s] == nil {
			c.free = append(c.free, int32(s))
		}
	}
}

// checkpoint writes the whole index as a new checkpoint and starts an
// empty journal. Every slot's data is synced first.
func (c *Cache) checkpoint() error {
	c.j.syncMu.Lock()
	defer c.j.syncMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.j.failed != nil {
		return c.j.failed
	}
	st := &indexState{journalID: c.journalID + 1, slotSize: uint32(c.cfg.SlotSize), slots: uint32(len(c.slots))}
	for _, v := range c.vols {
		st.vols = append(st.vols, indexVol{key: v.key, name: v.name, bm: v.bm})
	}
	for s, e := range c.slots {
		if e == nil {
			continue
		}
		state := uint8(slotStateClean)
		if e.dirty {
			state = slotStateDirty
		}
		st.used = append(st.used, indexSlot{slot: uint32(s), key: e.v.key, block: uint64(e.block), state: state})
	}
	if err := fdatasync(c.data); err != nil {
		return fmt.Errorf("cache checkpoint: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(c.dir, indexFile), encodeIndex(st)); err != nil {
		return fmt.Errorf("cache checkpoint: %w", err)
	}
	if err := c.failpoint("cache.checkpoint-written"); err != nil {
		return err
	}
	c.journalID = st.journalID
	for _, e := range c.slots {
		if e != nil {
			e.volatile = false
		}
	}
	return c.j.resetLocked(c.dir, st.journalID)
}

func (c *Cache) failpoint(name string) error {
	if c.o.Failpoint == nil {
		return nil
	}
	if err := c.o.Failpoint(name); err != nil {
		return fmt.Errorf("failpoint %s: %w", name, err)
	}
	return nil
}

// broadcast wakes everyone waiting for a state change. Caller holds mu.
func (c *Cache) broadcast() {
	if c.waiters == 0 {
		return // the common case on the I/O path: nothing to allocate
	}
	close(c.wake)
	c.wake = make(chan struct{})
}

// wait releases mu until the next broadcast or ctx's end. Caller holds mu.
func (c *Cache) wait(ctx context.Context) error {
	ch := c.wake
	c.waiters++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.waiters--
	}()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// usable reports whether I/O may proceed. Caller holds mu.
func (c *Cache) usable() error {
	if c.closed {
		return ErrClosed
	}
	if c.failed != nil {
		return c.failed
	}
	return nil
}

// enqueue adds a dirty entry to the upload queue.
func (c *Cache) enqueue(e *entry) {
	if !e.queued {
		e.queued = true
		c.queue = append(c.queue, e)
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// markDirty turns a clean entry dirty and returns the journal record the
// writer must wait for. Caller holds mu.
func (c *Cache) markDirty(e *entry) {
	if e.dirty {
		return
	}
	c.removeClean(e)
	e.dirty = true
	e.volatile = false
	c.nDirty++
	e.v.dirty++
	e.guard = c.j.append(journalRec{typ: recSlot, slot: uint32(e.slot), key: e.v.key, block: uint64(e.block), state: slotStateDirty})
	c.enqueue(e)
}

// allocSlot returns a free slot, evicting clean blocks when none is
// free. For a write (dirty) it waits while the upload buffer is full;
// otherwise it returns -1 when no slot can be had at once. Caller holds
// mu, which allocSlot may release while it waits or commits an eviction.
func (c *Cache) allocSlot(ctx context.Context, dirty bool) (int32, error) {
	for {
		if err := c.usable(); err != nil {
			return -1, err
		}
		if dirty && c.nDirty+len(c.fills) >= c.maxDirty {
			if err := c.wait(ctx); err != nil {
				return -1, fmt.Errorf("waiting for upload buffer space: %w", err)
			}
			continue
		}
		if n := len(c.free); n > 0 {
			s := c.free[n-1]
			c.free = c.free[:n-1]
			return s, nil
		}
		if c.evicting {
			if !dirty {
				return -1, nil
			}
			if err := c.wait(ctx); err != nil {
				return -1, err
			}
			continue
		}
		victims := c.pickVictims()
		if len(victims) == 0 {
			if !dirty {
				return -1, nil
			}
			if err := c.wait(ctx); err != nil {
				return -1, fmt.Errorf("waiting for cache space: %w", err)
			}
			continue
		}
		if err := c.evict(victims); err != nil {
			return -1, err
		}
	}
}

// pickVictims takes up to a batch of unpinned clean entries in eviction
// order. Caller holds mu.
func (c *Cache) pickVictims() []*entry {
	batch := max(len(c.slots)/16, 1)
	var out []*entry
	c.evictionOrder(func(e *entry) bool {
		if e.pins == 0 {
			out = append(out, e)
		}
		return len(out) < batch
	})
	return out
}

// evict frees the victims' slots. The free records are made durable
// before the slots are handed out: otherwise a crash could leave the index
// naming a block whose slot was overwritten by another. Caller holds mu;
// it is released during the commit.
func (c *Cache) evict(victims []*entry) error {
	var seq uint64
	for _, e := range victims {
		c.removeClean(e)
		delete(e.v.entries, e.block)
		c.slots[e.slot] = nil
		if !e.volatile {
			seq = c.j.append(journalRec{typ: recFree, slot: uint32(e.slot)})
		}
	}
	if seq == 0 {
		for _, e := range victims {
			c.free = append(c.free, e.slot)
		}
		c.broadcast()
		return nil
	}
	c.evicting = true
	c.mu.Unlock()
	err := c.j.commit(seq)
	c.mu.Lock()
	c.evicting = false
	if err != nil {
		c.failed = err
		c.broadcast()
		return err
	}
	for _, e := range victims {
		c.free = append(c.free, e.slot)
	}
	c.broadcast()
	return nil
}

// releaseSlot returns a slot taken by allocSlot that was not used. Caller
// holds mu.
func (c *Cache) releaseSlot(s int32) {
	c.free = append(c.free, s)
	c.broadcast()
}

func (c *Cache) slotOff(s int32) int64 { return int64(s) * int64(c.cfg.SlotSize) }

// unpin drops a pin. Caller holds mu.
func (c *Cache) unpin(e *entry) {
	e.pins--
	if e.pins == 0 {
		c.broadcast()
	}
}

// Flush makes every write acknowledged so far durable in the cache.
func (c *Cache) Flush(ctx context.Context) error {
	return c.j.flush()
}

// flusher commits the journal every DirtyWindow and folds it into a
// checkpoint when it grows large.
func (c *Cache) flusher(ctx context.Context) {
	defer c.bg.Done()
	t := time.NewTicker(c.cfg.DirtyWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.j.commit(c.j.lastSeq()); err != nil {
			c.setFailed(err)
			continue
		}
		c.j.syncMu.Lock()
		big := c.j.size > c.cfg.CheckpointBytes
		c.j.syncMu.Unlock()
		if big {
			if err := c.checkpoint(); err != nil {
				c.setFailed(err)
			}
		}
	}
}

func (c *Cache) setFailed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == nil {
		c.failed = err
		c.log.Error("cache failed", "err", err)
		c.broadcast()
	}
}

// Close stops the uploader (dirty blocks stay dirty and are uploaded after
// the next OpenCache), writes a checkpoint and closes the files. Volumes
// should be closed first.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.broadcast()
	c.mu.Unlock()
	close(c.stop)
	c.bgCancel()
	c.bg.Wait()
	err := c.checkpoint()
	c.closeFiles()
	return err
}

func (c *Cache) closeFiles() {
	if c.j.f != nil {
		c.j.f.Close()
	}
	c.data.Close()
}

// Degraded reports whether the object store failed the last request the
// cache made to it (uploads or fetches are failing and being retried).
func (c *Cache) Degraded() bool { return c.degraded.Load() }

// CacheInfo is the state of the cache for status output and metrics.
type CacheInfo struct {
	Size     int64 `json:"size"`
	SlotSize int   `json:"slot_size"`
	Slots    int   `json:"slots"`
	// UsedSlots hold a block (clean or dirty); DirtySlots hold blocks not
	// yet uploaded (the upload buffer).
	UsedSlots  int `json:"used_slots"`
	DirtySlots int `json:"dirty_slots"`
	// CachePercentUsed, CachePercentDirty: used and dirty slots as a share
	// of all slots; UploadBufferPercentUsed: dirty slots as a share of the
	// upload buffer (UploadBufferPercent of the slots).
	CachePercentUsed        float64 `json:"cache_percent_used"`
	CachePercentDirty       float64 `json:"cache_percent_dirty"`
	UploadBufferPercentUsed float64 `json:"upload_buffer_percent_used"`
	Volumes                 int     `json:"volumes"`
	// Degraded is true while the object store is failing requests.
	Degraded  bool   `json:"degraded"`
	LastError string `json:"last_error,omitempty"`
}

// Info returns the cache's state.
func (c *Cache) Info() CacheInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.slots)
	used := n - len(c.free)
	in := CacheInfo{
		Size: int64(n) * int64(c.cfg.SlotSize), SlotSize: c.cfg.SlotSize, Slots: n,
		UsedSlots: used, DirtySlots: c.nDirty, Volumes: len(c.vols), Degraded: c.degraded.Load(),
		CachePercentUsed:        pct(used, n),
		CachePercentDirty:       pct(c.nDirty, n),
		UploadBufferPercentUsed: pct(c.nDirty, c.maxDirty),
	}
	if s, ok := c.lastError.Load().(string); ok && in.Degraded {
		in.LastError = s
	}
	return in
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// Roots adds the chunks every cached volume's live block map references,
// and those of uploads in flight, for snapshot garbage collection: pass it
// as snapshot.GCOptions.Roots. Uploads register their chunks before they
// check for a running collection (Catalog.WaitGC), so a collection sees
// every chunk a cached volume references or is about to.
func (c *Cache) Roots(ctx context.Context, add func(snapshot.ChunkID)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	for _, v := range c.vols {
		for _, b := range v.bm.Blocks {
			if !b.ID.IsZero() {
				add(b.ID)
			}
		}
	}
	for id := range c.inflight {
		add(id)
	}
	return nil
}

// WaitUploaded waits until every dirty block of every volume is in the
// object store.
func (c *Cache) WaitUploaded(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.nDirty > 0 {
		if err := c.usable(); err != nil {
			return err
		}
		if err := c.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// waitVolumeUploaded waits until v has no dirty block. Caller holds mu.
func (c *Cache) waitVolumeUploaded(ctx context.Context, v *vstate) error {
	for v.dirty > 0 {
		if err := c.usable(); err != nil {
			return err
		}
		if err := c.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// DropClean evicts every clean, unused block (an operator's "drop
// caches"; tests use it to force reads from the store).
func (c *Cache) DropClean(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if err := c.usable(); err != nil {
			return err
		}
		var victims []*entry
		c.evictionOrder(func(e *entry) bool {
			if e.pins == 0 {
				victims = append(victims, e)
			}
			return true
		})
		if len(victims) == 0 {
			return nil
		}
		if c.evicting {
			if err := c.wait(ctx); err != nil {
				return err
			}
			continue
		}
		if err := c.evict(victims); err != nil {
			return err
		}
	}
}

// Check verifies the cache's invariants (slot ownership, counts, LRU and
// queue membership) and returns the first violation as ErrCorrupt. Tests
// run it after every scenario; an operator command can too.
func (c *Cache) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("cache check: "+format+": %w", append(args, ErrCorrupt)...)
	}
	free := make(map[int32]bool, len(c.free)+len(c.fills))
	for _, s := range c.free {
		if free[s] || c.slots[s] != nil {
			return bad("free slot %d listed twice or in use", s)
		}
		free[s] = true
	}
	for k, f := range c.fills {
		if free[f.slot] || c.slots[f.slot] != nil {
			return bad("slot %d filling for block %d is free or in use", f.slot, k.block)
		}
		free[f.slot] = true // accounted: taken by a write, not yet indexed
	}
	dirty, lru := 0, 0
	for _, l := range []*cleanList{&c.prob, &c.prot} {
		n := 0
		for e := l.head; e != nil; e = e.next {
			if e.dirty || e.list != l {
				return bad("block %d of %s misplaced on a clean list", e.block, e.v.name)
			}
			n++
		}
		if n != l.n {
			return bad("clean list counts %d entries, holds %d", l.n, n)
		}
		lru += n
	}
	clean := 0
	for s, e := range c.slots {
		if e == nil {
			if !free[int32(s)] && !c.evicting {
				return bad("slot %d neither used nor free", s)
			}
			continue
		}
		if e.slot != int32(s) || e.v.entries[e.block] != e || c.vols[e.v.key] != e.v {
			return bad("slot %d not indexed by its volume", s)
		}
		if e.dirty {
			dirty++
			if !e.queued && !e.uploading && e.writers == 0 {
				return bad("dirty block %d of %s not queued", e.block, e.v.name)
			}
		} else {
			clean++
		}
	}
	if dirty != c.nDirty || clean != lru {
		return bad("%d dirty (counted %d), %d clean (LRU %d)", dirty, c.nDirty, clean, lru)
	}
	for _, v := range c.vols {
		n := 0
		for b, e := range v.entries {
			if e.block != b || c.slots[e.slot] != e {
				return bad("block %d of %s points at slot %d owned elsewhere", b, v.name, e.slot)
			}
			if e.dirty {
				n++
			}
		}
		if n != v.dirty {
			return bad("volume %s: %d dirty blocks, counted %d", v.name, n, v.dirty)
		}
	}
	return nil
}
