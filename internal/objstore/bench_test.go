package objstore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
)

// BenchmarkMinIO measures put and get throughput against a real MinIO
// server through the production wrapper stack, for 1 MiB and 16 MiB objects
// with 1, 4 and 8 parallel streams. go test prints MB/s.
//
//	go test -run '^$' -bench MinIO -benchtime 64x ./internal/objstore/
func BenchmarkMinIO(b *testing.B) {
	m := testenv.StartMinIO(b)
	base, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, Bucket: m.Bucket, Credentials: staticCreds(m)})
	if err != nil {
		b.Fatal(err)
	}
	benchStore(b, objstore.Wrap(base, objstore.Options{Metrics: objstore.NewMetrics()}))
}

// BenchmarkEmbedded is the same benchmark on the embedded store.
func BenchmarkEmbedded(b *testing.B) {
	base, err := objstore.OpenEmbedded(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	benchStore(b, objstore.Wrap(base, objstore.Options{Metrics: objstore.NewMetrics()}))
}

func benchStore(b *testing.B, s objstore.Store) {
	ctx := context.Background()
	for _, size := range []int{1 << 20, 16 << 20} {
		data := bytes.Repeat([]byte{0x5a, 0x17, 0x33, 0xc4}, size/4)
		for _, streams := range []int{1, 4, 8} {
			name := fmt.Sprintf("size=%dMiB/streams=%d", size>>20, streams)
			b.Run("put/"+name, func(b *testing.B) {
				b.SetBytes(int64(size))
				var n atomic.Int64
				b.SetParallelism(streams)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						k := fmt.Sprintf("bench/%d/%d", size, n.Add(1)%32)
						if _, err := s.Put(ctx, k, bytes.NewReader(data), int64(size), objstore.PutOptions{}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("get/"+name, func(b *testing.B) {
				for i := range 32 {
					k := fmt.Sprintf("bench/%d/%d", size, i)
					if _, err := s.Put(ctx, k, bytes.NewReader(data), int64(size), objstore.PutOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(size))
				var n atomic.Int64
				b.SetParallelism(streams)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]byte, 256<<10)
					for pb.Next() {
						k := fmt.Sprintf("bench/%d/%d", size, n.Add(1)%32)
						rc, _, err := s.Get(ctx, k, objstore.GetOptions{})
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
							b.Error(err)
						}
						rc.Close()
					}
				})
			})
		}
	}
}
