package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/events"
	"github.com/sluicegw/sluice/internal/testenv"
)

func nfsURL(d *Daemon, share, path string) string {
	_, port, _ := net.SplitHostPort(d.NFSAddr())
	return fmt.Sprintf("nfs://127.0.0.1/%s/%s?version=3&nfsport=%s&mountport=%s", share, path, port, port)
}

// TestShareThroughNFS creates a share through the API on a MinIO-backed
// daemon, copies a file in with nfs-cp and finds it in the bucket as an
// object with the same bytes, then puts an object with minio-go and reads
// it back over NFS.
func TestShareThroughNFS(t *testing.T) {
	nfsCp := testenv.RequireTool(t, "nfs-cp")
	nfsLs := testenv.RequireTool(t, "nfs-ls")
	cfg, m := minioConfig(t)
	cfg.NFS.MetadataTTL = 500 * time.Millisecond
	d, c := startDaemon(t, cfg)
	ctx := context.Background()
	sub := d.bus.Subscribe(16, events.FileUploaded)
	defer sub.Close()
	sh, err := c.CreateShare(ctx, api.CreateShare{Name: "docs", Prefix: "team/"})
	if err != nil {
		t.Fatal(err)
	}
	if sh.ExportPath != "/docs" || sh.Squash != "root" || len(sh.AllowedClients) != 2 {
		t.Fatalf("share %+v", sh)
	}
	if _, err := c.CreateShare(ctx, api.CreateShare{Name: "docs"}); !isStatus(err, 409) {
		t.Fatalf("duplicate share: %v", err)
	}
	if _, err := c.CreateShare(ctx, api.CreateShare{Name: "x", AllowedClients: []string{"10.0.0.0/33"}}); !isStatus(err, 400) {
		t.Fatalf("bad CIDR: %v", err)
	}

	data := make([]byte, 3<<20)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "report.bin")
	os.WriteFile(src, data, 0o600)
	if out, err := exec.Command(nfsCp, src, nfsURL(d, "docs", "report.bin")).CombinedOutput(); err != nil {
		t.Fatalf("nfs-cp in: %v\n%s", err, out)
	}
	select {
	case ev := <-sub.C():
		if ev.Attrs["key"] != "team/report.bin" {
			t.Fatalf("upload event %+v", ev)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no upload event")
	}
	obj, err := m.Client(t).GetObject(ctx, m.Bucket, "team/report.bin", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object in MinIO: %d bytes, %v", len(got), err)
	}

	// An object written by another S3 client shows up as a file.
	other := []byte("written straight to the bucket\n")
	if _, err := m.Client(t).PutObject(ctx, m.Bucket, "team/outside.txt", bytes.NewReader(other), int64(len(other)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(cfg.NFS.MetadataTTL + 200*time.Millisecond)
	out, err := exec.Command(nfsLs, nfsURL(d, "docs", "")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "outside.txt") || !strings.Contains(string(out), "report.bin") {
		t.Fatalf("nfs-ls: %v\n%s", err, out)
	}
	dst := filepath.Join(t.TempDir(), "outside.txt")
	if out, err := exec.Command(nfsCp, nfsURL(d, "docs", "outside.txt"), dst).CombinedOutput(); err != nil {
		t.Fatalf("nfs-cp out: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, other) {
		t.Fatalf("read back %q", b)
	}
	if err := c.RefreshShare(ctx, "docs", api.RefreshShare{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	// A client outside the allowlist is refused, and the refusal audited.
	if _, err := c.CreateShare(ctx, api.CreateShare{Name: "private", AllowedClients: []string{"192.0.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nfsLs, nfsURL(d, "private", "")).CombinedOutput(); err == nil {
		t.Fatalf("mount outside the allowlist succeeded:\n%s", out)
	}
	ev, err := c.AuditEvents(ctx, map[string][]string{"name": {"MountShareRefused"}})
	if err != nil || len(ev.Events) == 0 {
		t.Fatalf("refused mount not audited: %v %v", ev, err)
	}
	if err := c.DeleteShare(ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.Command(nfsLs, nfsURL(d, "docs", "")).CombinedOutput(); err == nil {
		t.Fatal("deleted share still mountable")
	}
}
