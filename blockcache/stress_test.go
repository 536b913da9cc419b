package blockcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// restoreImage restores snapshot id into a new stored volume under dir and
// returns its bytes (safe to call from any goroutine). Store faults the
// stress test injects may hit the restore too: it retries those, each
// attempt into a fresh directory, as an admin would.
func restoreImage(ctx context.Context, e *env, dir, id string) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		b, err := restoreOnce(ctx, e, filepath.Join(dir, fmt.Sprintf("%s.%d", id, attempt)), id)
		if err == nil || !errors.Is(err, objstore.ErrInjected) || attempt == 50 || ctx.Err() != nil {
			return b, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func restoreOnce(ctx context.Context, e *env, dir, id string) ([]byte, error) {
	v, err := CreateStoredFromSnapshot(ctx, dir, e.cat, id, StoredConfig{Name: "restored-" + id}, Options{})
	if err != nil {
		return nil, fmt.Errorf("volume from %s: %w", id, err)
	}
	defer v.Close()
	b := make([]byte, v.Size())
	if err := v.ReadAt(ctx, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// slowFills makes a write that fills a new slot pause before the fill,
// up to half a millisecond (a busy disk), so the stress tests meet the
// interleavings a kernel initiator's queue of writes produces.
func slowFills() Options {
	return Options{Failpoint: func(name string) error {
		if name == "cache.slot-fill" {
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		}
		return nil
	}}
}

// storeChaos are the object-store disturbances of the stress tests:
// failing uploads, slow fetches and failing fetches, each for a moment.
func storeChaos(e *env) []blockcachetest.Chaos {
	rule := func(r objstore.FaultRule) func(context.Context, *rand.Rand) func() {
		return func(context.Context, *rand.Rand) func() {
			e.faults.Add(r)
			return e.faults.Clear
		}
	}
	return []blockcachetest.Chaos{
		{Name: "failing uploads", Apply: rule(objstore.FaultRule{Op: objstore.OpPut, Err: objstore.ErrInjected})},
		{Name: "slow uploads", Apply: rule(objstore.FaultRule{Op: objstore.OpPut, Latency: 20 * time.Millisecond})},
		{Name: "slow fetches", Apply: rule(objstore.FaultRule{Op: objstore.OpGet, Latency: 30 * time.Millisecond})},
		{Name: "failing fetches", Apply: rule(objstore.FaultRule{Op: objstore.OpGet, Err: objstore.ErrInjected}), ReadsMayFail: true},
	}
}

// TestStressCached is the concurrent model test on a cached volume whose
// cache holds a third of it: random concurrent reads, writes, unmaps,
// flushes and snapshots under forced evictions, read-ahead and store
// faults, every read checked against the oracle of acknowledged writes
// (blockcachetest.Stress). It found the lost-write race of issue P: a
// new block's slot was indexed before it was filled, so a concurrent
// write into the same block could be overwritten by the fill.
func TestStressCached(t *testing.T) {
	for _, bs := range []int{snapshot.MinBlockSize, 4 * snapshot.MinBlockSize} {
		t.Run(fmt.Sprintf("block%dKiB", bs>>10), func(t *testing.T) {
			e := embeddedEnv(t, "")
			const slots = 48
			ce := newCacheEnvWith(t, e, CacheConfig{Size: slots * int64(bs), SlotSize: bs, DirtyWindow: 20 * time.Millisecond, RetryDelay: 5 * time.Millisecond, MapInterval: 50 * time.Millisecond}, slowFills())
			dir := filepath.Join(ce.vols, "v")
			v, err := CreateCached(dir, ce.c, CachedConfig{Name: "v", Size: 3 * slots * int64(bs), BlockSize: bs, Codec: snapshot.CodecLZ4}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			restoreDir := t.TempDir()
			chaos := append(storeChaos(e), blockcachetest.Chaos{Name: "evict", Apply: func(ctx context.Context, _ *rand.Rand) func() {
				if err := ce.c.DropClean(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("DropClean: %v", err)
				}
				return nil
			}})
			blockcachetest.Stress(t, blockcachetest.StressTarget{
				Dev:       v,
				BlockSize: bs,
				Snapshot: func(ctx context.Context) (snapshot.Info, error) {
					return v.Snapshot(ctx, ce.cat, SnapshotRequest{})
				},
				Restore: func(ctx context.Context, id string) ([]byte, error) { return restoreImage(ctx, e, restoreDir, id) },
				Chaos:   chaos,
				Reopen: func(ctx context.Context) (blockcachetest.Volume, error) {
					e.faults.Clear()
					if err := v.Close(); err != nil {
						return nil, err
					}
					ce.reopen(t)
					v2, err := OpenCached(dir, ce.c, Options{})
					if err != nil {
						return nil, err
					}
					t.Cleanup(func() { v2.Close() })
					return v2, nil
				},
			}, blockcachetest.StressEnv(t, blockcachetest.StressConfig{Seed: 7, Duration: 4 * time.Second}))
			if err := ce.c.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStressStored is the same model test on a stored volume.
func TestStressStored(t *testing.T) {
	e := embeddedEnv(t, "")
	bs := snapshot.MinBlockSize
	dir := filepath.Join(t.TempDir(), "v")
	v, err := CreateStored(dir, StoredConfig{Name: "v", Size: 144 * int64(bs), BlockSize: bs, Codec: snapshot.CodecLZ4}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	restoreDir := t.TempDir()
	blockcachetest.Stress(t, blockcachetest.StressTarget{
		Dev:       v,
		BlockSize: bs,
		Snapshot: func(ctx context.Context) (snapshot.Info, error) {
			return v.Snapshot(ctx, e.cat, SnapshotRequest{})
		},
		Restore: func(ctx context.Context, id string) ([]byte, error) { return restoreImage(ctx, e, restoreDir, id) },
		Chaos:   storeChaos(e),
		Reopen: func(ctx context.Context) (blockcachetest.Volume, error) {
			e.faults.Clear()
			if err := v.Close(); err != nil {
				return nil, err
			}
			v2, err := OpenStored(dir, Options{})
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { v2.Close() })
			return v2, nil
		},
	}, blockcachetest.StressEnv(t, blockcachetest.StressConfig{Seed: 7, Duration: 4 * time.Second}))
}

// TestConcurrentWritesIntoNewBlock is issue P's lost write in its
// smallest form: several writes into disjoint parts of one block not yet
// in the cache, issued at the same moment (a hole, then a stored block
// evicted from the cache), then read back. Before the fix a write that
// created the block's slot zero-filled or merged it after other writes
// had already landed in it.
func TestConcurrentWritesIntoNewBlock(t *testing.T) {
	e := embeddedEnv(t, "")
	const bs = 4 * snapshot.MinBlockSize
	ce := newCacheEnvWith(t, e, CacheConfig{Size: 64 * bs, SlotSize: bs, DirtyWindow: 10 * time.Millisecond, RetryDelay: 5 * time.Millisecond}, slowFills())
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: 32 * bs, BlockSize: bs, Codec: snapshot.CodecLZ4}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	const writers, piece = 8, 16 << 10
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	lost := 0
	for round := range rounds {
		for b := range int64(32) {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := bytes.Repeat([]byte{byte(1 + (round*writers+w)%250)}, piece)
					<-start
					if err := v.WriteAt(ctx, p, b*bs+int64(w)*2*piece+512, false); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
			got := make([]byte, bs)
			if err := v.ReadAt(ctx, got, b*bs); err != nil {
				t.Fatal(err)
			}
			for w := range writers {
				want := byte(1 + (round*writers+w)%250)
				off := w*2*piece + 512
				if !bytes.Equal(got[off:off+piece], bytes.Repeat([]byte{want}, piece)) {
					lost++
				}
			}
		}
		// Upload and evict everything, so the next round's writes find
		// stored blocks that are not in the cache.
		if err := ce.c.WaitUploaded(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ce.c.DropClean(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, rounds*32*writers)
	}
	if err := ce.c.Check(); err != nil {
		t.Fatal(err)
	}
}
