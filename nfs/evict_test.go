package nfs

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// TestEviction reads more clean data than the cache holds and checks that
// least recently used clean files are evicted while a file with changes
// not yet uploaded keeps its data.
func TestEviction(t *testing.T) {
	const limit = 6 << 20
	ts := startServer(t, nil, func(c *Config, _ *Share) {
		c.CacheSize = limit
		c.SettleTime = time.Hour
		c.ReadAhead = 1 << 20
	})
	ctx := context.Background()
	objs := map[string][]byte{}
	for i := range 5 {
		name := fmt.Sprintf("clean%d", i)
		objs[name] = randomBytes(3 << 20)
		if _, err := ts.Store.Put(ctx, name, bytes.NewReader(objs[name]), 3<<20, objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	// A dirty file larger than the whole cache.
	dirty := randomBytes(8 << 20)
	dfh, err := cl.Create(root, "dirty", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(dirty); off += 1 << 20 {
		if err := cl.Write(dfh, uint64(off), dirty[off:off+1<<20], 0); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func(fh []byte, size int) []byte {
		var out []byte
		for off := 0; off < size; off += 1 << 20 {
			b, _, err := cl.Read(fh, uint64(off), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
		}
		return out
	}
	for i := range 5 {
		name := fmt.Sprintf("clean%d", i)
		fh, _, err := cl.Lookup(root, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(fh, 3<<20); !bytes.Equal(got, objs[name]) {
			t.Fatalf("%s read back wrong", name)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for ts.cache.used.Load() > limit+8<<20 { // the dirty file may exceed the limit
		if time.Now().After(deadline) {
			t.Fatalf("cache holds %d bytes, limit %d plus 8 MiB dirty", ts.cache.used.Load(), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := readAll(dfh, len(dirty)); !bytes.Equal(got, dirty) {
		t.Fatal("dirty file lost data under eviction")
	}
	// An evicted file reads correctly again, from the store.
	fh, _, _ := cl.Lookup(root, "clean0")
	if got := readAll(fh, 3<<20); !bytes.Equal(got, objs["clean0"]) {
		t.Fatal("clean0 wrong after eviction")
	}
}

// TestCacheChargesBytes checks that small files count their size against
// the cache bound, not a whole 1 MiB block each, and that truncating,
// growing and uploading files keep the count exact.
func TestCacheChargesBytes(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	used := func() int64 { return ts.cache.used.Load() }
	steps := []struct {
		name string
		do   func(fh []byte) error
		want int64
	}{
		{"write 5 bytes", func(fh []byte) error { return cl.Write(fh, 0, []byte("hello"), 0) }, 4096},
		{"grow to 10000 bytes", func(fh []byte) error { return cl.Write(fh, 9995, []byte("world"), 0) }, 12288},
		{"grow past 1 MiB (spilled to a data file)", func(fh []byte) error {
			return cl.Write(fh, 1<<20, randomBytes(300000), 0)
		}, 1<<20 + 303104},
		{"truncate to 100 bytes", func(fh []byte) error { return cl.Setattr(fh, -1, 100) }, 4096},
		{"upload", func(fh []byte) error {
			if err := cl.Commit(fh); err != nil {
				return err
			}
			ts.waitUpload(t, "f")
			return nil
		}, -1},
	}
	fh, err := cl.Create(root, "f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if err := st.do(fh); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.want >= 0 && used() != st.want {
			t.Errorf("after %s: cache counts %d bytes, want %d", st.name, used(), st.want)
		}
		if st.want < 0 && used() > 4096 {
			t.Errorf("after %s: cache counts %d bytes, want at most 4096", st.name, used())
		}
	}
}
