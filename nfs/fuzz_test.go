package nfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// fuzzServer is a Server with one share on an embedded store, for calling
// the dispatcher directly.
func fuzzServer(f *testing.F) *Server {
	store, err := objstore.OpenEmbedded(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	s, err := NewServer(Config{StateDir: dir + "/s", CacheDir: dir + "/c", SettleTime: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.AddShare(Share{Name: "share", Store: store, Squash: NoSquash,
		AllowedClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

var fuzzClient = netip.MustParseAddr("127.0.0.1")

// checkReply fails unless reply is one well-formed record.
func checkReply(t *testing.T, reply []byte) {
	t.Helper()
	if len(reply) < 4 {
		t.Fatalf("reply of %d bytes", len(reply))
	}
	if _, _, err := rpc.ParseReply(reply[4:]); err != nil && len(reply) < 28 {
		t.Fatalf("malformed reply %x", reply)
	}
}

// flatten returns a reply's bytes with its READ data (fileTail) sent
// after them, and checks that the record mark counts them all.
func flatten(t testing.TB, rep reply) []byte {
	t.Helper()
	if rep.tail == nil {
		return rep.b
	}
	var buf bytes.Buffer
	buf.Write(rep.b)
	if err := sendTail(&buf, rep.tail); err != nil {
		t.Fatalf("sending READ data: %v", err)
	}
	b := buf.Bytes()
	if mark := binary.BigEndian.Uint32(b) &^ (1 << 31); int(mark) != len(b)-4 {
		t.Fatalf("record mark says %d bytes, %d sent", mark, len(b)-4)
	}
	return b
}

func FuzzPortmapArgs(f *testing.F) {
	s := fuzzServer(f)
	f.Add(uint32(pmapGetport), []byte{0, 1, 0x86, 0xa3, 0, 0, 0, 3, 0, 0, 0, 6, 0, 0, 0, 0})
	f.Add(uint32(pmapDump), []byte{})
	f.Add(uint32(pmapSet), []byte{0, 0, 0, 1})
	f.Add(uint32(5), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, proc uint32, args []byte) {
		if m, err := decodeMapping(args); err == nil && len(args) < 16 {
			t.Fatalf("mapping %+v decoded from %d bytes", m, len(args))
		}
		checkReply(t, s.portmapCall(rpc.Call{XID: 1, Prog: progPortmap, Vers: versPortmap, Proc: proc, Args: args}))
	})
}

func FuzzMountArgs(f *testing.F) {
	s := fuzzServer(f)
	var e rpc.Encoder
	e.String("/share")
	f.Add(uint32(mountMnt), e.B)
	f.Add(uint32(mountUmnt), e.B)
	f.Add(uint32(mountExport), []byte{})
	f.Add(uint32(mountMnt), []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, proc uint32, args []byte) {
		if p, err := decodeDirpath(args); err == nil && len(p) > maxPathLen {
			t.Fatalf("dirpath of %d bytes accepted", len(p))
		}
		checkReply(t, s.mountCall(fuzzClient, rpc.Call{XID: 1, Prog: progMount, Vers: versMount, Proc: proc,
			Cred: rpc.Cred{Flavor: rpc.AuthUnix}, Args: args}))
	})
}

// FuzzNFSArgs feeds arbitrary arguments to every NFSv3 procedure, with the
// share's root handle in front when withRoot is set.
func FuzzNFSArgs(f *testing.F) {
	s := fuzzServer(f)
	root := encodeHandle(shareID("share"), rootID)
	name := func(n string) []byte {
		var e rpc.Encoder
		e.String(n)
		return e.B
	}
	f.Add(uint32(procGetattr), true, []byte{})
	f.Add(uint32(procLookup), true, name("x"))
	f.Add(uint32(procCreate), true, append(name("f"), 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0xa4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(uint32(procWrite), true, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3, 'a', 'b', 'c', 0})
	f.Add(uint32(procReaddirplus), true, make([]byte, 24))
	f.Add(uint32(procSetattr), true, []byte{0, 0, 0, 1, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1})
	f.Add(uint32(procRename), true, append(append(name("a"), 0, 0, 0, 16), append(root, name("b")...)...))
	f.Add(uint32(procGetattr), false, []byte{0, 0, 0, 16, 1, 2, 3})
	f.Fuzz(func(t *testing.T, proc uint32, withRoot bool, args []byte) {
		if len(args) > 4096 {
			return
		}
		if withRoot {
			var e rpc.Encoder
			e.Opaque(root)
			args = append(e.B, args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		checkReply(t, flatten(t, s.dispatch(ctx, fuzzClient, rpc.Call{XID: 1, Prog: progNFS, Vers: versNFS, Proc: proc % 24,
			Cred: rpc.Cred{Flavor: rpc.AuthUnix}, Args: args})))
	})
}
