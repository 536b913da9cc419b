package iscsi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sluicegw/sluice/iscsi/iscsitest"
)

// seedPDUs returns well-formed PDUs the fuzzers start from.
func seedPDUs() [][]byte {
	login := &iscsitest.PDU{}
	login.BHS[0] = 0x43
	login.BHS[1] = 0x87
	login.Data = iscsitest.EncodeText("InitiatorName", "iqn.2026-11.io.example:i", "TargetName", testTarget,
		"SessionType", "Normal", "AuthMethod", "None", "HeaderDigest", "CRC32C,None")
	cmd := &iscsitest.PDU{}
	cmd.BHS[0] = 0x01
	cmd.BHS[1] = 0xa1
	cmd.SetU32(20, 512)
	copy(cmd.BHS[32:], write10(0, 1))
	cmd.Data = make([]byte, 512)
	ext := &iscsitest.PDU{}
	ext.BHS[0] = 0x01
	ext.BHS[1] = 0xc1
	ext.AHS = []byte{0, 5, 1, 0, 1, 2, 3, 4}
	nop := &iscsitest.PDU{}
	nop.BHS[0] = 0x40
	nop.BHS[1] = 0x80
	nop.Data = []byte("ping")
	dout := &iscsitest.PDU{}
	dout.BHS[0] = 0x05
	dout.BHS[1] = 0x80
	dout.SetU32(20, 0xffffffff)
	dout.Data = make([]byte, 100)
	return [][]byte{
		login.Encode(false, false), login.Encode(true, true),
		cmd.Encode(false, false), cmd.Encode(true, true),
		ext.Encode(false, false), nop.Encode(false, true), dout.Encode(true, false),
	}
}

// FuzzPDUDecode feeds arbitrary bytes to the PDU reader: it must return
// errors, never panic, and never accept a segment above the limit.
func FuzzPDUDecode(f *testing.F) {
	for _, s := range seedPDUs() {
		f.Add(s, byte(0))
		f.Add(s, byte(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, flags byte) {
		r := newPDUReader(nil, 8192)
		r.r.Reset(bytes.NewReader(b))
		r.headerDigest = flags&1 != 0
		r.dataDigest = flags&2 != 0
		for range 8 {
			if err := r.readHeader(); err != nil {
				return
			}
			n := r.hdr.dataLen()
			if n > r.maxData {
				t.Fatalf("accepted a %d-byte segment above the %d limit", n, r.maxData)
			}
			if len(r.ahs) != r.hdr.ahsLen() {
				t.Fatal("AHS length mismatch")
			}
			buf := make([]byte, n)
			if flags&4 != 0 {
				if err := r.discardData(); err != nil {
					return
				}
				continue
			}
			if err := r.readData(buf); err != nil {
				if errors.Is(err, errDigest) {
					continue
				}
				return
			}
			if r.hdr.opcode() == opLoginReq || r.hdr.opcode() == opTextReq {
				_, _ = parseText(buf)
			}
			var tk task
			_ = tk.parseAHS(r.ahs)
			_ = decodeLUN(r.hdr[8:16])
		}
	})
}

// FuzzTextParse checks that parsing is stable under re-encoding.
func FuzzTextParse(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.x\x00SessionType=Discovery\x00"))
	f.Add([]byte("a=b\x00a=c\x00"))
	f.Add([]byte("CHAP_A=7,5\x00"))
	f.Add([]byte("noequals\x00"))
	f.Add([]byte("=x\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := parseText(b)
		if err != nil {
			return
		}
		again, err := parseText(encodeText(nil, kvs))
		if err != nil {
			t.Fatalf("re-parse failed: %v", err)
		}
		if len(again) != len(kvs) {
			t.Fatalf("re-parse changed %v into %v", kvs, again)
		}
		for i := range kvs {
			if kvs[i] != again[i] {
				t.Fatalf("re-parse changed %v into %v", kvs[i], again[i])
			}
		}
	})
}

// FuzzNegotiate runs operational negotiation and the CHAP exchange on
// arbitrary keys: answers must be well formed and the result within the
// RFC 7143 ranges and the target's limits.
func FuzzNegotiate(f *testing.F) {
	f.Add([]byte("HeaderDigest=CRC32C,None\x00MaxBurstLength=512\x00FirstBurstLength=16777215\x00"))
	f.Add([]byte("MaxRecvDataSegmentLength=0x1000\x00InitialR2T=No\x00ImmediateData=Maybe\x00X-foo=1\x00"))
	f.Add([]byte("MaxOutstandingR2T=0\x00ErrorRecoveryLevel=2\x00DefaultTime2Wait=3601\x00"))
	f.Add([]byte("CHAP_A=5\x00CHAP_N=u\x00CHAP_R=0x00\x00CHAP_I=1\x00CHAP_C=0b AAAA\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := parseText(b)
		if err != nil {
			return
		}
		n := newNegotiator(defaultLimits())
		resp := n.negotiate(kvs)
		for _, kv := range resp {
			if kv.Key == "" || bytes.IndexByte([]byte(kv.Key+kv.Value), 0) >= 0 {
				t.Fatalf("bad answer %q", kv)
			}
		}
		p := n.finish()
		l := defaultLimits()
		if p.FirstBurstLength > p.MaxBurstLength || p.MaxBurstLength > l.MaxBurstLength ||
			p.MaxBurstLength < 512 || p.MaxOutstandingR2T < 1 || p.MaxOutstandingR2T > l.MaxOutstandingR2T ||
			p.InitiatorMaxRecv < 512 || p.InitiatorMaxRecv > 1<<24-1 || p.ErrorRecoveryLevel != 0 {
			t.Fatalf("negotiated out of range: %+v", p)
		}
		keys := make(map[string]string)
		for _, kv := range kvs {
			keys[kv.Key] = kv.Value
		}
		cs := &chapServer{cfg: CHAPConfig{User: "u", Secret: "0123456789ab", MutualUser: "t", MutualSecret: "ba9876543210"}}
		for range 3 {
			if _, done, err := cs.step(keys); err != nil || done {
				if done && cs.state != 2 {
					t.Fatal("done without verification")
				}
				return
			}
		}
	})
}

// FuzzFullFeature logs in properly and then sends arbitrary bytes: the
// server must close or keep the connection, never crash or hang, and keep
// serving new logins.
func FuzzFullFeature(f *testing.F) {
	for _, s := range seedPDUs()[2:] {
		f.Add(s)
	}
	ts := startServer(f, serverOpts{cfg: Config{IOTimeout: time.Second, NopInterval: -1}})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ts.dialLogin(iscsitest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SendRaw(b)
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", ts.addr)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		nc.Close()
	})
}
