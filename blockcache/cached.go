package blockcache

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/snapshot"
)

// CachedConfig describes a new cached volume.
type CachedConfig struct {
	// Name identifies the volume in snapshot catalogues.
	Name string
	// Size in bytes; a multiple of 512, at most snapshot.MaxVolumeSize.
	Size int64
	// BlockSize is the block (chunk) size; 0 means
	// snapshot.DefaultBlockSize. It must not exceed the cache's SlotSize.
	BlockSize int
	// Codec compresses chunks (default zstd).
	Codec snapshot.Codec
}

// cachedMeta is cached.json in the volume's directory.
type cachedMeta struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Key names the volume in the cache's index (hex).
	Key          string    `json:"key"`
	FromSnapshot string    `json:"from_snapshot,omitempty"`
	Created      time.Time `json:"created"`
}

const cachedMetaFile = "cached.json"

// CachedVolume is a block volume whose data lives in the object store as a
// live block map over the snapshot chunk store, with recently used blocks
// and not yet uploaded writes in the gateway's Cache. It implements the
// iSCSI block-device contract (ReadAt, WriteAt, Flush, Size, Unmap,
// Mapped). It is safe for concurrent use.
//
// Durability: a write is in the cache file when WriteAt returns; it is
// durable (survives a crash) when WriteAt was called with fua, after the
// next Flush, or at the latest one CacheConfig.DirtyWindow later. It is in
// the object store once the uploader has stored its block.
type CachedVolume struct {
	c    *Cache
	v    *vstate
	dir  string
	log  *slog.Logger
	bs   int64
	size atomic.Int64

	// freeze is held shared by writes and exclusively while a snapshot
	// freezes the block map or the volume is resized.
	freeze  sync.RWMutex
	snapRun sync.Mutex
	closed  atomic.Bool
}

var (
	_ interface {
		ReadAt(ctx context.Context, p []byte, off int64) error
		WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
		Flush(ctx context.Context) error
		Size() int64
		Unmap(ctx context.Context, off, length int64) error
		Mapped(ctx context.Context, off int64) (bool, int64, error)
		Close() error
	} = (*CachedVolume)(nil)
)

func (cfg *CachedConfig) check(c *Cache) error {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = snapshot.DefaultBlockSize
	}
	if cfg.Name == "" || len(cfg.Name) > maxVolNameLen || cfg.Size <= 0 || cfg.Size%512 != 0 || cfg.Size > snapshot.MaxVolumeSize ||
		!snapshot.ValidBlockSize(cfg.BlockSize) || cfg.BlockSize > c.cfg.SlotSize || cfg.Codec > snapshot.CodecLZ4 {
		return fmt.Errorf("cached volume %q of %d bytes, %d-byte blocks (cache slots %d): %w",
			cfg.Name, cfg.Size, cfg.BlockSize, c.cfg.SlotSize, ErrInvalid)
	}
	return nil
}

// CreateCached creates a cached volume in dir (created if needed; it must
// not hold a volume) on cache c and opens it. The volume starts as all
// holes: nothing is allocated anywhere until it is written.
func CreateCached(dir string, c *Cache, cfg CachedConfig, o Options) (*CachedVolume, error) {
	if err := cfg.check(c); err != nil {
		return nil, err
	}
	bm, err := snapshot.NewBlockMap(cfg.Size, cfg.BlockSize, cfg.Codec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := createCachedDir(dir, c, cfg.Name, "", bm); err != nil {
		return nil, err
	}
	return OpenCached(dir, c, o)
}

// CreateCachedFromSnapshot creates a cached volume in dir whose content is
// a completed snapshot's. It is instant: the volume's block map is the
// snapshot's, and blocks are fetched from the store when first read. Size,
// block size and codec come from the snapshot (cfg.Codec overrides the
// codec when set). The snapshot's block size must fit the cache's slots.
func CreateCachedFromSnapshot(ctx context.Context, dir string, c *Cache, cat *snapshot.Catalog, id string, cfg CachedConfig, o Options) (*CachedVolume, error) {
	m, err := cat.Manifest(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("cached volume from snapshot %s: %w", id, err)
	}
	cfg.Size, cfg.BlockSize = m.Map.Size, m.Map.BlockSize
	if cfg.Codec == 0 {
		cfg.Codec = m.Map.Codec
	}
	if err := cfg.check(c); err != nil {
		return nil, err
	}
	m.Map.Codec = cfg.Codec
	if err := createCachedDir(dir, c, cfg.Name, id, &m.Map); err != nil {
		return nil, err
	}
	return OpenCached(dir, c, o)
}

// RecoverCached recreates cached volume name in dir on cache c from the
// live block map its previous cache stored in the object store
// (CacheConfig.MapInterval): for when a cache disk was lost. Writes newer
// than the stored map (at most MapInterval plus the upload backlog) are
// lost, and chunks that garbage collection removed after the old cache
// stopped reporting them read as errors; a snapshot is the safer recovery
// point. It reports snapshot.ErrNotFound when no map was stored.
func RecoverCached(ctx context.Context, dir string, c *Cache, name string, o Options) (*CachedVolume, error) {
	bm, stored, err := c.cat.LiveMap(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("recovering cached volume %s: %w", name, err)
	}
	cfg := CachedConfig{Name: name, Size: bm.Size, BlockSize: bm.BlockSize, Codec: bm.Codec}
	if err := cfg.check(c); err != nil {
		return nil, err
	}
	if err := createCachedDir(dir, c, name, "", bm); err != nil {
		return nil, err
	}
	c.log.Warn("cached volume recovered from its stored live map", "volume", name, "map_stored", stored)
	return OpenCached(dir, c, o)
}

// createCachedDir writes cached.json, then registers the volume in the
// cache (durably). A crash in between leaves a cached.json whose key the
// cache does not know; OpenCached removes it and reports ErrNotVolume, so
// the volume can be created again.
func createCachedDir(dir string, c *Cache, name, from string, bm *snapshot.BlockMap) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("volume dir: %w", err)
	}
	for _, f := range []string{cachedMetaFile, metaFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s: %w", dir, ErrExists)
		}
	}
	var kb [8]byte
	if _, err := rand.Read(kb[:]); err != nil {
		return err
	}
	key := binary.BigEndian.Uint64(kb[:])
	meta := cachedMeta{Version: 1, Name: name, Key: strconv.FormatUint(key, 16), FromSnapshot: from, Created: time.Now().UTC()}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, cachedMetaFile), append(b, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", cachedMetaFile, err)
	}
	if err := c.failpoint("cached.meta-written"); err != nil {
		return err
	}
	return c.register(key, name, bm)
}

// register adds a volume to the cache index durably.
func (c *Cache) register(key uint64, name string, bm *snapshot.BlockMap) error {
	c.mu.Lock()
	if err := c.usable(); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.vols[key] != nil {
		c.mu.Unlock()
		return fmt.Errorf("cache volume key %x: %w", key, ErrExists)
	}
	c.vols[key] = newVstate(key, name, bm)
	seq := c.j.append(journalRec{typ: recVol, key: key, block: uint64(bm.Size), bs: uint32(bm.BlockSize), codec: bm.Codec, name: name})
	holes := true
	for _, r := range bm.Blocks {
		if !r.ID.IsZero() {
			holes = false
			break
		}
	}
	c.mu.Unlock()
	if !holes {
		// A map with data (from a snapshot) goes into a checkpoint, in
		// its compact manifest form, rather than one record per block.
		return c.checkpoint()
	}
	return c.j.commit(seq)
}

// OpenCached opens the cached volume in dir on cache c.
func OpenCached(dir string, c *Cache, o Options) (*CachedVolume, error) {
	o.defaults()
	b, err := os.ReadFile(filepath.Join(dir, cachedMetaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotVolume)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", cachedMetaFile, err)
	}
	var meta cachedMeta
	err = json.Unmarshal(b, &meta)
	key, kerr := strconv.ParseUint(meta.Key, 16, 64)
	if err != nil || kerr != nil || meta.Version != 1 {
		return nil, fmt.Errorf("%s/%s: %w", dir, cachedMetaFile, ErrCorrupt)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return nil, err
	}
	v := c.vols[key]
	if v == nil {
		// Created up to cached.json but never registered.
		os.Remove(filepath.Join(dir, cachedMetaFile))
		return nil, fmt.Errorf("%s (not in the cache): %w", dir, ErrNotVolume)
	}
	if v.open {
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	v.open = true
	cv := &CachedVolume{c: c, v: v, dir: dir, log: o.Logger.With("volume", v.name), bs: int64(v.bm.BlockSize)}
	cv.size.Store(v.bm.Size)
	return cv, nil
}

// DeleteCached deletes the (closed) cached volume in dir: its blocks leave
// the cache, blocks not yet uploaded are dropped, and cached.json is
// removed. Its chunks stay in the store until snapshot garbage collection
// finds them unreferenced (Cache.Roots no longer reports them).
func DeleteCached(dir string, c *Cache) error {
	b, err := os.ReadFile(filepath.Join(dir, cachedMetaFile))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", dir, ErrNotVolume)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", cachedMetaFile, err)
	}
	var meta cachedMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return fmt.Errorf("%s/%s: %w", dir, cachedMetaFile, ErrCorrupt)
	}
	key, err := strconv.ParseUint(meta.Key, 16, 64)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", dir, cachedMetaFile, ErrCorrupt)
	}
	if err := c.unregister(key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.cat.DeleteLiveMap(ctx, meta.Name); err != nil {
		// Harmless: nothing reads a live map but RecoverCached.
		c.log.Warn("deleting live block map", "volume", meta.Name, "err", err)
	}
	if err := os.Remove(filepath.Join(dir, cachedMetaFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", cachedMetaFile, err)
	}
	return nil
}

// unregister removes a volume and frees its slots once that is durable.
func (c *Cache) unregister(key uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	v := c.vols[key]
	if v == nil {
		return nil // deleted before cached.json was removed
	}
	if v.open {
		return fmt.Errorf("volume %s is open: %w", v.name, ErrLocked)
	}
	// Wait for fetches and uploads using its slots.
	for {
		busy := false
		for _, e := range v.entries {
			if e.pins > 0 {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		if err := c.wait(context.Background()); err != nil {
			return err
		}
	}
	v.deleted = true
	delete(c.vols, key)
	var slots []int32
	for b, e := range v.entries {
		c.dropEntryCounts(e)
		delete(v.entries, b)
		c.slots[e.slot] = nil
		slots = append(slots, e.slot)
	}
	seq := c.j.append(journalRec{typ: recDelVol, key: key})
	c.mu.Unlock()
	err := c.j.commit(seq)
	c.mu.Lock()
	if err != nil {
		return err
	}
	c.free = append(c.free, slots...)
	c.broadcast()
	c.log.Info("cached volume deleted", "volume", v.name, "freed_slots", len(slots))
	return nil
}

// Size returns the volume size in bytes.
func (v *CachedVolume) Size() int64 { return v.size.Load() }

// BlockSize returns the block (chunk) size.
func (v *CachedVolume) BlockSize() int { return int(v.bs) }

// Name returns the volume's name.
func (v *CachedVolume) Name() string { return v.v.name }

// Dir returns the volume's directory.
func (v *CachedVolume) Dir() string { return v.dir }

func (v *CachedVolume) check(off, n int64) error {
	if v.closed.Load() {
		return ErrClosed
	}
	if size := v.size.Load(); off < 0 || n < 0 || off+n > size {
		return fmt.Errorf("[%d, %d) of %d bytes: %w", off, off+n, size, ErrOutOfRange)
	}
	return nil
}

// segments calls fn for each block-sized piece of [off, off+len(p)).
func (v *CachedVolume) segments(p []byte, off int64, fn func(b int64, q []byte, boff int) error) error {
	for len(p) > 0 {
		b, boff := off/v.bs, off%v.bs
		n := min(int64(len(p)), v.bs-boff)
		if err := fn(b, p[:n], int(boff)); err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// ReadAt fills p with the volume's bytes at off. Cached blocks are read
// from the cache file; others are fetched from the object store (and
// cached).
func (v *CachedVolume) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	return v.segments(p, off, func(b int64, q []byte, boff int) error {
		return v.c.readBlock(ctx, v.v, b, q, boff)
	})
}

// WriteAt stores p at off in the cache; the uploader stores it in the
// object store later. With fua the write is durable on return. When the
// upload buffer is full it waits (back-pressure); it does not fail while
// the store is merely slow or unreachable.
func (v *CachedVolume) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	v.freeze.RLock()
	defer v.freeze.RUnlock()
	err := v.segments(p, off, func(b int64, q []byte, boff int) error {
		return v.c.writeBlock(ctx, v.v, b, q, boff)
	})
	if err == nil && fua {
		err = v.c.Flush(ctx)
	}
	return err
}

// Flush makes every completed write durable in the cache (SYNCHRONIZE
// CACHE). It does not wait for uploads.
func (v *CachedVolume) Flush(ctx context.Context) error {
	if err := v.check(0, 0); err != nil {
		return err
	}
	return v.c.Flush(ctx)
}

// Unmap deallocates [off, off+length): whole blocks become holes (and
// leave the cache), partial blocks are zeroed.
func (v *CachedVolume) Unmap(ctx context.Context, off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	v.freeze.RLock()
	defer v.freeze.RUnlock()
	for length > 0 {
		b, boff := off/v.bs, off%v.bs
		n := min(length, v.bs-boff)
		var err error
		if boff == 0 && (n == v.bs || off+n == v.size.Load()) {
			err = v.c.unmapBlock(ctx, v.v, b)
		} else {
			err = v.c.writeBlock(ctx, v.v, b, zeroBlock[:n], int(boff))
		}
		if err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// Mapped reports whether the block holding off has data (in the store or
// in the cache) and how many bytes from off share that state.
func (v *CachedVolume) Mapped(ctx context.Context, off int64) (bool, int64, error) {
	if err := v.check(off, 1); err != nil {
		return false, 0, err
	}
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	mapped := func(b int64) bool { return v.v.entries[b] != nil || !v.v.bm.Blocks[b].ID.IsZero() }
	b := off / v.bs
	state := mapped(b)
	end := b + 1
	for n := int64(len(v.v.bm.Blocks)); end < n && end-b < 1<<16 && mapped(end) == state; end++ {
	}
	return state, min(end*v.bs, v.size.Load()) - off, nil
}

// Resize grows the volume to size bytes (a multiple of 512); the new space
// reads as zeros. Shrinking is refused (ErrInvalid).
func (v *CachedVolume) Resize(ctx context.Context, size int64) error {
	if err := v.check(0, 0); err != nil {
		return err
	}
	old := v.size.Load()
	if size < old || size%512 != 0 || size > snapshot.MaxVolumeSize {
		return fmt.Errorf("resizing %s from %d to %d bytes: %w", v.v.name, old, size, ErrInvalid)
	}
	if size == old {
		return nil
	}
	v.freeze.Lock()
	defer v.freeze.Unlock()
	// A short last block grows: rewrite it at its new length, so that its
	// chunk matches the block length snapshots expect.
	last := (old - 1) / v.bs
	var tail []byte
	if short := int(old - last*v.bs); short < int(v.bs) {
		c := v.c
		c.mu.Lock()
		hasData := v.v.entries[last] != nil || !v.v.bm.Blocks[last].ID.IsZero()
		c.mu.Unlock()
		if hasData {
			tail = make([]byte, min(v.bs, size-last*v.bs))
			if err := v.c.readBlock(ctx, v.v, last, tail[:short], 0); err != nil {
				return err
			}
		}
	}
	c := v.c
	c.mu.Lock()
	growMap(v.v.bm, size)
	v.v.mapDirty = true
	seq := c.j.append(journalRec{typ: recVol, key: v.v.key, block: uint64(size), bs: uint32(v.bs), codec: v.v.bm.Codec, name: v.v.name})
	c.mu.Unlock()
	v.size.Store(size)
	if err := c.j.commit(seq); err != nil {
		return err
	}
	if tail != nil {
		if err := c.writeBlock(ctx, v.v, last, tail, 0); err != nil {
			return err
		}
		return c.Flush(ctx)
	}
	return nil
}

// Snapshot takes a snapshot of the volume into cat: it waits for the
// volume's dirty blocks to be uploaded, then, with writes held off only
// for the last few uploads, stores a copy of the live block map as a
// completed snapshot (snapshot.Catalog.CreateFromMap). No block is read or
// uploaded for the snapshot itself. req is as for stored volumes.
func (v *CachedVolume) Snapshot(ctx context.Context, cat *snapshot.Catalog, req SnapshotRequest) (snapshot.Info, error) {
	if !v.snapRun.TryLock() {
		return snapshot.Info{}, ErrSnapshotBusy
	}
	defer v.snapRun.Unlock()
	if err := v.check(0, 0); err != nil {
		return snapshot.Info{}, err
	}
	c := v.c
	// Drain most of the upload buffer while writes continue.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c.mu.Lock()
	err := c.waitVolumeUploaded(pctx, v.v)
	c.mu.Unlock()
	cancel()
	if err != nil && ctx.Err() != nil {
		return snapshot.Info{}, err
	}
	return cat.CreateFromMap(ctx, snapshot.MapRequest{
		Volume: v.v.name, Size: v.size.Load(), BlockSize: int(v.bs), Codec: v.codec(),
		Description: req.Description, Tags: req.Tags,
		Freeze: func(ctx context.Context) (*snapshot.BlockMap, error) {
			// Writes wait while the last blocks upload; not for long
			// if the store went away meanwhile.
			ctx, cancel := context.WithTimeout(ctx, freezeTimeout)
			defer cancel()
			v.freeze.Lock()
			defer v.freeze.Unlock()
			c.mu.Lock()
			defer c.mu.Unlock()
			if err := c.waitVolumeUploaded(ctx, v.v); err != nil {
				return nil, err
			}
			bm := *v.v.bm
			bm.Blocks = append([]snapshot.BlockRef(nil), v.v.bm.Blocks...)
			return &bm, nil
		},
	})
}

// freezeTimeout bounds how long a snapshot holds writes off while the
// volume's last dirty blocks upload.
const freezeTimeout = time.Minute

func (v *CachedVolume) codec() snapshot.Codec {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	return v.v.bm.Codec
}

// CachedInfo is a cached volume's state for status output and metrics.
// The percentages follow the AWS Storage Gateway cached-volume metrics of
// the same names.
type CachedInfo struct {
	Name      string         `json:"name"`
	Size      int64          `json:"size"`
	BlockSize int            `json:"block_size"`
	Codec     snapshot.Codec `json:"codec"`
	// CachedBlocks are in the cache; DirtyBlocks of them are not yet in
	// the object store.
	CachedBlocks int `json:"cached_blocks"`
	DirtyBlocks  int `json:"dirty_blocks"`
	// CacheHits and CacheMisses count block reads served by the cache (or
	// holes) and by the store since the cache was opened;
	// CacheHitPercent is their ratio.
	CacheHits       int64   `json:"cache_hits"`
	CacheMisses     int64   `json:"cache_misses"`
	CacheHitPercent float64 `json:"cache_hit_percent"`
	// CachePercentUsed and CachePercentDirty are this volume's used and
	// dirty slots as a share of the cache; UploadBufferPercentUsed its
	// dirty slots as a share of the upload buffer.
	CachePercentUsed        float64 `json:"cache_percent_used"`
	CachePercentDirty       float64 `json:"cache_percent_dirty"`
	UploadBufferPercentUsed float64 `json:"upload_buffer_percent_used"`
	// CloudBytesUploaded and CloudBytesDownloaded count chunk bytes sent
	// to and read from the store since the cache was opened.
	CloudBytesUploaded   int64 `json:"cloud_bytes_uploaded"`
	CloudBytesDownloaded int64 `json:"cloud_bytes_downloaded"`
	// TimeSinceLastRecoveryPoint is zero when every write is in the
	// store, else the time since the volume last had no dirty block.
	TimeSinceLastRecoveryPoint time.Duration `json:"time_since_last_recovery_point_ns"`
	// Degraded is true while the object store is failing requests.
	Degraded bool `json:"degraded"`
}

// Info returns the volume's state.
func (v *CachedVolume) Info() CachedInfo {
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	in := CachedInfo{
		Name: v.v.name, Size: v.v.bm.Size, BlockSize: v.v.bm.BlockSize, Codec: v.v.bm.Codec,
		CachedBlocks: len(v.v.entries), DirtyBlocks: v.v.dirty,
		CacheHits: v.v.hits.Load(), CacheMisses: v.v.misses.Load(),
		CloudBytesUploaded: v.v.up.Load(), CloudBytesDownloaded: v.v.down.Load(),
		Degraded: c.degraded.Load(),
	}
	if t := in.CacheHits + in.CacheMisses; t > 0 {
		in.CacheHitPercent = 100 * float64(in.CacheHits) / float64(t)
	}
	in.CachePercentUsed = pct(in.CachedBlocks, len(c.slots))
	in.CachePercentDirty = pct(in.DirtyBlocks, len(c.slots))
	in.UploadBufferPercentUsed = pct(in.DirtyBlocks, c.maxDirty)
	if v.v.dirty > 0 {
		in.TimeSinceLastRecoveryPoint = time.Since(v.v.lastRecovery)
	}
	return in
}

// Close closes the volume after making its writes durable in the cache.
// Its dirty blocks stay in the cache and keep being uploaded.
func (v *CachedVolume) Close() error {
	if v.closed.Swap(true) {
		return nil
	}
	v.freeze.Lock()
	defer v.freeze.Unlock()
	err := v.c.Flush(context.Background())
	v.c.mu.Lock()
	v.v.open = false
	v.c.mu.Unlock()
	return err
}
