package blockcache

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// TestCachePolicyScan measures both replacement policies on a hot set
// competing with sequential scans: 8 hot blocks (each read twice up
// front) in a 32-slot cache, then 20 rounds of reading the hot blocks once
// and scanning the next 40 cold blocks. It reports the hit rate of the hot
// reads: 2Q keeps the hot blocks protected, LRU lets every scan push them
// out.
func TestCachePolicyScan(t *testing.T) {
	rates := map[string]float64{}
	for _, policy := range []string{PolicyLRU, Policy2Q} {
		t.Run(policy, func(t *testing.T) {
			ctx := ctxT(t)
			cfg := smallCache()
			cfg.Size = 32 * snapshot.MinBlockSize
			cfg.Policy = policy
			ce := newCacheEnv(t, embeddedEnv(t, ""), cfg)
			const nb = 1000
			v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: nb * snapshot.MinBlockSize, BlockSize: snapshot.MinBlockSize, Codec: snapshot.CodecNone}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			p := make([]byte, snapshot.MinBlockSize)
			for b := int64(0); b < 8+20*40; b++ {
				seededBytes(p, uint64(b)+1)
				if err := v.WriteAt(ctx, p, b*snapshot.MinBlockSize, false); err != nil {
					t.Fatal(err)
				}
			}
			if err := ce.c.WaitUploaded(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ce.c.DropClean(ctx); err != nil {
				t.Fatal(err)
			}
			read := func(b int64) {
				if err := v.ReadAt(context.Background(), p, b*snapshot.MinBlockSize); err != nil {
					t.Fatal(err)
				}
			}
			for k := 0; k < 2; k++ {
				for b := int64(0); b < 8; b++ {
					read(b)
				}
			}
			var hits, reads int64
			next := int64(8)
			for round := 0; round < 20; round++ {
				before := v.Info().CacheHits
				for b := int64(0); b < 8; b++ {
					read(b)
				}
				hits += v.Info().CacheHits - before
				reads += 8
				for k := 0; k < 40; k++ {
					read(next)
					next++
				}
			}
			rates[policy] = 100 * float64(hits) / float64(reads)
			t.Logf("%s: hot-set hit rate %.0f%% (%d of %d)", policy, rates[policy], hits, reads)
		})
	}
	if rates[Policy2Q] < 90 || rates[Policy2Q] <= rates[PolicyLRU] {
		t.Fatalf("2Q hot-set hit rate %.0f%%, LRU %.0f%%", rates[Policy2Q], rates[PolicyLRU])
	}
}

// TestCachedFetchCoalescingAndReadAhead: concurrent misses on one block
// make one GET; two consecutive misses start read-ahead of the following
// blocks, so a sequential reader then hits.
func TestCachedFetchCoalescingAndReadAhead(t *testing.T) {
	ctx := ctxT(t)
	cfg := smallCache()
	cfg.Size = 32 * snapshot.MinBlockSize
	cfg.ReadAhead = 8
	ce := newCacheEnv(t, embeddedEnv(t, ""), cfg)
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: 16 * snapshot.MinBlockSize, BlockSize: snapshot.MinBlockSize, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p := make([]byte, snapshot.MinBlockSize)
	for b := int64(0); b < 16; b++ {
		seededBytes(p, uint64(b)+1)
		if err := v.WriteAt(ctx, p, b*snapshot.MinBlockSize, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := ce.c.WaitUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.DropClean(ctx); err != nil {
		t.Fatal(err)
	}
	ce.faults.Add(objstore.FaultRule{Op: objstore.OpGet, Latency: 50 * time.Millisecond})
	gets := ce.faults.Calls(objstore.OpGet)
	var wg sync.WaitGroup
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := make([]byte, 4096)
			if err := v.ReadAt(ctx, q, 5*snapshot.MinBlockSize+int64(k)*4096); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := ce.faults.Calls(objstore.OpGet) - gets; n != 1 {
		t.Fatalf("8 concurrent misses on one block made %d GETs", n)
	}
	// Blocks 0 and 1 in order: read-ahead fetches 2..9.
	for b := int64(0); b < 2; b++ {
		if err := v.ReadAt(ctx, p, b*snapshot.MinBlockSize); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for v.Info().CachedBlocks < 10 { // blocks 0-9 (5 was read above)
		if time.Now().After(deadline) {
			t.Fatalf("read-ahead did not fetch: %+v", v.Info())
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := v.Info()
	want := make([]byte, len(p))
	for b := int64(2); b < 10; b++ {
		if err := v.ReadAt(ctx, p, b*snapshot.MinBlockSize); err != nil {
			t.Fatal(err)
		}
		seededBytes(want, uint64(b)+1)
		if !bytes.Equal(p, want) {
			t.Fatalf("block %d differs", b)
		}
	}
	if after := v.Info(); after.CacheMisses != before.CacheMisses {
		t.Fatalf("sequential reads after read-ahead missed: %d misses", after.CacheMisses-before.CacheMisses)
	}
}
