package rpc

import (
	"bytes"
	"testing"
)

func FuzzReadRecord(f *testing.F) {
	f.Add([]byte{0x80, 0, 0, 4, 1, 2, 3, 4})
	f.Add([]byte{0, 0, 0, 1, 9, 0x80, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(EncodeCall(1, 100003, 3, 0, Cred{}, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 1 << 16
		rec, err := ReadRecord(bytes.NewReader(in), max, nil)
		if err != nil {
			return
		}
		if len(rec) > max {
			t.Fatalf("record of %d bytes over the %d limit", len(rec), max)
		}
		// A record re-framed as one fragment reads back the same.
		framed := FrameRecord(append(make([]byte, 4), rec...))
		again, err := ReadRecord(bytes.NewReader(framed), max, nil)
		if err != nil || !bytes.Equal(again, rec) {
			t.Fatalf("re-framed record differs: %v", err)
		}
	})
}

func FuzzParseCall(f *testing.F) {
	for _, c := range []Cred{{}, {Flavor: AuthUnix, Machine: "m", UID: 1, GID: 2, GIDs: []uint32{3}}, {Flavor: 6}} {
		f.Add(EncodeCall(9, 100005, 3, 1, c, []byte{0, 0, 0, 6, '/', 's', 'h', 'a', 'r', 'e', 0, 0})[4:])
	}
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseCall(in)
		if err != nil {
			return
		}
		if c.Cred.Flavor != AuthNull && c.Cred.Flavor != AuthUnix {
			return
		}
		// What decodes re-encodes to a call that decodes the same.
		again, err := ParseCall(EncodeCall(c.XID, c.Prog, c.Vers, c.Proc, c.Cred, c.Args)[4:])
		if err != nil || again.XID != c.XID || again.Prog != c.Prog || again.Proc != c.Proc ||
			again.Cred.UID != c.Cred.UID || again.Cred.Machine != c.Cred.Machine || !bytes.Equal(again.Args, c.Args) {
			t.Fatalf("round trip: %+v -> %+v (%v)", c, again, err)
		}
	})
}

func FuzzParseCred(f *testing.F) {
	var e Encoder
	e.Uint32(0)
	e.String("host")
	e.Uint32(1000)
	e.Uint32(100)
	e.Uint32(2)
	e.Uint32(4)
	e.Uint32(24)
	f.Add(uint32(AuthUnix), e.B)
	f.Add(uint32(AuthNull), []byte{})
	f.Add(uint32(AuthUnix), []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, flavor uint32, body []byte) {
		c, err := ParseCred(flavor, body)
		if err == nil && len(c.GIDs) > maxGids {
			t.Fatalf("%d groups accepted", len(c.GIDs))
		}
		if err == nil && len(c.Machine) > maxMachineName {
			t.Fatalf("machine name of %d bytes accepted", len(c.Machine))
		}
	})
}
