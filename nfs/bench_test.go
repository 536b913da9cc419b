package nfs

import (
	"fmt"
	"sync"
	"testing"

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
