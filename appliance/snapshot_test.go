package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/testenv"
)

// TestSnapshotsThroughISCSI writes through iSCSI with qemu-img to a stored
// volume on a daemon backed by real MinIO, snapshots, writes more,
// snapshots again, and restores each snapshot to a new volume that must
// read back byte for byte what the volume held at that instant. A snapshot
// of an unchanged volume uploads no chunk.
func TestSnapshotsThroughISCSI(t *testing.T) {
	qemuImg := testenv.RequireTool(t, "qemu-img")
	cfg, _ := minioConfig(t)
	d, c := startDaemon(t, cfg)
	ctx := context.Background()
	const size = 32 << 20
	if _, err := c.CreateVolume(ctx, api.CreateVolume{Name: "src", SizeBytes: size, ChunkSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	url := iscsiURL(d, "", "", "src")
	write := func(data []byte, off int64) {
		t.Helper()
		img := make([]byte, size)
		// qemu-img convert writes a whole image; read the current content
		// first so the rest stays as it is.
		copy(img, readVolume(t, qemuImg, url))
		copy(img[off:], data)
		src := filepath.Join(t.TempDir(), "img.raw")
		os.WriteFile(src, img, 0o600)
		if out, err := exec.Command(qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, url).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img write: %v\n%s", err, out)
		}
	}
	a := make([]byte, 4<<20)
	rand.Read(a)
	write(a, 0)
	state1 := readVolume(t, qemuImg, url)
	s1, err := c.CreateSnapshot(ctx, "src", api.CreateSnapshot{Description: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Status != "completed" || s1.Volume != "src" || s1.LogicalBytes < int64(len(a)) || s1.StoredBytes == 0 || s1.ID == "" {
		t.Fatalf("first snapshot %+v", s1)
	}
	b := make([]byte, 1<<20)
	rand.Read(b)
	write(b, 20<<20)
	state2 := readVolume(t, qemuImg, url)
	s2, err := c.CreateSnapshot(ctx, "src", api.CreateSnapshot{})
	if err != nil {
		t.Fatal(err)
	}
	// Only the 16 changed 64 KiB chunks travel.
	if s2.Parent != s1.ID || s2.ChunksUploaded != int64(len(b)/(64<<10)) {
		t.Fatalf("incremental snapshot %+v, want 16 chunks on parent %s", s2, s1.ID)
	}
	s3, err := c.CreateSnapshot(ctx, "src", api.CreateSnapshot{})
	if err != nil {
		t.Fatal(err)
	}
	if s3.ChunksUploaded != 0 || s3.StoredBytes != 0 {
		t.Fatalf("snapshot of an unchanged volume uploaded %d chunks", s3.ChunksUploaded)
	}
	for _, tc := range []struct {
		id, name string
		want     []byte
	}{{s1.ID, "r1", state1}, {s2.ID, "r2", state2}} {
		v, err := c.RestoreSnapshot(ctx, tc.id, api.RestoreSnapshot{Volume: tc.name})
		if err != nil {
			t.Fatal(err)
		}
		if v.FromSnapshot != tc.id || v.SizeBytes != size {
			t.Fatalf("restored volume %+v", v)
		}
		if got := readVolume(t, qemuImg, iscsiURL(d, "", "", tc.name)); !bytes.Equal(got, tc.want) {
			t.Fatalf("volume restored from %s differs from the volume at that instant", tc.id)
		}
	}
	vr, err := c.VerifySnapshot(ctx, s2.ID)
	if err != nil || !vr.OK || vr.Chunks == 0 {
		t.Fatalf("verify: %+v %v", vr, err)
	}
	list, err := c.ListSnapshots(ctx, "src")
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %d %v", len(list), err)
	}
	if err := c.DeleteSnapshot(ctx, s3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSnapshot(ctx, s3.ID); !isStatus(err, 404) {
		t.Fatalf("deleted snapshot: %v", err)
	}
	gc, err := c.RunGC(ctx, true)
	if err != nil || gc.LiveChunks == 0 {
		t.Fatalf("gc: %+v %v", gc, err)
	}
	// Completions reach the audit trail through the event bus.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev, err := c.AuditEvents(ctx, map[string][]string{"name": {"SnapshotCompleted"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Events) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d SnapshotCompleted audit records, want 3", len(ev.Events))
		}
		time.Sleep(50 * time.Millisecond)
	}
	sc, err := c.SetSchedule(ctx, "src", api.Schedule{Enabled: true, IntervalHours: 6, KeepLast: 3})
	if err != nil || !sc.Enabled || sc.Next == nil {
		t.Fatalf("schedule: %+v %v", sc, err)
	}
	if _, err := c.SetSchedule(ctx, "src", api.Schedule{Enabled: true, IntervalHours: 25}); !isStatus(err, 400) {
		t.Fatalf("bad schedule: %v", err)
	}
}
