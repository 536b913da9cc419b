package vtl

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// testNexus is the nexus the direct-execution tests use.
var testNexus = scsi.Nexus{InitiatorName: "iqn.2026-11.io.sluicegw:test", TargetName: "t"}

// openTestLibrary opens a small library on an embedded store.
func openTestLibrary(t testing.TB, store objstore.Store, mod func(*Config)) *Library {
	t.Helper()
	cfg := Config{
		Store: store, Prefix: "vtl/", Gateway: "gw1", Drives: 2, Slots: 8, IESlots: 2,
		MinTapeSize: 1 << 20, SegmentSize: 1 << 20, MaxBlockSize: 256 << 10,
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func embeddedStore(t testing.TB) objstore.Store {
	t.Helper()
	s, err := objstore.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// result is the outcome of one directly executed command.
type result struct {
	data []byte
	err  error
	se   *scsi.SenseError
}

// exec runs a CDB on a logical unit, clearing the first unit attention.
func exec(t testing.TB, lu scsi.LogicalUnit, cdb, out []byte, inLen int) result {
	t.Helper()
	for try := 0; ; try++ {
		cmd := &scsi.Command{Nexus: testNexus, CDB: cdb, DataOut: out, DataIn: make([]byte, inLen)}
		n, err := lu.Execute(context.Background(), cmd)
		r := result{data: cmd.DataIn[:n], err: err}
		if se, ok := err.(*scsi.SenseError); ok {
			r.se = se
			if se.Key == scsi.SenseUnitAttention && try < 4 {
				continue
			}
		}
		return r
	}
}

// mustOK fails unless the command returned GOOD.
func (r result) mustOK(t testing.TB, what string) result {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v", what, r.err)
	}
	return r
}

// senseIs checks a CHECK CONDITION.
func (r result) senseIs(t testing.TB, what string, key byte, code scsi.ASC) *scsi.SenseError {
	t.Helper()
	if r.se == nil || r.se.Key != key || r.se.Code != code {
		t.Fatalf("%s: got %v, want key %#x asc %#04x", what, r.err, key, code)
	}
	return r.se
}

func cdbWrite(n int, fixed bool) []byte {
	c := []byte{0x0a, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}
	if fixed {
		c[1] = 1
	}
	return c
}

func cdbRead(n int, fixed, sili bool) []byte {
	c := []byte{0x08, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}
	if fixed {
		c[1] |= 1
	}
	if sili {
		c[1] |= 2
	}
	return c
}

func cdbWFM(n int) []byte { return []byte{0x10, 0, byte(n >> 16), byte(n >> 8), byte(n), 0} }

func cdbSpace(code byte, n int) []byte {
	return []byte{0x11, code, byte(n >> 16), byte(n >> 8), byte(n), 0}
}

func cdbLocate(pos uint64) []byte {
	c := make([]byte, 16)
	c[0] = 0x92
	binary.BigEndian.PutUint64(c[4:], pos)
	return c
}

func cdbMove(src, dst uint16) []byte {
	c := make([]byte, 12)
	c[0] = 0xa5
	binary.BigEndian.PutUint16(c[4:], src)
	binary.BigEndian.PutUint16(c[6:], dst)
	return c
}

func cdbReadPosLong() []byte { return []byte{0x34, 0x06, 0, 0, 0, 0, 0, 0, 0, 0} }

// record returns deterministic test data for record i.
func record(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j>>9)
	}
	return b
}

func posOf(t testing.TB, r result) uint64 {
	t.Helper()
	if len(r.data) < 16 {
		t.Fatalf("READ POSITION: %d bytes, %v", len(r.data), r.err)
	}
	return binary.BigEndian.Uint64(r.data[8:])
}

func eq(a, b []byte) bool { return bytes.Equal(a, b) }

// mustCheck fails the test when the library's consistency check finds a
// problem.
func mustCheck(t testing.TB, l *Library) {
	t.Helper()
	problems, err := l.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error("check:", p)
	}
}
