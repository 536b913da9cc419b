package iscsi

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/iscsi/iscsitest"
)

// expectClosed waits for the server to close nc.
func expectClosed(t *testing.T, nc net.Conn, within time.Duration) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("server kept the bad connection open for %v", within)
		}
		return
	}
}

func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func loginPDU(dataLen int) []byte {
	p := &iscsitest.PDU{}
	p.BHS[0] = 0x43
	p.BHS[1] = 0x87
	p.Data = iscsitest.EncodeText("InitiatorName", "iqn.2026-11.io.example:bad", "TargetName", testTarget)
	b := p.Encode(false, false)
	if dataLen > 0 {
		b[5], b[6], b[7] = byte(dataLen>>16), byte(dataLen>>8), byte(dataLen)
	}
	return b
}

// TestHostile sends truncated, oversized and nonsense PDUs, floods of
// logins, bad digests and data for unknown tasks, and checks that the
// server closes only the offending connection while a good session keeps
// working.
func TestHostile(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: Config{LoginTimeout: 500 * time.Millisecond, IOTimeout: time.Second, NopInterval: -1}})
	good := ts.login(t, iscsitest.Options{ISID: [6]byte{0x80, 1, 2, 3, 4, 5}})
	defer good.Logout(tctx(t))
	stillGood := func(t *testing.T) {
		t.Helper()
		r, err := good.Command(tctx(t), 0, read10(0, 8), nil, 4096)
		if err != nil || r.Status != 0 || len(r.Data) != 4096 {
			t.Fatalf("good session broken: %v %+v", err, r)
		}
	}
	withLogin := func(t *testing.T, o iscsitest.Options) *iscsitest.Client {
		c, err := ts.dialLogin(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"truncated BHS then close", func(t *testing.T) {
			nc := rawDial(t, ts.addr)
			nc.Write(loginPDU(0)[:20])
			nc.Close()
		}},
		{"truncated BHS then stall", func(t *testing.T) {
			nc := rawDial(t, ts.addr)
			nc.Write(loginPDU(0)[:20])
			expectClosed(t, nc, 3*time.Second)
		}},
		{"silent connection", func(t *testing.T) {
			expectClosed(t, rawDial(t, ts.addr), 3*time.Second)
		}},
		{"oversized login segment", func(t *testing.T) {
			nc := rawDial(t, ts.addr)
			nc.Write(loginPDU(1 << 23)[:48])
			expectClosed(t, nc, 3*time.Second)
		}},
		{"nonsense", func(t *testing.T) {
			nc := rawDial(t, ts.addr)
			junk := make([]byte, 4096)
			for i := range junk {
				junk[i] = byte(i*31 + 7)
			}
			nc.Write(junk)
			expectClosed(t, nc, 3*time.Second)
		}},
		{"SCSI command before login", func(t *testing.T) {
			nc := rawDial(t, ts.addr)
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x01
			p.BHS[1] = 0x80
			nc.Write(p.Encode(false, false))
			resp, err := iscsitest.ReadPDU(nc, false, false)
			if err != nil || resp.Opcode() != iscsitest.OpLoginResp || resp.BHS[36] != 2 || resp.BHS[37] != 0x0b {
				t.Fatalf("got %v %+v, want login reject 0x020b", err, resp)
			}
			expectClosed(t, nc, 3*time.Second)
		}},
		{"login flood", func(t *testing.T) {
			var wg sync.WaitGroup
			for i := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nc, err := net.Dial("tcp", ts.addr)
					if err != nil {
						return
					}
					defer nc.Close()
					if i%2 == 0 {
						nc.Write(loginPDU(0)[:48])
					}
					_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
					io.Copy(io.Discard, nc)
				}()
			}
			stillGood(t)
			wg.Wait()
		}},
		{"bad header digest", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{HeaderDigest: true, DataDigest: true})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x40
			p.BHS[1] = 0x80
			p.SetU32(16, 7)
			b := p.Encode(true, true)
			b[48] ^= 0xff
			c.SendRaw(b)
			expectClosed(t, c.Conn(), 3*time.Second)
		}},
		{"bad data digest", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{HeaderDigest: true, DataDigest: true})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x40
			p.BHS[1] = 0x80
			p.SetU32(16, 7)
			p.Data = []byte("abcd")
			b := p.Encode(true, true)
			b[len(b)-1] ^= 0xff
			c.SendRaw(b)
			expectClosed(t, c.Conn(), 3*time.Second)
		}},
		{"data-out for unknown task", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x05
			p.BHS[1] = 0x80
			p.SetU32(16, 0xdead)
			p.SetU32(20, 0x1234)
			p.Data = make([]byte, 1024)
			c.SendRaw(p.Encode(false, false))
			if err := c.Nop(tctx(t), []byte("still there")); err != nil {
				t.Fatalf("connection unusable after stray Data-Out: %v", err)
			}
		}},
		{"unknown opcode", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x1c
			p.BHS[1] = 0x80
			c.SendRaw(p.Encode(false, false))
			if err := c.Nop(tctx(t), nil); err != nil {
				t.Fatalf("connection unusable after unknown opcode: %v", err)
			}
		}},
		{"immediate data without W bit", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x41
			p.BHS[1] = 0x80
			p.SetU32(16, 0x99)
			p.Data = make([]byte, 512)
			c.SendRaw(p.Encode(false, false))
			if err := c.Nop(tctx(t), nil); err != nil {
				t.Fatalf("connection unusable after bad command: %v", err)
			}
		}},
		{"huge transfer length", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x41
			p.BHS[1] = 0xc0
			p.SetU32(16, 0x77)
			p.SetU32(20, 0xffffffff)
			copy(p.BHS[32:], read10(0, 1))
			c.SendRaw(p.Encode(false, false))
			if err := c.Nop(tctx(t), nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"write never sends its data", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x01
			p.BHS[1] = 0xa0
			p.SetU32(16, 0x55)
			p.SetU32(20, 1<<20)
			copy(p.BHS[32:], write10(0, 2048))
			c.SendRaw(p.Encode(false, false))
			c.Close()
		}},
		{"bad AHS", func(t *testing.T) {
			c := withLogin(t, iscsitest.Options{})
			p := &iscsitest.PDU{}
			p.BHS[0] = 0x41
			p.BHS[1] = 0x80
			p.SetU32(16, 0x66)
			p.AHS = make([]byte, 8)
			binary.BigEndian.PutUint16(p.AHS, 200)
			c.SendRaw(p.Encode(false, false))
			if err := c.Nop(tctx(t), nil); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t)
			stillGood(t)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for len(ts.srv.Sessions()) > 1 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(ts.srv.Sessions()); n != 1 {
		t.Fatalf("%d sessions left, want only the good one", n)
	}
}
