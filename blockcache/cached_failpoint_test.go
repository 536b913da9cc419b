package blockcache

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/snapshot"
)

// crash stops a cache as a killed process would: no checkpoint, no
// journal commit, buffered records lost.
func (c *Cache) crash() {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.broadcast()
	c.mu.Unlock()
	if !already {
		close(c.stop)
	}
	c.bgCancel()
	c.bg.Wait()
	c.closeFiles()
}

// TestCacheFailpoints fires each failpoint of the cache's durability
// boundaries, "crashes" there, reopens, and checks that every write
// acknowledged durable before is intact, that the index is consistent and
// that the volume keeps working.
func TestCacheFailpoints(t *testing.T) {
	tests := []struct {
		point string
		// fire does what makes the failpoint fire and reports the error.
		fire func(ce *cacheEnv, m *cmodel, r *rand.Rand) error
	}{
		{"cache.data-synced", func(ce *cacheEnv, m *cmodel, r *rand.Rand) error {
			// Not acknowledged: after the crash the block may hold it
			// or not (it was overwritten in place in the page cache).
			p := make([]byte, 5000)
			blockcachetest.Fill(r, p, 0)
			err := m.v.WriteAt(context.Background(), p, 3*snapshot.MinBlockSize+10, true)
			m.alt = append([]byte(nil), m.want...)
			copy(m.alt[3*snapshot.MinBlockSize+10:], p)
			return err
		}},
		{"cache.checkpoint-written", func(ce *cacheEnv, m *cmodel, r *rand.Rand) error {
			m.v.Close()
			return ce.c.Close()
		}},
		{"cached.meta-written", func(ce *cacheEnv, m *cmodel, r *rand.Rand) error {
			_, err := CreateCached(filepath.Join(ce.vols, "second"), ce.c, CachedConfig{Name: "second", Size: 1 << 20, BlockSize: snapshot.MinBlockSize}, Options{})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.point, func(t *testing.T) {
			ctx := ctxT(t)
			var armed sync.Map
			e := embeddedEnv(t, "")
			ce := &cacheEnv{env: e, dir: filepath.Join(t.TempDir(), "cache"), cfg: smallCache(), vols: t.TempDir()}
			ce.o.Failpoint = func(name string) error {
				if _, ok := armed.LoadAndDelete(name); ok {
					return snapshot.ErrFailpoint
				}
				return nil
			}
			c, err := OpenCache(ce.dir, ce.cat, ce.cfg, ce.o)
			if err != nil {
				t.Fatal(err)
			}
			ce.c = c
			dir := filepath.Join(ce.vols, "v")
			v, err := CreateCached(dir, c, CachedConfig{Name: "v", Size: 8 * snapshot.MinBlockSize, BlockSize: snapshot.MinBlockSize}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			m := &cmodel{v: v, want: make([]byte, 8*snapshot.MinBlockSize)}
			r := rand.New(rand.NewPCG(11, 12))
			for k := 0; k < 12; k++ {
				m.write(t, r, int64(k)*40000, 30000, k%3, k == 11)
			}
			want := append([]byte(nil), m.want...)
			armed.Store(tc.point, true)
			if err := tc.fire(ce, m, r); !errors.Is(err, snapshot.ErrFailpoint) {
				t.Fatalf("firing %s: %v", tc.point, err)
			}
			c.crash()

			ce.o.Failpoint = nil
			ce.open(t)
			if err := ce.c.Check(); err != nil {
				t.Fatal(err)
			}
			v2, err := OpenCached(dir, ce.c, Options{})
			if err != nil {
				t.Fatal(err)
			}
			m.v = v2
			img := make([]byte, len(want))
			if err := v2.ReadAt(ctx, img, 0); err != nil {
				t.Fatal(err)
			}
			switch {
			case firstDiff(img, want) < 0:
				m.want = want
			case m.alt != nil && firstDiff(img, m.alt) < 0:
				m.want = m.alt
			default:
				t.Fatalf("after the crash: differs at %d", firstDiff(img, want))
			}
			if err := ce.c.WaitUploaded(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ce.c.DropClean(ctx); err != nil {
				t.Fatal(err)
			}
			m.verify(t, "from the store")
			m.write(t, r, 100, 100, 0, true)
			m.verify(t, "after a new write")
			if tc.point == "cached.meta-written" {
				second := filepath.Join(ce.vols, "second")
				if _, err := OpenCached(second, ce.c, Options{}); !errors.Is(err, ErrNotVolume) {
					t.Fatalf("half-created volume: %v", err)
				}
				v3, err := CreateCached(second, ce.c, CachedConfig{Name: "second", Size: 1 << 20, BlockSize: snapshot.MinBlockSize}, Options{})
				if err != nil {
					t.Fatalf("creating it again: %v", err)
				}
				v3.Close()
			}
		})
	}
}

// TestRecoverCachedFromLiveMap: after its cache is lost, a cached volume
// is recreated from the live block map the cache stored, with everything
// that was uploaded before the map was stored; a deleted volume's map is
// gone.
func TestRecoverCachedFromLiveMap(t *testing.T) {
	ctx := ctxT(t)
	cfg := smallCache()
	cfg.MapInterval = -1 // stored explicitly below
	ce := newCacheEnv(t, embeddedEnv(t, ""), cfg)
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: 10*snapshot.MinBlockSize + 512, BlockSize: snapshot.MinBlockSize}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &cmodel{v: v, want: make([]byte, 10*snapshot.MinBlockSize+512)}
	r := rand.New(rand.NewPCG(13, 14))
	for k := 0; k < 8; k++ {
		m.write(t, r, int64(k)*70000, 50000, k%3, false)
	}
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.syncMaps(ctx); err != nil {
		t.Fatal(err)
	}
	// The cache disk is lost.
	ce.c.crash()
	ce.dir = filepath.Join(t.TempDir(), "new-cache")
	ce.open(t)
	if _, err := RecoverCached(ctx, filepath.Join(ce.vols, "other"), ce.c, "nope", Options{}); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("recovering a volume without a map: %v", err)
	}
	dir := filepath.Join(ce.vols, "v-recovered")
	if m.v, err = RecoverCached(ctx, dir, ce.c, "v", Options{}); err != nil {
		t.Fatal(err)
	}
	m.verify(t, "recovered")
	if err := m.v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := DeleteCached(dir, ce.c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ce.cat.LiveMap(ctx, "v"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("live map after delete: %v", err)
	}
}
