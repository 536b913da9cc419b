package blockcache

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// cacheEnv is a cache on a store with a directory for volumes.
type cacheEnv struct {
	*env
	dir  string
	cfg  CacheConfig
	o    Options
	c    *Cache
	vols string
}

func newCacheEnv(t testing.TB, e *env, cfg CacheConfig) *cacheEnv {
	t.Helper()
	return newCacheEnvWith(t, e, cfg, Options{})
}

// newCacheEnvWith is newCacheEnv with cache options (failpoints).
func newCacheEnvWith(t testing.TB, e *env, cfg CacheConfig, o Options) *cacheEnv {
	t.Helper()
	root := t.TempDir()
	ce := &cacheEnv{env: e, dir: filepath.Join(root, "cache"), cfg: cfg, o: o, vols: filepath.Join(root, "volumes")}
	ce.open(t)
	return ce
}

func (ce *cacheEnv) open(t testing.TB) {
	t.Helper()
	c, err := OpenCache(ce.dir, ce.cat, ce.cfg, ce.o)
	if err != nil {
		t.Fatal(err)
	}
	ce.c = c
	t.Cleanup(func() {
		if err := c.Check(); err != nil && !errors.Is(err, ErrClosed) {
			t.Error(err)
		}
		c.Close()
	})
}

// reopen closes the cache cleanly and opens it again.
func (ce *cacheEnv) reopen(t testing.TB) {
	t.Helper()
	if err := ce.c.Check(); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.Close(); err != nil {
		t.Fatal(err)
	}
	ce.open(t)
}

// cmodel is a cached volume with the bytes it should hold.
type cmodel struct {
	v    *CachedVolume
	mu   sync.Mutex
	want []byte
	// alt is another acceptable image after a crash (an unacknowledged
	// write applied).
	alt []byte
}

func (m *cmodel) write(t testing.TB, r *rand.Rand, off int64, n int, kind int, fua bool) {
	t.Helper()
	p := make([]byte, n)
	blockcachetest.Fill(r, p, kind)
	if err := m.v.WriteAt(context.Background(), p, off, fua); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	copy(m.want[off:], p)
	m.mu.Unlock()
}

func (m *cmodel) verify(t testing.TB, what string) {
	t.Helper()
	got := make([]byte, len(m.want))
	// Read in uneven pieces to cross block boundaries.
	for off := 0; off < len(got); {
		n := min(len(got)-off, 100_000)
		if err := m.v.ReadAt(context.Background(), got[off:off+n], int64(off)); err != nil {
			t.Fatalf("%s: read at %d: %v", what, off, err)
		}
		off += n
	}
	if d := firstDiff(got, m.want); d >= 0 {
		t.Fatalf("%s: differs at byte %d (block %d)", what, d, d/m.v.BlockSize())
	}
}

func smallCache() CacheConfig {
	return CacheConfig{Size: 16 * snapshot.MinBlockSize, SlotSize: snapshot.MinBlockSize, DirtyWindow: 20 * time.Millisecond, RetryDelay: 10 * time.Millisecond}
}

// TestCachedBasic: writes of every shape (partial, spanning, holes, zero
// blocks) on a volume four times larger than its cache read back through
// eviction, after dropping the cache, after a clean reopen, and after an
// unclean one; Unmap, Mapped and Resize work.
func TestCachedBasic(t *testing.T) {
	ctx := ctxT(t)
	ce := newCacheEnv(t, embeddedEnv(t, ""), smallCache())
	const size = 64*snapshot.MinBlockSize + 4096
	dir := filepath.Join(ce.vols, "v1")
	v, err := CreateCached(dir, ce.c, CachedConfig{Name: "v1", Size: size, BlockSize: snapshot.MinBlockSize, Codec: snapshot.CodecLZ4}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &cmodel{v: v, want: make([]byte, size)}
	r := rand.New(rand.NewPCG(1, 2))
	for k := 0; k < 120; k++ {
		n := 1 + r.IntN(3*snapshot.MinBlockSize)
		off := r.Int64N(size - int64(n))
		m.write(t, r, off, n, k%3, k%7 == 0)
	}
	m.verify(t, "after writes")
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.DropClean(ctx); err != nil {
		t.Fatal(err)
	}
	if in := ce.c.Info(); in.UsedSlots != 0 {
		t.Fatalf("after DropClean: %+v", in)
	}
	m.verify(t, "after eviction")
	in := v.Info()
	if in.CacheMisses == 0 || in.CloudBytesDownloaded == 0 || in.CloudBytesUploaded == 0 {
		t.Fatalf("info: %+v", in)
	}
	// Some dirty blocks, then a clean reopen.
	for k := 0; k < 10; k++ {
		m.write(t, r, int64(k)*5*snapshot.MinBlockSize+100, 5000, 0, false)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	ce.reopen(t)
	if m.v, err = OpenCached(dir, ce.c, Options{}); err != nil {
		t.Fatal(err)
	}
	m.verify(t, "after reopen")

	// Unmap: whole blocks become holes, partial ones zeros.
	if err := m.v.Unmap(ctx, 2*snapshot.MinBlockSize, 3*snapshot.MinBlockSize+512); err != nil {
		t.Fatal(err)
	}
	clear(m.want[2*snapshot.MinBlockSize : 5*snapshot.MinBlockSize+512])
	m.verify(t, "after unmap")
	mapped, run, err := m.v.Mapped(ctx, 2*snapshot.MinBlockSize)
	if err != nil || mapped || run != 3*snapshot.MinBlockSize {
		t.Fatalf("Mapped after unmap: %v %d %v", mapped, run, err)
	}
	// Grow: the short last block is rewritten at its new length.
	if err := m.v.Resize(ctx, size+2*snapshot.MinBlockSize); err != nil {
		t.Fatal(err)
	}
	m.want = append(m.want, make([]byte, 2*snapshot.MinBlockSize)...)
	m.verify(t, "after resize")
	m.write(t, r, size+100, 1000, 0, true)
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := m.v.Snapshot(ctx, ce.cat, SnapshotRequest{Description: "cached"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != snapshot.StatusCompleted || s.Size != int64(len(m.want)) {
		t.Fatalf("snapshot: %+v", s)
	}
	vr, err := ce.cat.Verify(ctx, s.ID)
	if err != nil || !vr.OK {
		t.Fatalf("verify: %+v %v", vr, err)
	}
	_, img := restoreVolume(t, ce.env, s.ID)
	if d := firstDiff(img, m.want); d >= 0 {
		t.Fatalf("restored snapshot differs at %d", d)
	}
	if err := ce.c.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestCachedFromSnapshotAndGC: a volume created from a snapshot reads the
// snapshot lazily; after the snapshot is deleted, GC with the cache's
// Roots keeps every chunk the volumes reference and deletes the rest; a
// deleted volume's chunks go too.
func TestCachedFromSnapshotAndGC(t *testing.T) {
	ctx := ctxT(t)
	storeDir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	base, err := objstore.OpenEmbedded(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	e := wrapEnv(t, base, snapshot.Options{GCGrace: time.Minute, Now: clock})
	ce := newCacheEnv(t, e, smallCache())
	const size = 8 * snapshot.MinBlockSize
	v, err := CreateCached(filepath.Join(ce.vols, "src"), ce.c, CachedConfig{Name: "src", Size: size, BlockSize: snapshot.MinBlockSize}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &cmodel{v: v, want: make([]byte, size)}
	r := rand.New(rand.NewPCG(3, 4))
	m.write(t, r, 0, size, 0, false)
	s, err := v.Snapshot(ctx, ce.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cloneDir := filepath.Join(ce.vols, "clone")
	clone, err := CreateCachedFromSnapshot(ctx, cloneDir, ce.c, ce.cat, s.ID, CachedConfig{Name: "clone"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cm := &cmodel{v: clone, want: bytes.Clone(m.want)}
	if in := clone.Info(); in.CachedBlocks != 0 || in.Size != size {
		t.Fatalf("clone: %+v", in)
	}
	cm.verify(t, "clone")
	// Diverge both.
	m.write(t, r, 0, snapshot.MinBlockSize, 0, false)
	cm.write(t, r, snapshot.MinBlockSize, snapshot.MinBlockSize, 0, false)
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ce.cat.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	res, err := ce.cat.GC(ctx, snapshot.GCOptions{Roots: ce.c.Roots})
	if err != nil {
		t.Fatal(err)
	}
	// 8 source chunks; one replaced in each volume: 2 new, 1 dead.
	if res.LiveChunks != 10 || res.Deleted != 0 {
		t.Fatalf("gc: %+v", res)
	}
	if err := ce.c.DropClean(ctx); err != nil {
		t.Fatal(err)
	}
	m.verify(t, "source after gc")
	cm.verify(t, "clone after gc")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := DeleteCached(filepath.Join(ce.vols, "src"), ce.c); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	res, err = ce.cat.GC(ctx, snapshot.GCOptions{Roots: ce.c.Roots})
	if err != nil {
		t.Fatal(err)
	}
	if res.LiveChunks != 8 || res.Deleted != 2 {
		t.Fatalf("gc after delete: %+v", res)
	}
	cm.verify(t, "clone after second gc")
	if _, err := OpenCached(filepath.Join(ce.vols, "src"), ce.c, Options{}); !errors.Is(err, ErrNotVolume) {
		t.Fatalf("open deleted: %v", err)
	}
}

// TestCachedStoreOutage: with every store request failing, cached reads
// and writes that fit the upload buffer succeed and the cache says it is
// degraded; when the store is back the uploads complete.
func TestCachedStoreOutage(t *testing.T) {
	ctx := ctxT(t)
	ce := newCacheEnv(t, embeddedEnv(t, ""), smallCache())
	const size = 32 * snapshot.MinBlockSize
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: size, BlockSize: snapshot.MinBlockSize}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &cmodel{v: v, want: make([]byte, size)}
	r := rand.New(rand.NewPCG(5, 6))
	m.write(t, r, 0, 4*snapshot.MinBlockSize, 0, true)
	m.verify(t, "before")
	for _, op := range []string{objstore.OpPut, objstore.OpGet, objstore.OpHead} {
		ce.faults.Add(objstore.FaultRule{Op: op, Err: objstore.ErrInjected})
	}
	// 12 dirty blocks fit the buffer (80% of 16 slots).
	for k := 0; k < 8; k++ {
		m.write(t, r, int64(k+4)*snapshot.MinBlockSize, snapshot.MinBlockSize, 0, k%2 == 0)
	}
	m.write(t, r, 100, 1000, 0, false) // cached block
	m.verify(t, "during outage")
	deadline := time.Now().Add(10 * time.Second)
	for !ce.c.Info().Degraded {
		if time.Now().After(deadline) {
			t.Fatal("cache not degraded during the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if in := v.Info(); in.DirtyBlocks == 0 || in.TimeSinceLastRecoveryPoint == 0 || !in.Degraded {
		t.Fatalf("info during outage: %+v", in)
	}
	ce.faults.Clear()
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	if in := v.Info(); in.DirtyBlocks != 0 || in.TimeSinceLastRecoveryPoint != 0 {
		t.Fatalf("info after outage: %+v", in)
	}
	if err := ce.c.DropClean(ctx); err != nil {
		t.Fatal(err)
	}
	m.verify(t, "after outage")
	if ce.c.Info().Degraded {
		t.Fatal("still degraded")
	}
}

// TestCachedConcurrent: concurrent writers and readers on disjoint ranges
// with a tiny cache (back-pressure and eviction all the time), then a
// check of every byte.
func TestCachedConcurrent(t *testing.T) {
	ce := newCacheEnv(t, embeddedEnv(t, ""), CacheConfig{Size: 6 * snapshot.MinBlockSize, SlotSize: snapshot.MinBlockSize, DirtyWindow: 10 * time.Millisecond})
	const size = 24 * snapshot.MinBlockSize
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: size, BlockSize: snapshot.MinBlockSize, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &cmodel{v: v, want: make([]byte, size)}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			lo := int64(w) * size / 4
			buf := make([]byte, 30000)
			for k := 0; k < 40; k++ {
				off := lo + r.Int64N(size/4-int64(len(buf)))
				if k%3 == 2 {
					if err := v.ReadAt(context.Background(), buf, off); err != nil {
						t.Error(err)
						return
					}
					m.mu.Lock()
					ok := bytes.Equal(buf, m.want[off:off+int64(len(buf))])
					m.mu.Unlock()
					if !ok {
						t.Errorf("concurrent read at %d differs", off)
					}
					continue
				}
				m.write(t, r, off, len(buf), k%2, false)
			}
		}()
	}
	wg.Wait()
	m.verify(t, "after concurrent I/O")
}
