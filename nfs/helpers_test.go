package nfs

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// testServer is a Server on a random loopback port.
type testServer struct {
	*Server
	dir    string
	Port   int
	Store  objstore.Store
	Events chan UploadEvent
	ln     net.Listener
	done   chan error
}

type serverOpt func(*Config, *Share)

// startServer serves one share "share" of store (an embedded store when
// nil) on 127.0.0.1.
func startServer(t testing.TB, store objstore.Store, opts ...serverOpt) *testServer {
	t.Helper()
	if store == nil {
		e, err := objstore.OpenEmbedded(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		store = e
	}
	dir := t.TempDir()
	ts := &testServer{dir: dir, Store: store, Events: make(chan UploadEvent, 100000), done: make(chan error, 1)}
	cfg := Config{StateDir: dir + "/state", CacheDir: dir + "/cache", MetadataTTL: time.Second,
		SettleTime: time.Minute, OnUpload: func(ev UploadEvent) { ts.Events <- ev }}
	sh := Share{Name: "share", Store: store, AllowedClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Squash: NoSquash}
	for _, o := range opts {
		o(&cfg, &sh)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddShare(sh); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Server, ts.ln, ts.Port = srv, ln, ln.Addr().(*net.TCPAddr).Port
	go func() { ts.done <- srv.Serve(ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

func (ts *testServer) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil && err != ErrServerClosed {
		t.Errorf("shutdown: %v", err)
	}
	select {
	case <-ts.done:
	case <-time.After(5 * time.Second):
		t.Error("Serve did not return")
	}
	// No file in the server's state or cache directory may stay open.
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, ts.dir) {
			t.Errorf("file left open after Shutdown: %s", target)
		}
	}
}

// url returns a libnfs URL for path in the share, with explicit ports.
func (ts *testServer) url(path string, extra ...string) string {
	q := fmt.Sprintf("?nfsport=%d&mountport=%d", ts.Port, ts.Port)
	for _, e := range extra {
		q += "&" + e
	}
	return fmt.Sprintf("nfs://127.0.0.1/share/%s%s", strings.TrimPrefix(path, "/"), q)
}

// run runs an external tool and returns its combined output.
func run(t testing.TB, tool string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.RequireTool(t, tool)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func mustRun(t testing.TB, tool string, args ...string) string {
	t.Helper()
	out, err := run(t, tool, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
	return out
}

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	f := t.TempDir() + "/src"
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// createFile creates name in dir with data (in WRITEs of up to 1 MiB),
// commits it and returns its handle.
func createFile(t testing.TB, cl *nfsclient.Client, dir []byte, name string, mode uint32, data []byte) []byte {
	t.Helper()
	fh, err := cl.Create(dir, name, mode)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if err := cl.Write(fh, uint64(off), data[off:min(len(data), off+1<<20)], 0); err != nil {
			t.Fatalf("write %s at %d: %v", name, off, err)
		}
	}
	if err := cl.Commit(fh); err != nil {
		t.Fatalf("commit %s: %v", name, err)
	}
	return fh
}
