package nfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// TestReadRanges reads a small (in-memory) and a larger (data file) file at
// offsets and lengths that exercise the reply's padding, the end of file
// and reads past it, and a file grown past its data file's end: READ data
// is read in place into the reply, or sent from the data file after it.
func TestReadRanges(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	// "grown" is extended by SETATTR past its data file's end, which must
	// read as zeros.
	grown := append(randomBytes(300001), make([]byte, 9001)...)
	files := map[string][]byte{"small": randomBytes(10001), "large": randomBytes(3<<20 + 7), "grown": grown}
	for name, data := range files {
		written := data
		if name == "grown" {
			written = data[:300001]
		}
		fh := createFile(t, cl, root, name, 0o644, written)
		if name == "grown" {
			if err := cl.Setattr(fh, -1, int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if err := cl.Commit(fh); err != nil {
				t.Fatal(err)
			}
		}
		size := len(data)
		tests := []struct{ off, n int }{
			{0, 0}, {0, 1}, {1, 3}, {2, 5}, {0, 4096}, {5, 4095},
			{size - 3, 3}, {size - 3, 100}, {size, 10}, {size + 100, 10},
			{0, 1 << 20}, {size / 2, 1 << 20}, {size - 9001 - 5, 9010},
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

// TestSendTail checks the READ data sent from a file: the announced bytes
// at the offset, zeros where the file ends before, and the XDR padding.
func TestSendTail(t *testing.T) {
	path := t.TempDir() + "/data"
	content := []byte("0123456789")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		off, n int
		want   string
	}{
		{0, 10, "0123456789\x00\x00"},
		{2, 4, "2345"},
		{7, 6, "789\x00\x00\x00\x00\x00"},
		{12, 3, "\x00\x00\x00\x00"},
	}
	for _, tc := range tests {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := sendTail(&buf, &fileTail{f: f, off: int64(tc.off), n: tc.n}); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != tc.want {
			t.Errorf("off %d n %d: sent %q, want %q", tc.off, tc.n, got, tc.want)
		}
		if err := f.Close(); err == nil {
			t.Error("sendTail left the file open")
		}
	}
}

// TestSetattrSizeBeyondLimit checks that a size past the largest object
// (or one that is negative as a signed number) is refused with
// NFS3ERR_FBIG and leaves the file as it was; it once reached truncate
// and panicked (found by FuzzNFSArgs).
func TestSetattrSizeBeyondLimit(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	data := randomBytes(300001)
	fh := createFile(t, cl, root, "f", 0o644, data)
	for _, size := range []int64{maxFileSize + 1, -1 << 62} {
		var e rpc.Encoder // SETATTR by hand: the client's Setattr takes no negative size
		e.Opaque(fh)
		e.Bool(false)
		e.Bool(false)
		e.Bool(false)
		e.Bool(true)
		e.Uint64(uint64(size))
		e.Uint32(0)
		e.Uint32(0)
		e.Bool(false)
		reply, err := cl.Call(progNFS, versNFS, procSetattr, e.B)
		if err != nil {
			t.Fatal(err)
		}
		if st := binary.BigEndian.Uint32(reply); st != uint32(StatusFBig) {
			t.Errorf("SETATTR size %#x: status %d, want %d (FBIG)", uint64(size), st, StatusFBig)
		}
	}
	got, _, err := cl.Read(fh, 0, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file changed by refused SETATTRs (%d bytes, %v)", len(got), err)
	}
}
