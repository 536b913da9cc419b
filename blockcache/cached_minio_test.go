package blockcache

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// cachedTarget wraps a cached volume for the reusable scenarios of
// blockcachetest.
func cachedTarget(t *testing.T, ce *cacheEnv, v *CachedVolume) blockcachetest.Target {
	return blockcachetest.Target{
		Dev: v,
		Snapshot: func(ctx context.Context) (snapshot.Info, error) {
			return v.Snapshot(ctx, ce.cat, SnapshotRequest{})
		},
		Restore: func(ctx context.Context, id string) ([]byte, error) {
			_, img := restoreVolume(t, ce.env, id)
			return img, nil
		},
		Block: 4096,
	}
}

// TestCachedPointInTime and TestCachedWriteDuringSnapshot run the stored
// volumes' snapshot scenarios on a cached volume whose cache is smaller
// than the volume.
func TestCachedPointInTime(t *testing.T) {
	ce := newCacheEnv(t, embeddedEnv(t, ""), CacheConfig{Size: 32 * snapshot.MinBlockSize, SlotSize: snapshot.MinBlockSize, DirtyWindow: 20 * time.Millisecond})
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: 4 << 20, BlockSize: snapshot.MinBlockSize, Codec: snapshot.CodecLZ4}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	blockcachetest.PointInTime(t, cachedTarget(t, ce, v), 41)
}

func TestCachedWriteDuringSnapshot(t *testing.T) {
	ce := newCacheEnv(t, embeddedEnv(t, ""), CacheConfig{Size: 32 * snapshot.MinBlockSize, SlotSize: snapshot.MinBlockSize, DirtyWindow: 20 * time.Millisecond})
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: 2 << 20, BlockSize: snapshot.MinBlockSize, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	blockcachetest.WriteDuringSnapshot(t, cachedTarget(t, ce, v), 43, func() func() {
		ce.faults.Add(objstore.FaultRule{Op: objstore.OpPut, Latency: 2 * time.Millisecond})
		return ce.faults.Clear
	})
}

// unitModel tracks a large volume's expected content in 256 KiB units:
// each unit holds the keystream of the write that last covered it.
type unitModel struct {
	seeds []uint64 // 0: never written
}

const unit = 256 << 10

func (m *unitModel) fill(p []byte, off int64, seq uint64) {
	for k := int64(0); k < int64(len(p))/unit; k++ {
		u := off/unit + k
		m.seeds[u] = seq<<20 | uint64(u) + 1
		seededBytes(p[k*unit:(k+1)*unit], m.seeds[u])
	}
}

func (m *unitModel) verify(t *testing.T, v *CachedVolume, what string) {
	t.Helper()
	ctx := ctxT(t)
	got, want := make([]byte, 1<<20), make([]byte, unit)
	for off := int64(0); off < v.Size(); off += int64(len(got)) {
		if err := v.ReadAt(ctx, got, off); err != nil {
			t.Fatalf("%s: read at %d: %v", what, off, err)
		}
		for k := int64(0); k < int64(len(got))/unit; k++ {
			if s := m.seeds[off/unit+k]; s == 0 {
				clear(want)
			} else {
				seededBytes(want, s)
			}
			if !bytes.Equal(got[k*unit:(k+1)*unit], want) {
				t.Fatalf("%s: unit at %d differs", what, off+k*unit)
			}
		}
	}
}

// TestMinIOCached1GiB is the acceptance scenario on a real MinIO: a 1 GiB
// cached volume (default 1 MiB blocks) with a 64 MiB cache takes 512 MiB
// of seeded random 1 MiB writes (a quarter of them at 256 KiB offsets, so
// they touch two blocks partially and blocks already evicted are read back
// from the store first), and every byte reads back after the cache was
// emptied and after a close and reopen of cache and volume.
func TestMinIOCached1GiB(t *testing.T) {
	t.Parallel() // mostly waiting on MinIO: overlaps with the outage test
	ctx := ctxT(t)
	e, _ := minioEnv(t)
	ce := newCacheEnv(t, e, CacheConfig{Size: 64 << 20, DirtyWindow: 100 * time.Millisecond})
	const size = 1 << 30
	dir := filepath.Join(ce.vols, "big")
	v, err := CreateCached(dir, ce.c, CachedConfig{Name: "big", Size: size, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m := &unitModel{seeds: make([]uint64, size/unit)}
	r := rand.New(rand.NewPCG(1, 1))
	p := make([]byte, 1<<20)
	for seq := uint64(1); seq <= 512; seq++ {
		// Every fourth write starts mid-block: two partial blocks.
		off := r.Int64N(size/int64(len(p))) * int64(len(p))
		if seq%4 == 0 && off > 0 {
			off -= unit
		}
		m.fill(p, off, seq)
		if err := v.WriteAt(ctx, p, off, seq%64 == 0); err != nil {
			t.Fatal(err)
		}
	}
	written := time.Since(start)
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	uploaded := time.Since(start)
	in := v.Info()
	t.Logf("512 MiB written in %v, uploaded after %v: %+v", written, uploaded, in)
	// One pass checks both conditions: the cache is emptied, then cache
	// and volume are closed and reopened, so every block comes from the
	// store through the reopened index. (The restart with dirty and clean
	// blocks still cached is TestCachedBasic's and TestCachedKill9's.)
	if err := ce.c.DropClean(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	ce.reopen(t)
	if v, err = OpenCached(dir, ce.c, Options{}); err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	m.verify(t, v, "after eviction and reopen")
	in = v.Info()
	t.Logf("verified from the store after %v: %+v", time.Since(start), in)
	ce.c.mu.Lock()
	_, stored, _ := v.v.bm.Stats()
	ce.c.mu.Unlock()
	if in.CloudBytesDownloaded < stored {
		t.Fatalf("%d bytes came from the store, the volume's chunks hold %d", in.CloudBytesDownloaded, stored)
	}
}

// TestMinIOCachedOutage stops MinIO for 30 s during a mixed workload:
// reads of cached blocks and writes that fit the upload buffer never fail,
// the cache reports itself degraded, and once MinIO is back everything is
// uploaded, reads back from the store and snapshots.
func TestMinIOCachedOutage(t *testing.T) {
	t.Parallel() // mostly sleeping through the outage
	ctx := ctxT(t)
	e, mi := minioEnv(t)
	ce := newCacheEnv(t, e, CacheConfig{Size: 48 << 20, DirtyWindow: 50 * time.Millisecond, RetryDelay: 50 * time.Millisecond})
	const size = 64 << 20
	const bs = 1 << 20
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: size, Codec: snapshot.CodecLZ4}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	m := &cmodel{v: v, want: make([]byte, size)}
	r := rand.New(rand.NewPCG(7, 7))
	// 8 MiB of data, uploaded and cached.
	for b := int64(0); b < 8; b++ {
		m.write(t, r, b*bs, bs, int(b%2), false)
	}
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	// The issue asks for a 30 s outage: long enough for every retry and
	// back-off path of the uploader and the fetches to run.
	const outageFor = 30 * time.Second
	mi.Stop()
	outage := time.Now()
	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		reads   atomic.Int64
		writesN atomic.Int64
	)
	// Readers of the cached blocks.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rr := rand.New(rand.NewPCG(8, 8))
		buf := make([]byte, 64<<10)
		for !stop.Load() {
			off := rr.Int64N(8*bs - int64(len(buf)))
			m.mu.Lock() // reads and writes of the model stay ordered
			err := v.ReadAt(ctx, buf, off)
			ok := bytes.Equal(buf, m.want[off:off+int64(len(buf))])
			m.mu.Unlock()
			if err != nil || !ok {
				t.Errorf("cached read at %d during the outage: %v (equal %v)", off, err, ok)
				return
			}
			reads.Add(1)
		}
	}()
	// Writers: partial writes to cached blocks and whole new blocks, 24
	// dirty blocks in all (the upload buffer holds 38).
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; k < 24 && !stop.Load(); k++ {
			var off int64
			n := bs
			if k%2 == 0 {
				off, n = int64(k/2%8)*bs+4096, 100_000
			} else {
				off = int64(8+k) * bs
			}
			p := make([]byte, n)
			blockcachetest.Fill(r, p, k%2)
			m.mu.Lock()
			err := v.WriteAt(ctx, p, off, k%3 == 0)
			copy(m.want[off:], p)
			m.mu.Unlock()
			if err != nil {
				t.Errorf("write at %d during the outage: %v", off, err)
				return
			}
			writesN.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	for time.Since(outage) < outageFor {
		time.Sleep(100 * time.Millisecond)
	}
	if !ce.c.Info().Degraded || !v.Info().Degraded {
		t.Errorf("not degraded during the outage: %+v", ce.c.Info())
	}
	if in := v.Info(); in.DirtyBlocks == 0 || in.TimeSinceLastRecoveryPoint < 5*time.Second {
		t.Errorf("during the outage: %+v", in)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("outage: %d reads, %d writes, %+v", reads.Load(), writesN.Load(), ce.c.Info())
	if err := mi.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	if ce.c.Info().Degraded {
		t.Error("still degraded after the uploads completed")
	}
	if err := ce.c.DropClean(ctx); err != nil {
		t.Fatal(err)
	}
	m.verify(t, "from the store after the outage")
	s, err := v.Snapshot(ctx, ce.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "img")
	if _, err := ce.cat.RestoreToFile(ctx, s.ID, out); err != nil {
		t.Fatal(err)
	}
	if _, img := restoreVolume(t, ce.env, s.ID); firstDiff(img, m.want) >= 0 {
		t.Fatal("snapshot after the outage differs")
	}
}
