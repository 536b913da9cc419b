package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/testenv"
)

// TestCachedVolumeThroughISCSI creates a cached volume through the API on a
// MinIO-backed daemon, writes and reads it with qemu-img over iSCSI, takes
// a snapshot, restores it as an (instant) cached volume and as a stored
// one, grows the volume, and checks the data after a daemon restart.
func TestCachedVolumeThroughISCSI(t *testing.T) {
	qemuImg := testenv.RequireTool(t, "qemu-img")
	cfg, _ := minioConfig(t)
	d, c, stop := runDaemon(t, cfg)
	ctx := context.Background()
	const size = 16 << 20
	v, err := c.CreateVolume(ctx, api.CreateVolume{Name: "hot", Mode: api.ModeCached, SizeBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	if v.Mode != api.ModeCached || v.Cache == nil {
		t.Fatalf("volume %+v", v)
	}
	img := make([]byte, size)
	rand.Read(img[:6<<20])
	src := filepath.Join(t.TempDir(), "img.raw")
	os.WriteFile(src, img, 0o600)
	if out, err := exec.Command(qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, iscsiURL(d, "", "", "hot")).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img write: %v\n%s", err, out)
	}
	if got := readVolume(t, qemuImg, iscsiURL(d, "", "", "hot")); !bytes.Equal(got, img) {
		t.Fatal("cached volume reads back different data")
	}
	snap, err := c.CreateSnapshot(ctx, "hot", api.CreateSnapshot{})
	if err != nil || snap.Status != "completed" {
		t.Fatalf("snapshot of a cached volume: %+v %v", snap, err)
	}
	for _, mode := range []string{api.ModeCached, api.ModeStored} {
		name := "from-" + mode
		if _, err := c.RestoreSnapshot(ctx, snap.ID, api.RestoreSnapshot{Volume: name, Mode: mode}); err != nil {
			t.Fatalf("restore as %s: %v", mode, err)
		}
		if got := readVolume(t, qemuImg, iscsiURL(d, "", "", name)); !bytes.Equal(got, img) {
			t.Fatalf("%s volume from the snapshot differs", mode)
		}
	}
	grown, err := c.ResizeVolume(ctx, "hot", 32<<20)
	if err != nil || grown.SizeBytes != 32<<20 {
		t.Fatalf("resize: %+v %v", grown, err)
	}
	if _, err := c.ResizeVolume(ctx, "from-stored", 32<<20); !isStatus(err, 409) {
		t.Fatalf("resizing a stored volume: %v", err)
	}
	stop()
	d2, c2 := startDaemon(t, cfg)
	got := readVolume(t, qemuImg, iscsiURL(d2, "", "", "hot"))
	if len(got) != 32<<20 || !bytes.Equal(got[:size], img) || !bytes.Equal(got[size:], make([]byte, size)) {
		t.Fatal("cached volume differs after a restart")
	}
	vv, err := c2.GetVolume(ctx, "hot")
	if err != nil || vv.Cache == nil {
		t.Fatalf("after restart: %+v %v", vv, err)
	}
}

// TestCachedVolumeLargeThroughISCSI is issue D's acceptance test through
// iSCSI: a 1 GiB cached volume on a 64 MiB cache takes 512 MiB of seeded
// random writes from qemu-img, and every byte reads back after the cache
// has been evicted (512 MiB through 64 MiB) and after a daemon restart.
func TestCachedVolumeLargeThroughISCSI(t *testing.T) {
	qemuImg := testenv.RequireTool(t, "qemu-img")
	cfg, _ := minioConfig(t)
	cfg.CacheSize = 64 << 20
	d, c, stop := runDaemon(t, cfg)
	ctx := context.Background()
	const size = 1 << 30
	if _, err := c.CreateVolume(ctx, api.CreateVolume{Name: "big", Mode: api.ModeCached, SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	// Alternate 1 MiB regions of seeded random data and zeros: 512 MiB
	// of data spread over the whole volume.
	src := filepath.Join(t.TempDir(), "src.raw")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	rng := mathrand.New(mathrand.NewPCG(4, 2))
	region := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 2 << 20 {
		for i := 0; i < len(region); i += 8 {
			binary.LittleEndian.PutUint64(region[i:], rng.Uint64())
		}
		if _, err := f.WriteAt(region, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Truncate(size)
	f.Close()
	if out, err := exec.Command(qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, iscsiURL(d, "", "", "big")).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img write: %v\n%s", err, out)
	}
	compare := func(d *Daemon, when string) {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "dst.raw")
		if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "raw", iscsiURL(d, "", "", "big"), dst).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img read %s: %v\n%s", when, err, out)
		}
		sameFiles(t, src, dst, when)
	}
	compare(d, "after eviction")
	stop()
	d2, _ := startDaemon(t, cfg)
	compare(d2, "after a restart")
}

// sameFiles compares two files in 1 MiB pieces.
func sameFiles(t *testing.T, a, b, when string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	pa, pb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(pa)) {
		na, ea := io.ReadFull(fa, pa)
		nb, _ := io.ReadFull(fb, pb)
		if na != nb || !bytes.Equal(pa[:na], pb[:nb]) {
			t.Fatalf("%s: data differs in the MiB at %d", when, off)
		}
		if ea != nil {
			return
		}
	}
}
