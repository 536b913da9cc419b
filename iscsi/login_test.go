package iscsi

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/sluicegw/sluice/iscsi/iscsitest"
)

// loginReq builds a login request PDU.
func loginReq(flags byte, tsih uint16, versionMin byte, kv ...string) *iscsitest.PDU {
	p := &iscsitest.PDU{}
	p.BHS[0] = 0x43
	p.BHS[1] = flags
	p.BHS[3] = versionMin
	p.BHS[8] = 0x80
	binary.BigEndian.PutUint16(p.BHS[14:], tsih)
	p.SetU32(16, 1)
	p.Data = iscsitest.EncodeText(kv...)
	return p
}

func exchange(t *testing.T, nc net.Conn, p *iscsitest.PDU) *iscsitest.PDU {
	t.Helper()
	if _, err := nc.Write(p.Encode(false, false)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	r, err := iscsitest.ReadPDU(nc, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLoginStatus(t *testing.T) {
	ts := startServer(t, serverOpts{})
	ini := "iqn.2026-11.io.example:raw"
	tests := []struct {
		name          string
		pdu           *iscsitest.PDU
		class, detail byte
	}{
		{"security straight to full feature", loginReq(0x83, 0, 0, "InitiatorName", ini, "TargetName", testTarget, "AuthMethod", "None"), 0, 0},
		{"operational only", loginReq(0x87, 0, 0, "InitiatorName", ini, "TargetName", testTarget), 0, 0},
		{"unsupported version", loginReq(0x87, 0, 1, "InitiatorName", ini, "TargetName", testTarget), 2, 5},
		{"missing InitiatorName", loginReq(0x87, 0, 0, "TargetName", testTarget), 2, 7},
		{"missing TargetName", loginReq(0x87, 0, 0, "InitiatorName", ini), 2, 7},
		{"bad session type", loginReq(0x87, 0, 0, "InitiatorName", ini, "SessionType", "Bogus"), 2, 9},
		{"unknown session", loginReq(0x87, 7, 0, "InitiatorName", ini, "TargetName", testTarget), 2, 0x0a},
		{"unknown target", loginReq(0x87, 0, 0, "InitiatorName", ini, "TargetName", "iqn.2026-11.x:none"), 2, 3},
		{"bad text", badText(), 2, 0},
		{"bad next stage", loginReq(0x86, 0, 0, "InitiatorName", ini, "TargetName", testTarget), 2, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := rawDial(t, ts.addr)
			tt.pdu.BHS[13] = byte(i)
			r := exchange(t, nc, tt.pdu)
			if r.Opcode() != iscsitest.OpLoginResp || r.BHS[36] != tt.class || r.BHS[37] != tt.detail {
				t.Fatalf("status 0x%02x%02x, want 0x%02x%02x", r.BHS[36], r.BHS[37], tt.class, tt.detail)
			}
			if tt.class == 0 {
				if r.BHS[1]&0x83 != 0x83 || binary.BigEndian.Uint16(r.BHS[14:]) == 0 {
					t.Fatalf("login did not reach full feature phase: flags %#x", r.BHS[1])
				}
				kv := iscsitest.ParseText(r.Data)
				found := false
				for _, p := range kv {
					found = found || p[0] == "TargetPortalGroupTag" && p[1] == "1"
				}
				if !found {
					t.Fatalf("no TargetPortalGroupTag in %v", kv)
				}
				return
			}
			expectClosed(t, nc, 3*time.Second)
		})
	}
}

func TestLoginContinuation(t *testing.T) {
	ts := startServer(t, serverOpts{})
	nc := rawDial(t, ts.addr)
	// First half of the keys with C set and T clear.
	p := loginReq(0x44, 0, 0, "InitiatorName", "iqn.2026-11.io.example:cont")
	r := exchange(t, nc, p)
	if r.BHS[36] != 0 || r.BHS[1]&0x80 != 0 || len(r.Data) != 0 {
		t.Fatalf("continuation answer: status %#x flags %#x data %q", r.BHS[36], r.BHS[1], r.Data)
	}
	p = loginReq(0x87, 0, 0, "TargetName", testTarget)
	r = exchange(t, nc, p)
	if r.BHS[36] != 0 || r.BHS[1]&0x83 != 0x83 {
		t.Fatalf("final answer: status 0x%02x%02x flags %#x", r.BHS[36], r.BHS[37], r.BHS[1])
	}
}

func badText() *iscsitest.PDU {
	p := loginReq(0x87, 0, 0)
	p.Data = []byte("InitiatorName\x00")
	return p
}
