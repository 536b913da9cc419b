package snapshot

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchImage is a volume image with a third each of random, text-like and
// zero blocks.
func benchImage(size int64, bs int) *memImage {
	img := newMemImage(size, bs)
	r := rand.New(rand.NewPCG(42, 42))
	for i := int64(0); i < size/int64(bs); i++ {
		img.fill(r, i, int(i%3))
	}
	return img
}

// BenchmarkCreate measures full snapshot throughput (bytes of image per
// second) into an embedded store, per codec.
func BenchmarkCreate(b *testing.B) {
	const size = 64 << 20
	for _, codec := range []Codec{CodecNone, CodecLZ4, CodecZstd} {
		b.Run(codec.String(), func(b *testing.B) {
			img := benchImage(size, DefaultBlockSize)
			c := newTestCatalog(b, "", Options{Concurrency: 8})
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// A new volume name and a modified first block each
				// round, so chunks are really stored (not deduplicated).
				b.StopTimer()
				img.fill(rand.New(rand.NewPCG(uint64(i), 7)), 0, 0)
				b.StartTimer()
				if _, err := c.Create(ctxT(b), CreateRequest{Volume: fmt.Sprint("v", i), Size: size, BlockSize: DefaultBlockSize, Codec: codec, Source: img}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRestore measures restore throughput.
func BenchmarkRestore(b *testing.B) {
	const size = 64 << 20
	for _, codec := range []Codec{CodecNone, CodecLZ4, CodecZstd} {
		b.Run(codec.String(), func(b *testing.B) {
			img := benchImage(size, DefaultBlockSize)
			c := newTestCatalog(b, "", Options{Concurrency: 8})
			in, err := c.Create(ctxT(b), CreateRequest{Volume: "v", Size: size, BlockSize: DefaultBlockSize, Codec: codec, Source: img})
			if err != nil {
				b.Fatal(err)
			}
			w := &sliceWriter{b: make([]byte, size)}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Restore(ctxT(b), in.ID, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHash compares SHA-256 (SHA-NI when the CPU has it) per block.
func BenchmarkHash(b *testing.B) {
	img := newMemImage(DefaultBlockSize, DefaultBlockSize)
	img.fill(rand.New(rand.NewPCG(1, 1)), 0, 0)
	p := img.data
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		_ = sha256.Sum256(p)
	}
}

// BenchmarkEncode measures chunk compression per codec and kind of data.
func BenchmarkEncode(b *testing.B) {
	coder, err := NewCoder(1)
	if err != nil {
		b.Fatal(err)
	}
	defer coder.Close()
	img := newMemImage(2*DefaultBlockSize, DefaultBlockSize)
	r := rand.New(rand.NewPCG(3, 3))
	img.fill(r, 0, 0)
	img.fill(r, 1, 1)
	for _, codec := range []Codec{CodecLZ4, CodecZstd} {
		for k, kind := range []string{"random", "text"} {
			b.Run(codec.String()+"/"+kind, func(b *testing.B) {
				raw := img.data[k*DefaultBlockSize : (k+1)*DefaultBlockSize]
				dst := make([]byte, 0, EncodeBound(len(raw)))
				b.SetBytes(int64(len(raw)))
				var out []byte
				for i := 0; i < b.N; i++ {
					out = coder.Encode(dst, raw, codec)
				}
				b.ReportMetric(float64(len(out))/float64(len(raw)), "ratio")
			})
		}
	}
}
