package nfs

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// TestConcurrentWritesThenReads grows an uploaded small file with
// parallel WRITEs, commits, and reads it back with parallel READs while its
// upload runs: no READ may see the previous version's size or data.
func TestConcurrentWritesThenReads(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	data := randomBytes(8<<20 + 300000)
	for it := 0; it < 6; it++ {
		name := fmt.Sprintf("c%d", it)
		fh, _ := cl.Create(root, name, 0o644)
		cl.Write(fh, 0, data[:196616], 0)
		cl.Commit(fh)
		ts.waitUpload(t, name)
		var wg sync.WaitGroup
		for off := 0; off < len(data); off += 1 << 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := cl.Write(fh, uint64(off), data[off:min(len(data), off+1<<20)], 0); err != nil {
					t.Errorf("write at %d: %v", off>>20, err)
				}
			}()
		}
		wg.Wait()
		cl.Commit(fh)
		got := make([]byte, len(data))
		for off := 0; off < len(data); off += 1 << 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, _, err := cl.Read(fh, uint64(off), 1<<20)
				if err != nil {
					t.Error(err)
				}
				copy(got[off:], b)
			}()
		}
		wg.Wait()
		if !bytes.Equal(got, data) {
			for b := 0; b < len(data); b += 1 << 20 {
				e := min(len(data), b+1<<20)
				if !bytes.Equal(got[b:e], data[b:e]) {
					what := "other"
					if bytes.Equal(got[b:e], make([]byte, e-b)) {
						what = "zeros"
					}
					for o := 0; o+e-b <= len(data); o += 1 << 20 {
						if bytes.Equal(got[b:e], data[o:o+e-b]) {
							what = fmt.Sprintf("data at %d", o>>20)
						}
					}
					again, _, _ := cl.Read(fh, uint64(b), 1<<20)
					t.Errorf("iteration %d: block %d differs: %s; re-read ok: %v", it, b>>20, what, bytes.Equal(again, data[b:e]))
				}
			}
			return
		}
	}
}
