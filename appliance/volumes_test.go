package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/client"
	"github.com/sluicegw/sluice/internal/testenv"
)

func iscsiURL(d *Daemon, user, secret, name string) string {
	cred := ""
	if user != "" {
		cred = user + "%" + secret + "@"
	}
	return fmt.Sprintf("iscsi://%s%s/%s%s/0", cred, d.ISCSIAddr(), IQNPrefix, name)
}

func TestVolumeAPIErrors(t *testing.T) {
	_, c := startDaemon(t, testConfig(t))
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, api.CreateVolume{Name: "v1", SizeBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		req    api.CreateVolume
		status int
	}{
		{"duplicate", api.CreateVolume{Name: "v1", SizeBytes: 64 << 20}, http.StatusConflict},
		{"bad name", api.CreateVolume{Name: "Bad_Name", SizeBytes: 64 << 20}, http.StatusBadRequest},
		{"too small", api.CreateVolume{Name: "v2", SizeBytes: 4096}, http.StatusBadRequest},
		{"odd size", api.CreateVolume{Name: "v2", SizeBytes: 64<<20 + 1}, http.StatusBadRequest},
		{"bad block size", api.CreateVolume{Name: "v2", SizeBytes: 64 << 20, BlockSize: 1000}, http.StatusBadRequest},
		{"short secret", api.CreateVolume{Name: "v2", SizeBytes: 64 << 20, CHAPUser: "u", CHAPSecret: "short"}, http.StatusBadRequest},
		{"user without secret", api.CreateVolume{Name: "v2", SizeBytes: 64 << 20, CHAPUser: "u"}, http.StatusBadRequest},
		{"mutual without one-way", api.CreateVolume{Name: "v2", SizeBytes: 64 << 20, MutualCHAPUser: "t", MutualCHAPSecret: "target-secret-1"}, http.StatusBadRequest},
		{"unknown mode", api.CreateVolume{Name: "v2", SizeBytes: 64 << 20, Mode: "magic"}, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateVolume(ctx, tc.req)
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != tc.status {
				t.Fatalf("create: %v, want HTTP %d", err, tc.status)
			}
		})
	}
	if _, err := c.GetVolume(ctx, "nope"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if err := c.DeleteVolume(ctx, "nope"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	vs, err := c.ListVolumes(ctx)
	if err != nil || len(vs) != 1 || vs[0].IQN != IQNPrefix+"v1" {
		t.Fatalf("list: %v %v", vs, err)
	}
	if err := c.DeleteVolume(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if vs, _ := c.ListVolumes(ctx); len(vs) != 0 {
		t.Fatalf("after delete: %v", vs)
	}
}

func isStatus(err error, status int) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status == status
}

// TestVolumeOverISCSI creates volumes through the API and uses them with
// libiscsi and qemu-img: CHAP login, a refused wrong secret, data written
// and read back, and data still there after a daemon restart.
func TestVolumeOverISCSI(t *testing.T) {
	iscsiLs := testenv.RequireTool(t, "iscsi-ls")
	iscsiInq := testenv.RequireTool(t, "iscsi-inq")
	qemuImg := testenv.RequireTool(t, "qemu-img")
	cfg := testConfig(t)
	d, c, stop := runDaemon(t, cfg)
	ctx := context.Background()
	const secret = "s3cret-s3cret"
	v, err := c.CreateVolume(ctx, api.CreateVolume{Name: "chapvol", SizeBytes: 32 << 20, CHAPUser: "alice", CHAPSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if v.CHAPUser != "alice" || v.IQN != IQNPrefix+"chapvol" {
		t.Fatalf("volume = %+v", v)
	}
	if _, err := c.CreateVolume(ctx, api.CreateVolume{Name: "open", SizeBytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(iscsiInq, iscsiURL(d, "alice", secret, "chapvol")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SLUICE") {
		t.Fatalf("iscsi-inq with CHAP: %v\n%s", err, out)
	}
	out, err = exec.Command(iscsiInq, iscsiURL(d, "alice", "wrong-secret-x", "chapvol")).CombinedOutput()
	if err == nil {
		t.Fatalf("iscsi-inq with a wrong secret succeeded:\n%s", out)
	}
	out, err = exec.Command(iscsiInq, iscsiURL(d, "", "", "chapvol")).CombinedOutput()
	if err == nil {
		t.Fatalf("iscsi-inq without CHAP succeeded on a CHAP volume:\n%s", out)
	}
	out, err = exec.Command(iscsiLs, "iscsi://"+d.ISCSIAddr()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), IQNPrefix+"open") || !strings.Contains(string(out), IQNPrefix+"chapvol") {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}

	// Write a known image with qemu-img, read it back.
	img := make([]byte, 8<<20)
	rand.Read(img)
	src := filepath.Join(t.TempDir(), "src.raw")
	os.WriteFile(src, img, 0o600)
	url := iscsiURL(d, "", "", "open")
	if out, err := exec.Command(qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, url).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img write: %v\n%s", err, out)
	}
	back := readVolume(t, qemuImg, url)
	if !bytes.Equal(back[:len(img)], img) {
		t.Fatal("data read back differs from what qemu-img wrote")
	}

	// Restart: the volume and its data are still there.
	stop()
	d2, c2 := startDaemon(t, cfg)
	vs, err := c2.ListVolumes(ctx)
	if err != nil || len(vs) != 2 {
		t.Fatalf("after restart: %v %v", vs, err)
	}
	back = readVolume(t, qemuImg, iscsiURL(d2, "", "", "open"))
	if !bytes.Equal(back[:len(img)], img) {
		t.Fatal("data differs after a restart")
	}
	out, err = exec.Command(iscsiInq, iscsiURL(d2, "alice", secret, "chapvol")).CombinedOutput()
	if err != nil {
		t.Fatalf("CHAP after restart: %v\n%s", err, out)
	}
}

func readVolume(t *testing.T, qemuImg, url string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "dst.raw")
	if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "raw", url, dst).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img read: %v\n%s", err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
