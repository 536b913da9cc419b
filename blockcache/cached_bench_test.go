package blockcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/snapshot"
)

// benchReadSizes are the request sizes of the read benchmarks.
var benchReadSizes = []int{64 << 10, 1 << 20}

const benchVolSize = 128 << 20

// BenchmarkReadHit compares read hits of a cached volume whose every
// block is in the cache (the cache is larger than the volume) with reads of
// a stored volume on the same disk: random aligned reads of a fully written
// 128 MiB volume, the two kinds side by side for each size so that load on
// the machine affects both alike. bench/cached.sh prints the ratio.
func BenchmarkReadHit(b *testing.B) {
	sv, err := CreateStored(filepath.Join(b.TempDir(), "v"), StoredConfig{Name: "v", Size: benchVolSize}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sv.Close()
	fillBench(b, sv.WriteAt)
	ce := newCacheEnv(b, embeddedEnv(b, ""), CacheConfig{Size: benchVolSize + 16<<20})
	cv, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: benchVolSize, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer cv.Close()
	fillBench(b, cv.WriteAt)
	if err := ce.c.WaitUploaded(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, n := range benchReadSizes {
		b.Run(fmt.Sprintf("size=%d/vol=stored", n), func(b *testing.B) { benchRandomReads(b, sv.ReadAt, n) })
		b.Run(fmt.Sprintf("size=%d/vol=cached", n), func(b *testing.B) { benchRandomReads(b, cv.ReadAt, n) })
	}
	if in := cv.Info(); in.CacheMisses != 0 {
		b.Fatalf("misses in a hit benchmark: %+v", in)
	}
}

func fillBench(b *testing.B, write func(context.Context, []byte, int64, bool) error) {
	p := make([]byte, 1<<20)
	for off := int64(0); off < benchVolSize; off += int64(len(p)) {
		seededBytes(p, uint64(off))
		if err := write(context.Background(), p, off, false); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRandomReads(b *testing.B, read func(context.Context, []byte, int64) error, n int) {
	ctx := context.Background()
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	b.SetBytes(int64(n))
	b.ResetTimer()
	for b.Loop() {
		if err := read(ctx, p, r.Int64N(benchVolSize/int64(n))*int64(n)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCachedColdSequentialMinIO reads a 256 MiB cached volume
// sequentially in 1 MiB requests with an empty cache: every block comes
// from a real MinIO (read-ahead on). Each iteration drops the cache first.
func BenchmarkCachedColdSequentialMinIO(b *testing.B) {
	const size = 256 << 20
	e, _ := minioEnv(b)
	ce := newCacheEnv(b, e, CacheConfig{Size: 64 << 20})
	v, err := CreateCached(filepath.Join(ce.vols, "v"), ce.c, CachedConfig{Name: "v", Size: size, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	p := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(p)) {
		seededBytes(p, uint64(off))
		if err := v.WriteAt(ctx, p, off, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := ce.c.WaitUploaded(ctx); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if err := ce.c.DropClean(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for off := int64(0); off < size; off += int64(len(p)) {
			if err := v.ReadAt(ctx, p, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(v.Info().CloudBytesDownloaded)/float64(b.N)/float64(size), "fetched/read")
}
