package nfs

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// BenchmarkSmallFiles creates 4 KiB files (CREATE, WRITE, COMMIT) from 16
// connections against an embedded store.
func BenchmarkSmallFiles(b *testing.B) {
	ts := startServer(b, nil)
	const workers = 16
	conns := make([]*nfsclient.Client, workers)
	for i := range conns {
		conns[i] = dial(b, ts.Port, nfsclient.Unix(0, 0))
	}
	root := mount(b, conns[0])
	dir, err := conns[0].Mkdir(root, "small", 0o755)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4096)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += workers {
				fh, err := conns[w].Create(dir, fmt.Sprintf("f%07d", i), 0o644)
				if err == nil {
					err = conns[w].Write(fh, 0, data, 0)
				}
				if err == nil {
					err = conns[w].Commit(fh)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkSequential writes a 256 MiB file with 1 MiB WRITEs from one
// client (like nfs-cp), then reads it back cached and, after Refresh, from
// the (embedded) store; it reports MB/s of each phase.
func BenchmarkSequential(b *testing.B) {
	const size = 256 << 20
	ts := startServer(b, nil)
	cl := dial(b, ts.Port, nfsclient.Unix(0, 0))
	root := mount(b, cl)
	chunk := randomBytes(1 << 20)
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("seq%d", i)
		fh, err := cl.Create(root, name, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for off := 0; off < size; off += len(chunk) {
			if err := cl.Write(fh, uint64(off), chunk, 0); err != nil {
				b.Fatal(err)
			}
		}
		if err := cl.Commit(fh); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		read := func() time.Duration {
			start := time.Now()
			for off := 0; off < size; off += 1 << 20 {
				if _, _, err := cl.Read(fh, uint64(off), 1<<20); err != nil {
					b.Fatal(err)
				}
			}
			return time.Since(start)
		}
		ts.waitUpload(b, name) // steady state: the upload is done
		hit := read()
		ts.Refresh(context.Background(), "share", "", true)
		miss := read()
		mb := float64(size) / 1e6
		b.ReportMetric(mb/t1.Sub(t0).Seconds(), "write-MB/s")
		b.ReportMetric(mb/hit.Seconds(), "hit-MB/s")
		b.ReportMetric(mb/miss.Seconds(), "miss-MB/s")
	}
}
