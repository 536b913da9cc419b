package snapshot

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"golang.org/x/sys/unix"
)

func TestCreateRestoreIncremental(t *testing.T) {
	for _, codec := range []Codec{CodecNone, CodecZstd, CodecLZ4} {
		t.Run(codec.String(), func(t *testing.T) {
			ctx := ctxT(t)
			c := newTestCatalog(t, "", Options{})
			const bs = MinBlockSize
			size := int64(bs*40 + 4096) // a short last block
			img := newMemImage(size, bs)
			r := rand.New(rand.NewPCG(1, 2))
			for i := int64(0); i < 41; i++ {
				img.fill(r, i, int(i%3))
			}
			want1 := img.clone()
			s1, err := c.Create(ctx, CreateRequest{Volume: "v1", Size: size, BlockSize: bs, Codec: codec, Source: img, Tags: map[string]string{"k": "v"}})
			if err != nil {
				t.Fatal(err)
			}
			if s1.Status != StatusCompleted || s1.Blocks != 28 || s1.LogicalBytes != 27*bs+4096 {
				t.Fatalf("first snapshot: %+v", s1)
			}
			if codec != CodecNone && s1.StoredBytes >= s1.LogicalBytes*9/10 {
				t.Errorf("%s stored %d of %d logical bytes", codec, s1.StoredBytes, s1.LogicalBytes)
			}
			// Change three blocks, one to zeros.
			changed := NewBitmap(41)
			for _, i := range []int64{0, 7, 40} {
				img.fill(r, i, map[int64]int{0: 2, 7: 0, 40: 1}[i])
				changed.Set(i)
			}
			want2 := img.clone()
			before := c.metrics.Snapshot()
			s2, err := c.Create(ctx, CreateRequest{Volume: "v1", Size: size, BlockSize: bs, Codec: codec, Parent: s1.ID, Changed: changed, Source: img})
			if err != nil {
				t.Fatal(err)
			}
			after := c.metrics.Snapshot()
			if s2.ChunksUploaded != 2 || s2.BlocksRead != 3 {
				t.Errorf("incremental: %+v", s2)
			}
			// 2 chunks + manifest + pending entry + final entry.
			if d := after.Requests[objstore.OpPut] - before.Requests[objstore.OpPut]; d != 5 {
				t.Errorf("incremental made %d puts, want 5", d)
			}
			if got := restoreBytes(t, c.Catalog, s1.ID, size); !bytes.Equal(got, want1) {
				t.Error("first snapshot restores different bytes")
			}
			if got := restoreBytes(t, c.Catalog, s2.ID, size); !bytes.Equal(got, want2) {
				t.Error("second snapshot restores different bytes")
			}
			// Unchanged: only the manifest and the entry.
			before = c.metrics.Snapshot()
			s3, err := c.Create(ctx, CreateRequest{Volume: "v1", Size: size, BlockSize: bs, Codec: codec, Parent: s2.ID, Changed: NewBitmap(41), Source: img})
			if err != nil {
				t.Fatal(err)
			}
			after = c.metrics.Snapshot()
			if d := after.Requests[objstore.OpPut] - before.Requests[objstore.OpPut]; d != 3 || s3.StoredBytes != 0 {
				t.Errorf("unchanged snapshot made %d puts and stored %d bytes", d, s3.StoredBytes)
			}
			// A second volume with the same content stores nothing new.
			n := countChunks(t, c.Catalog)
			s4, err := c.Create(ctx, CreateRequest{Volume: "v2", Size: size, BlockSize: bs, Codec: codec, Source: img})
			if err != nil {
				t.Fatal(err)
			}
			if s4.ChunksUploaded != 0 || countChunks(t, c.Catalog) != n {
				t.Errorf("cross-volume dedup: uploaded %d chunks", s4.ChunksUploaded)
			}
			for _, id := range []string{s1.ID, s2.ID, s3.ID, s4.ID} {
				v, err := c.Verify(ctx, id)
				if err != nil || !v.OK {
					t.Errorf("verify %s: %+v %v", id, v, err)
				}
			}
			list, err := c.List(ctx, ListFilter{Volume: "v1"})
			if err != nil || len(list) != 3 || list[0].ID != s1.ID || list[0].Tags["k"] != "v" {
				t.Fatalf("list: %+v %v", list, err)
			}
		})
	}
}

func TestRestoreToFileAndVerifyCorruption(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	c := newTestCatalog(t, filepath.Join(dir, "store"), Options{})
	img := newMemImage(8*MinBlockSize, MinBlockSize)
	r := rand.New(rand.NewPCG(3, 4))
	for i := int64(0); i < 8; i += 2 {
		img.fill(r, i, 0)
	}
	s, err := c.Create(ctx, CreateRequest{Volume: "v", Size: 8 * MinBlockSize, BlockSize: MinBlockSize, Source: img})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.img")
	if _, err := c.RestoreToFile(ctx, s.ID, out); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, img.clone()) {
		t.Fatal("restored file differs")
	}
	if _, err := c.RestoreToFile(ctx, s.ID, out); err == nil {
		t.Fatal("restore over an existing file succeeded")
	}
	// Corrupt one chunk and delete another.
	m, _ := c.Manifest(ctx, s.ID)
	bad, gone := m.Map.Blocks[0].ID, m.Map.Blocks[2].ID
	obj := c.coder.Encode(nil, bytes.Repeat([]byte{1}, MinBlockSize), CodecNone)
	if _, err := c.store.Put(ctx, c.chunks.Key(bad), bytes.NewReader(obj), int64(len(obj)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.store.Delete(ctx, c.chunks.Key(gone)); err != nil {
		t.Fatal(err)
	}
	v, err := c.Verify(ctx, s.ID)
	if err != nil || v.OK || len(v.Corrupt) != 1 || len(v.Missing) != 1 || v.Chunks != 4 {
		t.Fatalf("verify of a damaged snapshot: %+v %v", v, err)
	}
	if _, err := c.Restore(ctx, s.ID, &sliceWriter{b: make([]byte, 8*MinBlockSize)}); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrChunkMissing) {
		t.Fatalf("restore of a damaged snapshot: %v", err)
	}
}

func TestCreateValidation(t *testing.T) {
	c := newTestCatalog(t, "", Options{})
	img := newMemImage(MinBlockSize, MinBlockSize)
	good := CreateRequest{Volume: "v", Size: MinBlockSize, BlockSize: MinBlockSize, Source: img}
	tests := []struct {
		name string
		mod  func(*CreateRequest)
	}{
		{"no volume", func(r *CreateRequest) { r.Volume = "" }},
		{"bad block size", func(r *CreateRequest) { r.BlockSize = 100 << 10 }},
		{"too small block", func(r *CreateRequest) { r.BlockSize = 32 << 10 }},
		{"zero size", func(r *CreateRequest) { r.Size = 0 }},
		{"bad codec", func(r *CreateRequest) { r.Codec = 9 }},
		{"no source", func(r *CreateRequest) { r.Source = nil }},
		{"bad id", func(r *CreateRequest) { r.ID = "../x" }},
		{"bitmap size", func(r *CreateRequest) { r.Changed = NewBitmap(5) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := good
			tc.mod(&req)
			if _, err := c.Create(ctxT(t), req); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	// A missing parent fails the snapshot and records the failure.
	req := good
	req.Parent = "snap-missing"
	req.Changed = NewBitmap(1)
	in, err := c.Create(ctxT(t), req)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing parent: %v", err)
	}
	if got, _ := c.Get(ctxT(t), in.ID); got.Status != StatusError {
		t.Fatalf("failed snapshot has status %q", got.Status)
	}
}

// TestCrashAndResume interrupts Create at each durability boundary and with
// store failures, then resumes it with the same id.
// TestCrashAndResume crashes Create at each durability point and through
// store outages, with chunk objects and with packs, and resumes it.
func TestCrashAndResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"objects", Options{PackSize: -1}},
		{"packs", Options{PackSize: 4 * MinBlockSize, PackMinBytes: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) { testCrashAndResume(t, tc.o) })
	}
}

func testCrashAndResume(t *testing.T, o Options) {
	points := []string{"create.chunks-stored", "create.manifest-written", "create.committed"}
	for _, fp := range points {
		t.Run(fp, func(t *testing.T) {
			ctx := ctxT(t)
			dir := t.TempDir()
			armed := true
			oc := o
			oc.Failpoint = func(name string) error {
				if armed && name == fp {
					return ErrFailpoint
				}
				return nil
			}
			c := newTestCatalog(t, dir, oc)
			img := newMemImage(16*MinBlockSize, MinBlockSize)
			r := rand.New(rand.NewPCG(5, 6))
			for i := int64(0); i < 16; i++ {
				img.fill(r, i, int(i%2))
			}
			req := CreateRequest{ID: "snap-crash", Volume: "v", Size: 16 * MinBlockSize, BlockSize: MinBlockSize, Codec: CodecZstd, Source: img}
			if _, err := c.Create(ctx, req); !errors.Is(err, ErrFailpoint) {
				t.Fatalf("create: %v", err)
			}
			in, _ := c.Get(ctx, "snap-crash")
			wantStatus := StatusPending
			if fp == "create.committed" {
				wantStatus = StatusCompleted
			}
			if in.Status != wantStatus {
				t.Fatalf("after crash at %s status is %s", fp, in.Status)
			}
			if wantStatus == StatusPending {
				if _, err := c.Restore(ctx, "snap-crash", &sliceWriter{b: make([]byte, req.Size)}); !errors.Is(err, ErrNotCompleted) {
					t.Fatalf("restore of a pending snapshot: %v", err)
				}
			}
			// "Restart": a new catalogue on the same store resumes.
			armed = false
			c2 := newTestCatalog(t, dir, o)
			in, err := c2.Create(ctx, req)
			if err != nil || in.Status != StatusCompleted {
				t.Fatalf("resume: %+v %v", in, err)
			}
			if wantStatus == StatusPending && in.ChunksUploaded != 0 {
				t.Errorf("resume re-uploaded %d chunks", in.ChunksUploaded)
			}
			if got := restoreBytes(t, c2.Catalog, "snap-crash", req.Size); !bytes.Equal(got, img.clone()) {
				t.Fatal("resumed snapshot differs")
			}
		})
	}
	t.Run("store-outage", func(t *testing.T) {
		ctx := ctxT(t)
		c := newTestCatalog(t, "", o)
		img := newMemImage(16*MinBlockSize, MinBlockSize)
		r := rand.New(rand.NewPCG(7, 8))
		for i := int64(0); i < 16; i++ {
			img.fill(r, i, 0)
		}
		// Every Put after the pending entry fails permanently.
		c.faults.Add(objstore.FaultRule{Op: objstore.OpPut, Nth: 3, Err: errors.New("disk full")})
		req := CreateRequest{ID: "snap-out", Volume: "v", Size: 16 * MinBlockSize, BlockSize: MinBlockSize, Source: img}
		_, err := c.Create(ctx, req)
		if err == nil {
			t.Fatal("create succeeded through a failing store")
		}
		in, _ := c.Get(ctx, "snap-out")
		if in.Status != StatusError {
			t.Fatalf("status after a permanent failure: %s", in.Status)
		}
		// Transient outage during which even the failure cannot be
		// recorded: the entry stays pending and resumes.
		c.faults.Clear()
		req.ID = "snap-out2"
		req.Source = &hookSource{BlockSource: img, hook: func() {
			c.faults.Add(objstore.FaultRule{Op: objstore.OpPut, Err: objstore.ErrInjected})
		}}
		if _, err := c.Create(ctx, req); err == nil {
			t.Fatal("create succeeded through an outage")
		}
		if in, _ := c.Get(ctx, "snap-out2"); in.Status != StatusPending {
			t.Fatalf("status after an outage: %s", in.Status)
		}
		c.faults.Clear()
		if in, err := c.Create(ctx, req); err != nil || in.Status != StatusCompleted {
			t.Fatalf("resume after outage: %+v %v", in, err)
		}
	})
}

// TestGC runs create/delete rounds and collections with every chunk in its
// own object, and with every run packing its chunks into small packs (so
// that packs end up partly dead and are rewritten).
func TestGC(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"objects", Options{PackSize: -1}},
		{"packs", Options{PackSize: 2 * MinBlockSize, PackMinBytes: 1, IndexMergeMin: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) { testGC(t, tc.o) })
	}
}

func testGC(t *testing.T, o Options) {
	ctx := ctxT(t)
	now := time.Now()
	clock := func() time.Time { return now }
	o.GCGrace, o.StaleAfter, o.Now = time.Minute, 10*time.Minute, clock
	c := newTestCatalog(t, "", o)
	const bs = MinBlockSize
	img := newMemImage(32*bs, bs)
	r := rand.New(rand.NewPCG(9, 10))
	var ids []string
	parent := ""
	for round := 0; round < 8; round++ {
		changed := NewBitmap(32)
		for k := 0; k < 4; k++ {
			i := r.Int64N(32)
			img.fill(r, i, r.IntN(3))
			changed.Set(i)
		}
		req := CreateRequest{Volume: "v", Size: 32 * bs, BlockSize: bs, Source: img, Parent: parent, Changed: changed}
		if parent == "" {
			req.Changed = nil
		}
		in, err := c.Create(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
		parent = in.ID
		// Delete every other older snapshot.
		if round%2 == 1 {
			if err := c.Delete(ctx, ids[round-1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Nothing is old enough yet.
	res, err := c.GC(ctx, GCOptions{})
	if err != nil || res.Deleted != 0 || res.Young == 0 {
		t.Fatalf("gc inside grace: %+v %v", res, err)
	}
	now = now.Add(2 * time.Hour)
	// A pending snapshot defers the collection.
	pend := &blockingSource{img: img, started: make(chan struct{}), release: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Create(ctx, CreateRequest{Volume: "w", Size: 32 * bs, BlockSize: bs, Source: pend})
		errc <- err
	}()
	<-pend.started
	res, err = c.GC(ctx, GCOptions{})
	if err != nil || !res.Deferred || res.Deleted != 0 {
		t.Fatalf("gc with a pending snapshot: %+v %v", res, err)
	}
	close(pend.release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	res, err = c.GC(ctx, GCOptions{DryRun: true})
	if err != nil || res.Deleted == 0 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	n := countChunks(t, c.Catalog)
	res, err = c.GC(ctx, GCOptions{})
	if err != nil || res.Deleted == 0 || countChunks(t, c.Catalog) != n-res.Deleted {
		t.Fatalf("gc: %+v %v", res, err)
	}
	checkLiveChunks(t, c.Catalog)
	if _, packs := census(t, c.Catalog); o.PackSize > 0 && (packs == 0 || res.PacksRewritten == 0 || res.ChunksMoved == 0 ||
		res.IndexesWritten == 0 || countKeys(t, c.Catalog, "packidx/"+mergedPrefix) == 0) {
		t.Fatalf("packs: %d packs after gc %+v", packs, res)
	}
	t.Logf("gc: %+v", res)
	// Every remaining snapshot still restores and verifies.
	list, _ := c.List(ctx, ListFilter{})
	for _, in := range list {
		if v, err := c.Verify(ctx, in.ID); err != nil || !v.OK {
			t.Fatalf("verify %s after gc: %+v %v", in.ID, v, err)
		}
	}
	// Deleting everything and collecting leaves no chunk.
	for _, in := range list {
		if err := c.Delete(ctx, in.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if copies, packs := census(t, c.Catalog); len(copies) != 0 || packs != 0 {
		t.Fatalf("%d chunks in %d packs left after deleting every snapshot", len(copies), packs)
	}
}

// checkLiveChunks asserts that the chunks in the store are exactly those the
// completed manifests reference.
func checkLiveChunks(t testing.TB, c *Catalog) {
	t.Helper()
	ctx := context.Background()
	list, err := c.List(ctx, ListFilter{Status: StatusCompleted})
	if err != nil {
		t.Fatal(err)
	}
	live := map[ChunkID]bool{}
	for _, in := range list {
		m, err := c.Manifest(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range m.Map.Blocks {
			if !b.ID.IsZero() {
				live[b.ID] = true
			}
		}
	}
	copies, _ := census(t, c)
	have := map[ChunkID]bool{}
	for id, n := range copies {
		have[id] = true
		if n != 1 {
			t.Errorf("chunk %s stored %d times", id, n)
		}
	}
	for id := range live {
		if !have[id] {
			t.Errorf("live chunk %s missing", id)
		}
	}
	for id := range have {
		if !live[id] {
			t.Errorf("unreferenced chunk %s kept", id)
		}
	}
}

// blockingSource blocks its first read until released.
type blockingSource struct {
	img     *memImage
	started chan struct{}
	release chan struct{}
}

func (b *blockingSource) ReadBlock(ctx context.Context, i int64, p []byte) error {
	if i == 0 {
		close(b.started)
		select {
		case <-b.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return b.img.ReadBlock(ctx, i, p)
}

func TestStaleSnapshotMarkedByGC(t *testing.T) {
	ctx := ctxT(t)
	now := time.Now()
	c := newTestCatalog(t, "", Options{StaleAfter: time.Minute, GCGrace: time.Minute, Now: func() time.Time { return now }})
	img := newMemImage(4*MinBlockSize, MinBlockSize)
	img.fill(rand.New(rand.NewPCG(1, 1)), 1, 0)
	req := CreateRequest{ID: "snap-stale", Volume: "v", Size: 4 * MinBlockSize, BlockSize: MinBlockSize, Source: img}
	c.Catalog.o.Failpoint = func(n string) error {
		if n == "create.chunks-stored" {
			return ErrFailpoint
		}
		return nil
	}
	if _, err := c.Create(ctx, req); !errors.Is(err, ErrFailpoint) {
		t.Fatal(err)
	}
	c.Catalog.o.Failpoint = nil
	now = now.Add(time.Hour)
	res, err := c.GC(ctx, GCOptions{})
	if err != nil || len(res.StaleMarked) != 1 || res.Deleted != 1 {
		t.Fatalf("gc: %+v %v", res, err)
	}
	if _, err := c.Create(ctx, req); !errors.Is(err, ErrConflict) {
		t.Fatalf("resuming a snapshot gc marked failed: %v", err)
	}
}

func TestGCLease(t *testing.T) {
	ctx := ctxT(t)
	c := newTestCatalog(t, "", Options{})
	release, err := c.acquireLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GC(ctx, GCOptions{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second gc: %v", err)
	}
	// A snapshot waits for the collector.
	img := newMemImage(MinBlockSize, MinBlockSize)
	done := make(chan error, 1)
	go func() {
		_, err := c.Create(ctx, CreateRequest{Volume: "v", Size: MinBlockSize, BlockSize: MinBlockSize, Source: img})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("snapshot finished while gc held its lease: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// hookSource calls hook once, on the first read.
type hookSource struct {
	BlockSource
	once sync.Once
	hook func()
}

func (h *hookSource) ReadBlock(ctx context.Context, i int64, p []byte) error {
	h.once.Do(h.hook)
	return h.BlockSource.ReadBlock(ctx, i, p)
}

func TestCheck(t *testing.T) {
	ctx := ctxT(t)
	c := newTestCatalog(t, "", Options{})
	img := newMemImage(4*MinBlockSize, MinBlockSize)
	r := rand.New(rand.NewPCG(1, 9))
	for i := int64(0); i < 4; i++ {
		img.fill(r, i, int(i%2))
	}
	s, err := c.Create(ctx, CreateRequest{Volume: "v", Size: 4 * MinBlockSize, BlockSize: MinBlockSize, Source: img})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Check(ctx)
	if err != nil || !res.OK || res.Snapshots != 1 || res.LiveChunks != 4 || res.Unreferenced != 0 {
		t.Fatalf("check of a good catalogue: %+v %v", res, err)
	}
	m, _ := c.Manifest(ctx, s.ID)
	if err := c.store.Delete(ctx, c.chunks.Key(m.Map.Blocks[1].ID)); err != nil {
		t.Fatal(err)
	}
	res, err = c.Check(ctx)
	if err != nil || res.OK || len(res.Problems) != 1 {
		t.Fatalf("check with a missing chunk: %+v %v", res, err)
	}
}

// TestRestoreToFileWritePaths restores images whose blocks take the direct
// path (aligned), the buffered one (a partial last block; an unaligned
// buffer) or both, on the test's file system and on tmpfs (no O_DIRECT),
// and compares the files byte for byte.
func TestRestoreToFileWritePaths(t *testing.T) {
	ctx := ctxT(t)
	dirs := map[string]string{"temp dir": t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "snaptest"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs["tmpfs"] = d
		}
	}
	tests := []struct {
		name string
		size int64
		bs   int
	}{
		{"whole 1 MiB blocks", 4 << 20, 1 << 20},
		{"partial last block", 3<<20 + 1536, 1 << 20},
		{"64 KiB blocks", 1 << 20, MinBlockSize},
	}
	for dirName, dir := range dirs {
		for _, tc := range tests {
			t.Run(dirName+"/"+tc.name, func(t *testing.T) {
				c := newTestCatalog(t, "", Options{})
				img := newMemImage(tc.size, tc.bs)
				r := rand.New(rand.NewPCG(5, 6))
				for i := int64(0); i*int64(tc.bs) < tc.size; i++ {
					if i%3 != 2 { // every third block a hole
						img.fill(r, i, int(i%2))
					}
				}
				s, err := c.Create(ctx, CreateRequest{Volume: "v", Size: tc.size, BlockSize: tc.bs, Source: img})
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".img")
				if _, err := c.RestoreToFile(ctx, s.ID, out); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, img.clone()) {
					t.Fatal("restored file differs from the image")
				}
			})
		}
	}
}

// TestRestoreWriterUnalignedBuffer checks that a block in a buffer the
// allocator did not align goes the buffered way and lands intact.
func TestRestoreWriterUnalignedBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := restoreWriter{f: f}
	if d, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		defer d.Close()
		w.direct = d
	} else {
		// RestoreToFile writes buffered then, which is what is left to test.
		t.Logf("no O_DIRECT on the test directory (%v): buffered writes only", err)
	}
	buf := make([]byte, 2*directAlign+1)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, p := range [][]byte{buf[1:], buf[:2*directAlign]} { // unaligned, then (likely) aligned
		if _, err := w.WriteAt(p, directAlign); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(p))
		if _, err := f.ReadAt(got, directAlign); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p) {
			t.Fatal("block written through restoreWriter reads back differently")
		}
	}
}
