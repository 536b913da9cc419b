package nfs

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// TestHandlesSurviveRestart checks that file handles handed out before a
// restart (same state directory) still resolve afterwards, including one
// of a file renamed before the restart.
func TestHandlesSurviveRestart(t *testing.T) {
	store, err := objstore.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := func() (*Server, int, chan error) {
		srv, err := NewServer(Config{StateDir: dir + "/state", CacheDir: dir + "/cache"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddShare(Share{Name: "share", Store: store, Squash: NoSquash,
			AllowedClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		return srv, ln.Addr().(*net.TCPAddr).Port, done
	}
	stop := func(srv *Server, done chan error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	srv, port, done := start()
	cl, err := nfsclient.Dial("127.0.0.1:"+strconv.Itoa(port), nfsclient.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	root := mount(t, cl)
	d, _ := cl.Mkdir(root, "d", 0o755)
	fa, _ := cl.Create(d, "a", 0o644)
	cl.Write(fa, 0, []byte("file a"), 2)
	fb, _ := cl.Create(root, "b", 0o644)
	cl.Write(fb, 0, []byte("file b, renamed"), 2)
	if err := cl.Rename(root, "b", d, "c"); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	stop(srv, done) // uploads everything, then exits

	srv, port, done = start()
	defer stop(srv, done)
	cl, err = nfsclient.Dial("127.0.0.1:"+strconv.Itoa(port), nfsclient.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tc := range []struct {
		fh   []byte
		want string
	}{{fa, "file a"}, {fb, "file b, renamed"}} {
		b, _, err := cl.Read(tc.fh, 0, 100)
		if err != nil || string(b) != tc.want {
			t.Errorf("old handle after restart: %q, %v; want %q", b, err, tc.want)
		}
	}
	if a, err := cl.Getattr(d); err != nil || a.Type != 2 {
		t.Errorf("directory handle after restart: %+v %v", a, err)
	}
}
