package blockcache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/snapshot"
)

func TestBitmapFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.bmp")
	bf, err := createBitmapFile(path, snapshot.MinBlockSize, snapshot.NewBitmap(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int64{0, 7, 8, 63, 64, 99, 7} {
		if err := bf.Set(i); err != nil {
			t.Fatal(err)
		}
	}
	bf.Close()
	bf, err = openBitmapFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := bf.Snapshot().Count(); got != 6 || !bf.Test(99) || bf.Test(98) {
		t.Fatalf("reopened bitmap has %d bits", got)
	}
	if err := bf.Reset(snapshot.NewBitmap(100)); err != nil {
		t.Fatal(err)
	}
	if err := bf.Set(5); err != nil {
		t.Fatal(err)
	}
	bf.Close()
	bf, err = openBitmapFile(path)
	if err != nil || bf.Snapshot().Count() != 1 || !bf.Test(5) {
		t.Fatalf("after reset: %v", err)
	}
	bf.Close()
	// Damage.
	b, _ := os.ReadFile(path)
	tests := []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"crc", func(b []byte) []byte { b[9] ^= 1; return b }},
		{"short", func(b []byte) []byte { return b[:len(b)-1] }},
		{"long", func(b []byte) []byte { return append(b, 0) }},
		{"header only", func(b []byte) []byte { return b[:10] }},
	}
	for _, tc := range tests {
		if _, _, err := decodeBitmapFile(tc.mod(bytes.Clone(b))); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func FuzzBitmapFileDecode(f *testing.F) {
	bm := snapshot.NewBitmap(77)
	bm.Set(3)
	bm.Set(76)
	f.Add(encodeBitmapFile(snapshot.MinBlockSize, bm))
	f.Add(encodeBitmapFile(snapshot.DefaultBlockSize, snapshot.NewBitmap(1)))
	f.Add(encodeBitmapFile(snapshot.MaxBlockSize, snapshot.FullBitmap(1000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		bs, bm, err := decodeBitmapFileMax(b, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		out := encodeBitmapFile(bs, bm)
		// Bits past the block count are ignored, so compare after
		// re-decoding.
		bs2, bm2, err := decodeBitmapFile(out)
		if err != nil || bs2 != bs || bm2.Len() != bm.Len() || bm2.Count() != bm.Count() {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
		if !bytes.Equal(out[:bitmapHeaderLen], b[:bitmapHeaderLen]) {
			t.Fatal("header differs after re-encoding")
		}
	})
}
