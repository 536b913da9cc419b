package rpc

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestXDRRoundTrip(t *testing.T) {
	var e Encoder
	e.Uint32(7)
	e.Uint64(1 << 40)
	e.Bool(true)
	e.String("abcde")
	e.Opaque([]byte{1, 2, 3})
	e.Fixed([]byte{9, 9, 9, 9, 9})
	if len(e.B)%4 != 0 {
		t.Fatalf("encoding not padded: %d bytes", len(e.B))
	}
	d := NewDecoder(e.B)
	if d.Uint32() != 7 || d.Uint64() != 1<<40 || !d.Bool() || d.String(10) != "abcde" ||
		!bytes.Equal(d.Opaque(10), []byte{1, 2, 3}) || !bytes.Equal(d.Fixed(5), []byte{9, 9, 9, 9, 9}) || d.Err() != nil || len(d.Remaining()) != 0 {
		t.Fatal("round trip failed")
	}
}

func TestDecoderErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		read func(d *Decoder)
		want error
	}{
		{"short uint32", []byte{1, 2}, func(d *Decoder) { d.Uint32() }, ErrShort},
		{"short uint64", []byte{1, 2, 3, 4}, func(d *Decoder) { d.Uint64() }, ErrShort},
		{"opaque over limit", []byte{0, 0, 1, 0}, func(d *Decoder) { d.Opaque(255) }, ErrTooLong},
		{"opaque past end", []byte{0, 0, 0, 8, 1, 2, 3, 4}, func(d *Decoder) { d.Opaque(100) }, ErrShort},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}, func(d *Decoder) { d.Opaque(1 << 30) }, ErrTooLong},
		{"missing padding", []byte{0, 0, 0, 1, 'a'}, func(d *Decoder) { d.String(10) }, ErrShort},
		{"sticky", []byte{1}, func(d *Decoder) { d.Uint32(); d.Bool() }, ErrShort},
	} {
		d := NewDecoder(tc.in)
		tc.read(d)
		if !errors.Is(d.Err(), tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, d.Err(), tc.want)
		}
	}
}

func TestReadRecord(t *testing.T) {
	frag := func(last bool, b ...byte) []byte {
		n := uint32(len(b))
		if last {
			n |= lastFragment
		}
		return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, b...)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
		max  int
		want []byte
		err  error
	}{
		{"one fragment", frag(true, 1, 2, 3, 4), 100, []byte{1, 2, 3, 4}, nil},
		{"three fragments", join(frag(false, 1), frag(false), frag(true, 2, 3)), 100, []byte{1, 2, 3}, nil},
		{"empty input", nil, 100, nil, io.EOF},
		{"cut header", []byte{0x80, 0}, 100, nil, io.ErrUnexpectedEOF},
		{"cut body", frag(true, 1, 2, 3)[:5], 100, nil, io.ErrUnexpectedEOF},
		{"cut between fragments", frag(false, 1), 100, nil, io.ErrUnexpectedEOF},
		{"too large", frag(true, make([]byte, 101)...), 100, nil, ErrRecordTooLarge},
		{"too large in total", join(frag(false, make([]byte, 60)...), frag(true, make([]byte, 60)...)), 100, nil, ErrRecordTooLarge},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}, 1 << 20, nil, ErrRecordTooLarge},
	} {
		got, err := ReadRecord(bytes.NewReader(tc.in), tc.max, nil)
		if !errors.Is(err, tc.err) || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %v, %v; want %v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestCallRoundTrip(t *testing.T) {
	for _, cred := range []Cred{
		{Flavor: AuthNull},
		{Flavor: AuthUnix, Machine: "host", UID: 1000, GID: 100, GIDs: []uint32{4, 24, 27}},
	} {
		msg := EncodeCall(42, 100003, 3, 6, cred, []byte{0, 0, 0, 9})
		rec, err := ReadRecord(bytes.NewReader(msg), 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseCall(rec)
		if err != nil {
			t.Fatal(err)
		}
		if c.XID != 42 || c.Prog != 100003 || c.Vers != 3 || c.Proc != 6 || c.Cred.Flavor != cred.Flavor ||
			c.Cred.UID != cred.UID || c.Cred.Machine != cred.Machine || len(c.Cred.GIDs) != len(cred.GIDs) || !bytes.Equal(c.Args, []byte{0, 0, 0, 9}) {
			t.Fatalf("parsed %+v from %+v", c, cred)
		}
	}
	// Too many groups and a wrong RPC version are reported with the XID.
	bad := EncodeCall(7, 1, 1, 1, Cred{Flavor: AuthUnix, GIDs: make([]uint32, 17)}, nil)
	if c, err := ParseCall(bad[4:]); !errors.Is(err, ErrBadCred) || c.XID != 7 {
		t.Errorf("17 groups: %v", err)
	}
	v3 := EncodeCall(8, 1, 1, 1, Cred{}, nil)
	v3[4+11] = 3
	if c, err := ParseCall(v3[4:]); !errors.Is(err, ErrRPCVersion) || c.XID != 8 {
		t.Errorf("rpc version 3: %v", err)
	}
}

func TestReplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		ok   bool
	}{
		{"success", AcceptedReply(1, Success, []byte{0, 0, 0, 5}), true},
		{"proc unavail", AcceptedReply(1, ProcUnavail, nil), false},
		{"mismatch", MismatchReply(1, 3, 3), false},
		{"rpc mismatch", RPCMismatchReply(1), false},
		{"auth error", AuthErrorReply(1, AuthTooWeak), false},
	} {
		rec, err := ReadRecord(bytes.NewReader(tc.msg), 1<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		xid, _, err := ParseReply(rec)
		if xid != 1 || (err == nil) != tc.ok {
			t.Errorf("%s: xid %d err %v", tc.name, xid, err)
		}
	}
}
