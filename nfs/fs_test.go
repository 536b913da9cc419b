package nfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// objectBytes reads an object from the store.
func objectBytes(t testing.TB, s objstore.Store, key string) ([]byte, objstore.ObjectInfo) {
	t.Helper()
	r, oi, err := s.Get(context.Background(), key, objstore.GetOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b, oi
}

// waitUpload waits for the upload event of path.
func (ts *testServer) waitUpload(t testing.TB, path string) UploadEvent {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-ts.Events:
			if ev.Path == path {
				return ev
			}
		case <-deadline:
			t.Fatalf("no upload of %s", path)
		}
	}
}

func TestNamespace(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(1000, 100))
	root := mount(t, cl)
	ctx := context.Background()

	dir, err := cl.Mkdir(root, "docs", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if oi, err := ts.Store.Head(ctx, "docs/"); err != nil || oi.Metadata[MetaMode] != "750" || oi.Metadata[MetaUID] != "1000" {
		t.Fatalf("dir marker: %+v %v", oi, err)
	}
	fh := createFile(t, cl, dir, "a.txt", 0o640, []byte("hello"))
	ts.waitUpload(t, "docs/a.txt")
	b, oi := objectBytes(t, ts.Store, "docs/a.txt")
	if string(b) != "hello" || oi.Metadata[MetaMode] != "640" || oi.Metadata[MetaUID] != "1000" || oi.Metadata[MetaGID] != "100" || oi.Metadata[MetaMtime] == "" {
		t.Fatalf("object %q %+v", b, oi.Metadata)
	}

	// Symlinks are flagged objects; hard links are refused.
	ln, err := cl.Symlink(dir, "link", "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cl.Readlink(ln); err != nil || got != "a.txt" {
		t.Fatalf("readlink = %q, %v", got, err)
	}
	if b, oi := objectBytes(t, ts.Store, "docs/link"); string(b) != "a.txt" || oi.Metadata[MetaType] != "symlink" {
		t.Fatalf("link object %q %+v", b, oi.Metadata)
	}
	wantStatus(t, "LINK", cl.Link(fh, dir, "hard"), uint32(StatusNotSupp))

	// Rename a file: copy + delete; the handle keeps working.
	if err := cl.Rename(dir, "a.txt", root, "b.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Store.Head(ctx, "docs/a.txt"); err == nil {
		t.Fatal("old key still there")
	}
	if b, _ := objectBytes(t, ts.Store, "b.txt"); string(b) != "hello" {
		t.Fatalf("renamed object %q", b)
	}
	if a, err := cl.Getattr(fh); err != nil || a.Size != 5 {
		t.Fatalf("getattr via old handle: %+v %v", a, err)
	}

	// Rename a directory with contents.
	sub, err := cl.Mkdir(dir, "sub", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := cl.Create(sub, "deep.bin", 0o644)
	cl.Write(f2, 0, []byte("deep"), 2)
	cl.Commit(f2)
	ts.waitUpload(t, "docs/sub/deep.bin")
	wantStatus(t, "RMDIR non-empty", cl.Rmdir(root, "docs"), uint32(StatusNotEmpty))
	if err := cl.Rename(root, "docs", root, "papers"); err != nil {
		t.Fatal(err)
	}
	page, _ := ts.Store.List(ctx, objstore.ListOptions{})
	var keys []string
	for _, o := range page.Objects {
		keys = append(keys, o.Key)
	}
	want := []string{"b.txt", "papers/", "papers/link", "papers/sub/", "papers/sub/deep.bin"}
	if len(keys) != len(want) {
		t.Fatalf("keys after dir rename = %q", keys)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("keys after dir rename = %q", keys)
		}
	}
	if d, _, err := cl.Read(f2, 0, 100); err != nil || string(d) != "deep" {
		t.Fatalf("read via handle after dir rename: %q %v", d, err)
	}
	ents, err := cl.ReadDirPlus(root)
	if err != nil || len(ents) != 2 || ents[0].Name != "b.txt" || ents[1].Name != "papers" || ents[1].Attr.Type != 2 {
		t.Fatalf("readdirplus = %+v %v", ents, err)
	}

	// Remove and rmdir.
	papers, _, err := cl.Lookup(root, "papers")
	if err != nil {
		t.Fatal(err)
	}
	psub, _, _ := cl.Lookup(papers, "sub")
	for _, step := range []error{cl.Remove(psub, "deep.bin"), cl.Rmdir(papers, "sub"), cl.Remove(papers, "link"), cl.Rmdir(root, "papers"), cl.Remove(root, "b.txt")} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if page, _ := ts.Store.List(ctx, objstore.ListOptions{}); len(page.Objects) != 0 {
		t.Fatalf("objects left: %+v", page.Objects)
	}
	_, err = cl.Getattr(fh)
	wantStatus(t, "GETATTR of removed file", err, uint32(StatusStale))
	_, _, err = cl.Lookup(root, "b.txt")
	wantStatus(t, "LOOKUP of removed file", err, uint32(StatusNoEnt))
}

func TestSquashAndPermissions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		squash   Squash
		uid      uint32
		wantUID  uint32
		wantGID  uint32
		readonly bool
	}{
		{"root squash, root", RootSquash, 0, 65534, 65534, false},
		{"root squash, user", RootSquash, 1000, 1000, 1000, false},
		{"all squash", AllSquash, 1000, 4242, 4343, false},
		{"no squash, root", NoSquash, 0, 0, 1000, false},
		{"read-only", RootSquash, 1000, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, nil, func(_ *Config, s *Share) {
				s.Squash, s.ReadOnly = tc.squash, tc.readonly
				if tc.squash == AllSquash {
					s.AnonUID, s.AnonGID = 4242, 4343
				}
			})
			cl := dial(t, ts.Port, nfsclient.Unix(tc.uid, 1000))
			root := mount(t, cl)
			fh, err := cl.Create(root, "f", 0o600)
			if tc.readonly {
				wantStatus(t, "CREATE on read-only share", err, uint32(StatusROFS))
				_, err = cl.Mkdir(root, "d", 0o755)
				wantStatus(t, "MKDIR on read-only share", err, uint32(StatusROFS))
				if out, err := run(t, "nfs-cp", writeTemp(t, []byte("x")), ts.url("f")); err == nil {
					t.Errorf("nfs-cp to a read-only share succeeded: %s", out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, err := cl.Getattr(fh)
			if err != nil || a.UID != tc.wantUID || a.GID != tc.wantGID {
				t.Fatalf("owner = %d:%d (%v), want %d:%d", a.UID, a.GID, err, tc.wantUID, tc.wantGID)
			}
			// Someone else may not write a 0600 file (unless root is
			// trusted).
			other := dial(t, ts.Port, nfsclient.Unix(2000, 2000))
			err = other.Write(fh, 0, []byte("x"), 2)
			if tc.squash == AllSquash {
				if err != nil { // everyone is the anonymous owner
					t.Fatalf("write as squashed owner: %v", err)
				}
				return
			}
			wantStatus(t, "WRITE by another user", err, uint32(StatusAccess))
		})
	}
}

func TestLargeFilePartCopy(t *testing.T) {
	ts := startServer(t, nil, func(c *Config, _ *Share) { c.PartSize = 6 << 20 })
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	data := make([]byte, 20<<20+12345)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	fh, err := cl.Create(root, "big.bin", 0o644)
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
	ev := ts.waitUpload(t, "big.bin")
	if !ev.Multipart || ev.CopiedBytes != 0 || ev.Size != int64(len(data)) {
		t.Fatalf("first upload %+v", ev)
	}
	// Drop the cached data so the small change must fetch one block.
	if err := ts.Refresh(context.Background(), "share", "", true); err != nil {
		t.Fatal(err)
	}
	patch := []byte("PATCHED")
	off := 13<<20 + 100
	if err := cl.Write(fh, uint64(off), patch, 0); err != nil {
		t.Fatal(err)
	}
	copy(data[off:], patch)
	if err := cl.Commit(fh); err != nil {
		t.Fatal(err)
	}
	ev = ts.waitUpload(t, "big.bin")
	if !ev.Multipart || ev.CopiedBytes < 12<<20 {
		t.Fatalf("second upload did not copy unchanged parts: %+v", ev)
	}
	got, _ := objectBytes(t, ts.Store, "big.bin")
	if !bytes.Equal(got, data) {
		t.Fatal("object differs after part-copy upload")
	}
	// Truncate, then read back through NFS.
	if err := cl.Setattr(fh, -1, 5<<20); err != nil {
		t.Fatal(err)
	}
	cl.Commit(fh)
	ts.waitUpload(t, "big.bin")
	got, _ = objectBytes(t, ts.Store, "big.bin")
	if !bytes.Equal(got, data[:5<<20]) {
		t.Fatalf("object after truncate: %d bytes", len(got))
	}
}

func TestOutsideChangesEmbedded(t *testing.T) {
	ts := startServer(t, nil, func(c *Config, _ *Share) { c.MetadataTTL = 300 * time.Millisecond })
	testOutsideChanges(t, ts, func(key string, body []byte) {
		if _, err := ts.Store.Put(context.Background(), key, bytes.NewReader(body), int64(len(body)), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}, func(key string) {
		if err := ts.Store.Delete(context.Background(), key); err != nil {
			t.Fatal(err)
		}
	}, 300*time.Millisecond)
}

// testOutsideChanges checks that objects put, changed and deleted behind
// the server's back show up within the TTL, without Refresh.
func testOutsideChanges(t *testing.T, ts *testServer, put func(string, []byte), del func(string), ttl time.Duration) {
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	hasOutside := func() bool {
		ents, err := cl.ReadDirPlus(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name == "outside" {
				return true
			}
		}
		return false
	}
	if hasOutside() {
		t.Fatal("outside/ exists before the test put it there")
	}
	put("outside/new.txt", []byte("version one"))
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(ttl + 10*time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s not seen within the TTL", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	start := time.Now()
	var fh []byte
	eventually("new object", func() bool {
		dir, _, err := cl.Lookup(root, "outside")
		if err != nil {
			return false
		}
		fh, _, err = cl.Lookup(dir, "new.txt")
		return err == nil
	})
	t.Logf("new object visible after %v", time.Since(start))
	if d, _, err := cl.Read(fh, 0, 100); err != nil || string(d) != "version one" {
		t.Fatalf("read %q %v", d, err)
	}
	put("outside/new.txt", []byte("version two, longer"))
	eventually("changed object", func() bool {
		d, _, err := cl.Read(fh, 0, 100)
		return err == nil && string(d) == "version two, longer"
	})
	del("outside/new.txt")
	eventually("deleted object", func() bool {
		_, err := cl.Getattr(fh)
		return err != nil
	})
	eventually("deleted directory", func() bool { return !hasOutside() })
}

// TestAppendAfterUpload appends to a file whose cached data was dropped:
// the partial block must be fetched before the write lands on it.
func TestAppendAfterUpload(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	for _, tc := range []struct {
		name    string
		size    int
		refresh bool
	}{
		{"small, kept in memory", 1000, false},
		{"small, cache dropped", 1000, true},
		{"large, cache dropped", 3<<20 + 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(tc.size)
			name := fmt.Sprintf("f%d", tc.size)
			fh, err := cl.Create(root, name, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < len(data); off += 1 << 20 {
				cl.Write(fh, uint64(off), data[off:min(len(data), off+1<<20)], 0)
			}
			cl.Commit(fh)
			ts.waitUpload(t, name)
			if tc.refresh {
				ts.Refresh(context.Background(), "share", "", true)
			}
			tail := []byte("appended")
			if err := cl.Write(fh, uint64(len(data)), tail, 0); err != nil {
				t.Fatal(err)
			}
			data = append(data, tail...)
			cl.Commit(fh)
			ts.waitUpload(t, name)
			if got, _ := objectBytes(t, ts.Store, name); !bytes.Equal(got, data) {
				t.Fatalf("object after append: %d bytes, want %d (equal prefix: %v)", len(got), len(data), bytes.Equal(got[:min(len(got), 100)], data[:100]))
			}
		})
	}
}

// TestSettleUpload checks that a file written without COMMIT is uploaded
// once it has been idle for the settle time.
func TestSettleUpload(t *testing.T) {
	ts := startServer(t, nil, func(c *Config, _ *Share) { c.SettleTime = 200 * time.Millisecond })
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	fh, err := cl.Create(root, "quiet.txt", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cl.Write(fh, 0, []byte("no commit"), 0); err != nil {
		t.Fatal(err)
	}
	ts.waitUpload(t, "quiet.txt")
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("uploaded after %v, before the settle time", el)
	}
	if b, _ := objectBytes(t, ts.Store, "quiet.txt"); string(b) != "no commit" {
		t.Fatalf("object %q", b)
	}
}
