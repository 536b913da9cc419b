package nfs

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/testenv"
)

// TestPort111 runs the portmapper on the real port 111 and uses the plain
// URL form ("nfs://127.0.0.1/share/…", ports from the portmapper) with
// libnfs and with qemu-img, whose nfs:// driver cannot be given ports. It
// needs port 111 (root, no rpcbind running); elsewhere it only logs why it
// did nothing.
func TestPort111(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:111")
	if err != nil {
		// The only test of plain nfs:// URLs and of qemu-img: under CI it
		// must run, not pass silently.
		testenv.Unsupported(t, "port 111 unavailable for the portmapper test: "+err.Error())
	}
	probe.Close()
	ts := startServer(t, nil, func(c *Config, _ *Share) { c.PortmapAddr = "127.0.0.1:111" })
	for ts.PortmapAddr() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	const base = "nfs://127.0.0.1/share/"
	data := randomBytes(1<<20 + 5)
	mustRun(t, "nfs-cp", writeTemp(t, data), base+"plain.bin")
	if out := mustRun(t, "nfs-ls", base); !strings.Contains(out, "plain.bin") {
		t.Fatalf("nfs-ls = %q", out)
	}
	mustRun(t, "nfs-cp", writeTemp(t, []byte("through the portmapper\n")), base+"note.txt")
	if out := mustRun(t, "nfs-cat", base+"note.txt"); out != "through the portmapper\n" {
		t.Fatalf("nfs-cat = %q", out)
	}
	dst := t.TempDir() + "/plain"
	mustRun(t, "nfs-cp", base+"plain.bin", dst)
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Fatal("nfs-cp out through the portmapper differs")
	}

	// qemu-img: create, info, convert in and out.
	mustRun(t, "qemu-img", "create", "-f", "qcow2", base+"img.qcow2", "64M")
	if out := mustRun(t, "qemu-img", "info", base+"img.qcow2"); !strings.Contains(out, "qcow2") || !strings.Contains(out, "64 MiB") {
		t.Fatalf("qemu-img info = %s", out)
	}
	raw := randomBytes(8 << 20)
	rawFile := writeTemp(t, raw)
	mustRun(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", rawFile, base+"disk.qcow2")
	back := t.TempDir() + "/back.raw"
	mustRun(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", base+"disk.qcow2", back)
	if b, _ := os.ReadFile(back); !bytes.Equal(b, raw) {
		t.Fatal("image converted through nfs:// differs")
	}
	mustRun(t, "qemu-img", "check", base+"disk.qcow2")
}
