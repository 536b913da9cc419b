package objstore

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

func TestLimiterThrottlesAndChangesAtRunTime(t *testing.T) {
	base, err := OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(2<<20, 0)
	s := Wrap(base, Options{Limiter: l})
	ctx := context.Background()
	data := make([]byte, 1<<20)
	// With a 2 MiB/s upload limit and a 512 KiB burst, 1 MiB needs at least
	// a quarter of a second.
	start := time.Now()
	if _, err := s.Put(ctx, "a", bytes.NewReader(data), int64(len(data)), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("1 MiB at 2 MiB/s took %v", d)
	}
	l.SetLimits(0, 2<<20)
	if up, down := l.Limits(); up != 0 || down != 2<<20 {
		t.Fatalf("limits = %d, %d", up, down)
	}
	rc, _, err := s.Get(ctx, "a", GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != int64(len(data)) {
		t.Fatalf("read %d: %v", n, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("1 MiB download at 2 MiB/s took %v", d)
	}
}
