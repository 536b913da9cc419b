package objstore

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestGateStopsReadsAfterTheCall(t *testing.T) {
	buf := []byte("0123456789")
	r, done := gate(bytes.NewReader(buf))
	p := make([]byte, 4)
	if n, err := r.Read(p); n != 4 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	if _, ok := r.(io.Seeker); !ok {
		t.Fatal("a seekable body lost Seek")
	}
	done()
	if _, err := r.Read(p); !errors.Is(err, errBodyClosed) {
		t.Fatalf("read after the call: %v", err)
	}
	if _, err := r.(io.Seeker).Seek(0, io.SeekStart); !errors.Is(err, errBodyClosed) {
		t.Fatalf("seek after the call: %v", err)
	}
	r2, _ := gate(io.MultiReader(bytes.NewReader(buf)))
	if _, ok := r2.(io.Seeker); ok {
		t.Fatal("a non-seekable body gained Seek")
	}
}
