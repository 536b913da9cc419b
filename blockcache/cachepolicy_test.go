package blockcache

import (
	"context"
	"path/filepath"
	"testing"

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
