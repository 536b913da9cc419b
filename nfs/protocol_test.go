package nfs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

func dial(t testing.TB, port int, cred rpc.Cred) *nfsclient.Client {
	t.Helper()
	cl, err := nfsclient.Dial(fmt.Sprintf("127.0.0.1:%d", port), cred)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func mount(t testing.TB, cl *nfsclient.Client) []byte {
	t.Helper()
	fh, err := cl.Mount("/share")
	if err != nil {
		t.Fatal(err)
	}
	return fh
}

// wantStatus checks that err is an NFS/MOUNT status error with status st.
func wantStatus(t testing.TB, what string, err error, st uint32) {
	t.Helper()
	var se *nfsclient.StatusError
	if !errors.As(err, &se) || se.Status != st {
		t.Fatalf("%s: got %v, want status %d", what, err, st)
	}
}

func TestPortmapper(t *testing.T) {
	ts := startServer(t, nil, func(c *Config, _ *Share) { c.PortmapAddr = "127.0.0.1:0" })
	var addr net.Addr
	for i := 0; i < 100 && addr == nil; i++ {
		addr = ts.PortmapAddr()
		time.Sleep(10 * time.Millisecond)
	}
	if addr == nil {
		t.Fatal("portmapper not started")
	}
	pport := addr.(*net.TCPAddr).Port
	cl := dial(t, pport, rpc.Cred{})
	for _, tc := range []struct {
		prog, vers uint32
		want       int
	}{
		{100003, 3, ts.Port},
		{100005, 3, ts.Port},
		{100000, 2, pport},
		{100003, 2, 0},
		{100021, 4, 0},
	} {
		got, err := cl.Getport(tc.prog, tc.vers)
		if err != nil || int(got) != tc.want {
			t.Errorf("GETPORT(%d, %d) = %d, %v; want %d", tc.prog, tc.vers, got, err, tc.want)
		}
	}
	maps, err := cl.Dump()
	if err != nil {
		t.Fatal(err)
	}
	found := map[uint32]bool{}
	for _, m := range maps {
		found[m.Prog] = true
	}
	if !found[100003] || !found[100005] || !found[100000] || len(maps) < 4 {
		t.Errorf("DUMP = %+v", maps)
	}
	// UDP: one call per datagram.
	uc, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var args rpc.Encoder
	for _, v := range []uint32{100005, 3, 6, 0} {
		args.Uint32(v)
	}
	msg := rpc.EncodeCall(77, 100000, 2, 3, rpc.Cred{}, args.B)
	uc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := uc.Write(msg[4:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := uc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	xid, body, err := rpc.ParseReply(buf[:n])
	if err != nil || xid != 77 || len(body) != 4 || int(rpc.NewDecoder(body).Uint32()) != ts.Port {
		t.Errorf("UDP GETPORT: xid %d body %x err %v", xid, body, err)
	}
	// libnfs through the portmapper is tested with the real port 111 in
	// TestPortmapperPort111 (opt-in).
}

func TestMountProcedures(t *testing.T) {
	ts := startServer(t, nil)
	cl := dial(t, ts.Port, nfsclient.Unix(1000, 1000))
	// EXPORT lists the share with its client networks.
	body, err := cl.Call(100005, 3, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := rpc.NewDecoder(body)
	if !d.Bool() || d.String(1024) != "/share" || !d.Bool() || d.String(100) != "127.0.0.0/8" {
		t.Fatalf("EXPORT = %x", body)
	}
	// Unknown export, then a good MNT.
	_, err = cl.Mount("/nope")
	wantStatus(t, "MNT /nope", err, 2)
	fh := mount(t, cl)
	if len(fh) != handleLen {
		t.Fatalf("root handle %x", fh)
	}
	if s := ts.Sessions(); len(s) != 1 || s[0].Share != "share" || s[0].Client != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("Sessions = %+v", s)
	}
	body, err = cl.Call(100005, 3, 2, nil) // DUMP
	if err != nil || !strings.Contains(string(body), "/share") {
		t.Fatalf("DUMP = %q, %v", body, err)
	}
	var e rpc.Encoder
	e.String("/share")
	if _, err := cl.Call(100005, 3, 3, e.B); err != nil { // UMNT
		t.Fatal(err)
	}
	if s := ts.Sessions(); len(s) != 0 {
		t.Fatalf("Sessions after UMNT = %+v", s)
	}
	mount(t, cl)
	if _, err := cl.Call(100005, 3, 4, nil); err != nil { // UMNTALL
		t.Fatal(err)
	}
	if s := ts.Sessions(); len(s) != 0 {
		t.Fatalf("Sessions after UMNTALL = %+v", s)
	}
	// MNT advertises AUTH_UNIX and AUTH_NULL.
	e = rpc.Encoder{}
	e.String("/share")
	body, err = cl.Call(100005, 3, 1, e.B)
	if err != nil {
		t.Fatal(err)
	}
	d = rpc.NewDecoder(body)
	d.Uint32()
	d.Opaque(64)
	if n := d.Uint32(); n != 2 || d.Uint32() != rpc.AuthUnix || d.Uint32() != rpc.AuthNull {
		t.Fatalf("auth flavours in %x", body)
	}
	// Unsupported versions and programs.
	if _, err := cl.Call(100005, 1, 0, nil); err == nil {
		t.Error("MOUNT v1 accepted")
	}
	if _, err := cl.Call(100227, 3, 0, nil); err == nil {
		t.Error("NFS_ACL accepted")
	}
	if _, err := cl.Call(100003, 3, 99, nil); err == nil {
		t.Error("procedure 99 accepted")
	}
	// AUTH_NULL works; other flavours are refused.
	cn := dial(t, ts.Port, rpc.Cred{})
	if _, err := cn.Getattr(fh); err != nil {
		t.Errorf("GETATTR with AUTH_NULL: %v", err)
	}
	cg := dial(t, ts.Port, rpc.Cred{Flavor: 6})
	if _, err := cg.Getattr(fh); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Errorf("GETATTR with RPCSEC_GSS: %v", err)
	}
}

func TestClientAllowlist(t *testing.T) {
	ts := startServer(t, nil, func(_ *Config, s *Share) {
		s.AllowedClients = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}
	})
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	_, err := cl.Mount("/share")
	wantStatus(t, "MNT from 127.0.0.1", err, 13) // MNT3ERR_ACCES
	// A handle obtained elsewhere does not help.
	_, err = cl.Getattr(encodeHandle(shareID("share"), rootID))
	wantStatus(t, "GETATTR from 127.0.0.1", err, 13) // NFS3ERR_ACCES
	if out, err := run(t, "nfs-ls", ts.url("")); err == nil {
		t.Errorf("nfs-ls of a share that refuses 127.0.0.1 succeeded: %s", out)
	}
}

func TestAddShareValidation(t *testing.T) {
	ts := startServer(t, nil)
	good := Share{Name: "x", Store: ts.Store, AllowedClients: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}
	many := make([]netip.Prefix, 101)
	for i := range many {
		many[i] = netip.MustParsePrefix("10.0.0.0/8")
	}
	for _, tc := range []struct {
		name string
		mod  func(*Share)
		want error
	}{
		{"ok", func(*Share) {}, nil},
		{"duplicate", func(*Share) {}, ErrShareExists},
		{"bad name", func(s *Share) { s.Name = "a/b" }, ErrInvalidShare},
		{"no store", func(s *Share) { s.Name, s.Store = "y", nil }, ErrInvalidShare},
		{"no clients", func(s *Share) { s.Name, s.AllowedClients = "y", nil }, ErrInvalidShare},
		{"101 clients", func(s *Share) { s.Name, s.AllowedClients = "y", many }, ErrInvalidShare},
		{"bad squash", func(s *Share) { s.Name, s.Squash = "y", 7 }, ErrInvalidShare},
	} {
		sh := good
		tc.mod(&sh)
		if err := ts.AddShare(sh); !errors.Is(err, tc.want) {
			t.Errorf("%s: AddShare = %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := ts.RemoveShare("x"); err != nil {
		t.Fatal(err)
	}
	if err := ts.RemoveShare("x"); !errors.Is(err, ErrNoShare) {
		t.Errorf("second RemoveShare = %v", err)
	}
}
