package nfs

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// TestReadRanges reads a small (in-memory) and a larger (data file) file at
// offsets and lengths that exercise the reply's padding, the end of file
// and reads past it: READ data is read in place into the reply.
func TestReadRanges(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	files := map[string][]byte{"small": randomBytes(10001), "large": randomBytes(3<<20 + 7)}
	for name, data := range files {
		fh, err := cl.Create(root, name, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += 1 << 20 {
			if err := cl.Write(fh, uint64(off), data[off:min(len(data), off+1<<20)], 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.Commit(fh); err != nil {
			t.Fatal(err)
		}
		size := len(data)
		tests := []struct{ off, n int }{
			{0, 0}, {0, 1}, {1, 3}, {2, 5}, {0, 4096}, {5, 4095},
			{size - 3, 3}, {size - 3, 100}, {size, 10}, {size + 100, 10},
			{0, 1 << 20}, {size / 2, 1 << 20},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/%d+%d", name, tc.off, tc.n), func(t *testing.T) {
				got, eof, err := cl.Read(fh, uint64(tc.off), uint32(tc.n))
				if err != nil {
					t.Fatal(err)
				}
				lo, hi := min(tc.off, size), min(tc.off+tc.n, size)
				if want := data[lo:hi]; !bytes.Equal(got, want) {
					t.Fatalf("read %d bytes, want %d (equal prefix: %v)", len(got), len(want), bytes.HasPrefix(want, got))
				}
				if wantEOF := tc.off+tc.n >= size; eof != wantEOF {
					t.Errorf("eof %v, want %v", eof, wantEOF)
				}
			})
		}
	}
}
