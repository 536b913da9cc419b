package blockcache

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
	"github.com/sluicegw/sluice/snapshot"
)

// The tests in this file run against a real MinIO (testenv.StartMinIO):
// skipped when the binary is missing, failed under CI=true.

func TestMinIOSnapshotScenario(t *testing.T) {
	e, _ := minioEnv(t)
	snapshotScenario(t, e, 8<<20, 256<<10, snapshot.CodecZstd)
}

func TestMinIOSnapshotWhileWriting(t *testing.T) {
	e, _ := minioEnv(t)
	continuousScenario(t, e, 4<<20, snapshot.MinBlockSize)
}

// TestMinIOIncremental1GiB: on a 1 GiB volume (sparse: only part of it is
// written), changing 1% of the blocks makes the next snapshot upload only
// those chunks, and an unchanged volume's snapshot uploads nothing but its
// manifest and catalogue entry. Checked with the objstore metrics and the
// object count in the bucket. It stays in the default test run (cheap: the
// volume file is sparse and 64 MiB of it is written).
func TestMinIOIncremental1GiB(t *testing.T) {
	ctx := ctxT(t)
	e, _ := minioEnv(t)
	const size = 1 << 30
	bs := snapshot.DefaultBlockSize
	nBlocks := size / bs
	start := time.Now()
	phase := func(name string) { t.Logf("%s: %v", name, time.Since(start)) }
	m := &model{}
	v, err := CreateStored(filepath.Join(t.TempDir(), "big"), StoredConfig{Name: "big", Size: size, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	m.v = v
	r := rand.New(rand.NewPCG(1, 1024))
	buf := make([]byte, bs)
	write := func(b int, kind int) {
		blockcachetest.Fill(r, buf, kind)
		if err := v.WriteAt(ctx, buf, int64(b)*int64(bs), false); err != nil {
			t.Fatal(err)
		}
	}
	// The codec is none: this test counts requests and objects, and
	// compressing under the race detector would dominate its run time.
	// 64 blocks of data, a few of them all-zero writes.
	for b := 0; b < 64; b++ {
		write(b*16, []int{0, 1, 0, 2}[b%4])
	}
	phase("written")
	s1, err := v.Snapshot(ctx, e.cat, SnapshotRequest{})
	phase("first snapshot")
	if err != nil {
		t.Fatal(err)
	}
	if s1.ChunksUploaded != 48 || s1.Blocks != 48 || s1.BlocksRead != 64 {
		t.Fatalf("first snapshot: %+v", s1)
	}
	chunks1 := e.countObjects(t, "chunks/")
	if chunks1 != 48 {
		t.Fatalf("%d chunk objects after the first snapshot", chunks1)
	}
	// Change 1% of the blocks (10 of 1024): some written before, some new.
	changed := nBlocks / 100
	for k := 0; k < changed; k++ {
		write(k*97+1, k%2)
	}
	before := e.metrics.Snapshot()
	s2, err := v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	after := e.metrics.Snapshot()
	if s2.BlocksRead != int64(changed) || s2.ChunksUploaded != int64(changed) || s2.Parent != s1.ID {
		t.Fatalf("incremental snapshot: %+v", s2)
	}
	puts := after.Requests[objstore.OpPut] - before.Requests[objstore.OpPut]
	up := after.BytesUp - before.BytesUp
	// Chunks + manifest + the entry written twice (pending, completed).
	if puts != int64(changed)+3 {
		t.Errorf("incremental snapshot made %d puts, want %d", puts, changed+3)
	}
	if up < s2.StoredBytes || up > s2.StoredBytes+64<<10 {
		t.Errorf("incremental snapshot uploaded %d bytes for %d bytes of chunks", up, s2.StoredBytes)
	}
	if n := e.countObjects(t, "chunks/"); n != chunks1+changed {
		t.Errorf("%d chunk objects after the incremental snapshot, want %d", n, chunks1+changed)
	}
	t.Logf("incremental: %d puts, %d bytes up for %d changed blocks (%d chunk bytes)", puts, up, changed, s2.StoredBytes)

	// Unchanged: manifest and entry only.
	before = e.metrics.Snapshot()
	s3, err := v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	after = e.metrics.Snapshot()
	puts = after.Requests[objstore.OpPut] - before.Requests[objstore.OpPut]
	if s3.BlocksRead != 0 || s3.ChunksUploaded != 0 || puts != 3 {
		t.Fatalf("unchanged snapshot: %d puts, %+v", puts, s3)
	}
	if up := after.BytesUp - before.BytesUp; up > 64<<10 {
		t.Errorf("unchanged snapshot uploaded %d bytes", up)
	}
	if n := e.countObjects(t, "chunks/"); n != chunks1+changed {
		t.Errorf("unchanged snapshot added chunks: %d", n)
	}
	// The latest snapshot restores to a file equal to the volume.
	out := filepath.Join(t.TempDir(), "restored.img")
	phase("unchanged snapshot")
	if _, err := e.cat.RestoreToFile(ctx, s3.ID, out); err != nil {
		t.Fatal(err)
	}
	phase("restored")
	if !sameAsVolume(t, v, out) {
		t.Fatal("restored image differs from the volume")
	}
	checkCatalog(t, e)
}

// TestMinIOGCRounds: after many snapshot/delete rounds on two volumes that
// share content, GC leaves exactly the chunks the live manifests
// reference, and every live snapshot still restores. It runs with chunks
// stored as objects, and with every run packing its chunks (GC then
// rewrites packs, and restores read chunks by ranged GETs).
func TestMinIOGCRounds(t *testing.T) {
	t.Run("objects", func(t *testing.T) { testMinIOGCRounds(t, snapshot.Options{}) })
	t.Run("packs", func(t *testing.T) {
		testMinIOGCRounds(t, snapshot.Options{PackSize: 2 * snapshot.MinBlockSize, PackMinBytes: 1, IndexMergeMin: 4})
	})
}

func testMinIOGCRounds(t *testing.T, o snapshot.Options) {
	ctx := ctxT(t)
	m := testenv.StartMinIO(t)
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, Bucket: m.Bucket, Credentials: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64 // how far the catalogue's clock runs ahead
	o.GCGrace = time.Minute
	o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	e := wrapEnv(t, s3, o)
	r := rand.New(rand.NewPCG(4, 4))
	vols := []*model{
		newModel(t, filepath.Join(t.TempDir(), "a"), 2<<20, snapshot.MinBlockSize, snapshot.CodecLZ4),
		newModel(t, filepath.Join(t.TempDir(), "b"), 2<<20, snapshot.MinBlockSize, snapshot.CodecLZ4),
	}
	shared := make([]byte, snapshot.MinBlockSize)
	blockcachetest.Fill(r, shared, 1)
	type kept struct {
		id  string
		img []byte
	}
	var live []kept
	for round := 0; round < 8; round++ {
		for vi, mv := range vols {
			for k := 0; k < 3; k++ {
				mv.write(t, r, r.Int64N(32)*snapshot.MinBlockSize, 4096*(1+r.IntN(4)), r.IntN(2))
			}
			// Both volumes hold one identical block: a shared chunk.
			if err := mv.v.WriteAt(ctx, shared, int64(31-round)*snapshot.MinBlockSize, false); err != nil {
				t.Fatal(err)
			}
			mv.mu.Lock()
			copy(mv.want[int64(31-round)*snapshot.MinBlockSize:], shared)
			mv.mu.Unlock()
			in, err := mv.v.Snapshot(ctx, e.cat, SnapshotRequest{})
			if err != nil {
				t.Fatal(err)
			}
			live = append(live, kept{in.ID, mv.image()})
			// Keep every third snapshot; delete the others (the newest
			// of each volume stays as its base until the next round).
			if len(live) >= 3 && (round+vi)%3 != 0 {
				victim := live[len(live)-3]
				if err := e.cat.Delete(ctx, victim.id); err != nil {
					t.Fatal(err)
				}
				live = append(live[:len(live)-3], live[len(live)-2:]...)
			}
		}
	}
	skew.Store(int64(2 * time.Hour))
	res, err := e.cat.GC(ctx, snapshot.GCOptions{})
	if err != nil || res.Deferred || res.Deleted == 0 {
		t.Fatalf("gc: %+v %v", res, err)
	}
	c := checkCatalog(t, e)
	if c.Unreferenced != 0 || c.Chunks != c.LiveChunks {
		t.Fatalf("after gc: %+v", c)
	}
	if o.PackSize > 0 && (c.Packs == 0 || res.PacksRewritten+res.PacksDeleted == 0 || res.IndexesWritten == 0 || e.countObjects(t, "chunks/") != 0) {
		t.Fatalf("packs after gc: %+v, %+v", c, res)
	}
	for _, k := range live {
		if _, img := restoreVolume(t, e, k.id); firstDiff(img, k.img) >= 0 {
			t.Fatalf("snapshot %s differs after gc", k.id)
		}
	}
	t.Logf("gc: %+v; %d live snapshots", res, len(live))
}

// sameAsVolume compares a file with a volume: the allocated extents of
// both and the bytes inside them (reading 1 GiB of holes is slow under the
// race detector).
func sameAsVolume(t *testing.T, v *StoredVolume, path string) bool {
	t.Helper()
	other, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	bs := int64(v.BlockSize())
	want, _ := v.allocatedBlocks()
	vf, err := os.Open(filepath.Join(v.Dir(), dataFile))
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	a, b := make([]byte, bs), make([]byte, bs)
	for off := int64(0); off < v.Size(); {
		mapped, run, err := seekMapped(other, off, v.Size())
		if err != nil {
			t.Fatal(err)
		}
		for blk := off / bs; mapped && blk <= (off+run-1)/bs; blk++ {
			want.Set(blk) // compare every block either side holds
		}
		off += run
	}
	for blk := want.Next(0); blk >= 0; blk = want.Next(blk + 1) {
		if err := v.ReadAt(ctx, a, blk*bs); err != nil {
			t.Fatal(err)
		}
		if _, err := other.ReadAt(b, blk*bs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Logf("block %d differs", blk)
			return false
		}
	}
	return true
}

// TestMinIOOutageDuringSnapshot stops MinIO in the middle of a snapshot
// upload: the snapshot stays pending (the failure cannot even be recorded),
// the volume keeps serving writes with copy-on-write, and once MinIO is
// back ResumeSnapshot completes it with the image of the snapshot instant.
func TestMinIOOutageDuringSnapshot(t *testing.T) {
	ctx := ctxT(t)
	e, mio := minioEnv(t)
	mv := newModel(t, filepath.Join(t.TempDir(), "vol"), 4<<20, snapshot.MinBlockSize, snapshot.CodecLZ4)
	r := rand.New(rand.NewPCG(6, 6))
	for off := int64(0); off < 4<<20; off += snapshot.MinBlockSize {
		mv.write(t, r, off, snapshot.MinBlockSize, 0)
	}
	want := mv.image()
	e.faults.Add(objstore.FaultRule{Op: objstore.OpPut, Latency: 40 * time.Millisecond})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for e.metrics.Snapshot().Requests[objstore.OpPut] < 6 {
			time.Sleep(5 * time.Millisecond)
		}
		mio.Stop()
	}()
	_, err := mv.v.Snapshot(ctx, e.cat, SnapshotRequest{Description: "through an outage"})
	<-stopped
	if err == nil {
		t.Fatal("snapshot completed although MinIO stopped")
	}
	pending := mv.v.Info().PendingSnapshot
	if pending == "" {
		t.Fatalf("no pending snapshot after the outage: %v", err)
	}
	// The volume keeps working while the store is down.
	mv.write(t, r, 0, 3*snapshot.MinBlockSize, 1)
	if err := mv.v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mio.Start(); err != nil {
		t.Fatal(err)
	}
	e.faults.Clear()
	in, ok, err := mv.v.ResumeSnapshot(ctx, e.cat)
	if err != nil || !ok || in.ID != pending || in.Status != snapshot.StatusCompleted {
		t.Fatalf("resume after the outage: %+v %v %v", in, ok, err)
	}
	if _, img := restoreVolume(t, e, in.ID); firstDiff(img, want) >= 0 {
		t.Fatalf("resumed snapshot differs at %d", firstDiff(img, want))
	}
	s2, err := mv.v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil || s2.BlocksRead != 3 {
		t.Fatalf("next snapshot: %+v %v", s2, err)
	}
	if _, img := restoreVolume(t, e, s2.ID); firstDiff(img, mv.image()) >= 0 {
		t.Fatal("next snapshot differs")
	}
	checkCatalog(t, e)
}
