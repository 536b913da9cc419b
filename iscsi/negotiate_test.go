package iscsi

import (
	"strings"
	"testing"
)

func TestNegotiationRules(t *testing.T) {
	tests := []struct {
		in   string // key=value pairs separated by ';'
		want string // expected answers, same form
		chk  func(p params) bool
	}{
		{"HeaderDigest=CRC32C,None;DataDigest=None,CRC32C", "HeaderDigest=CRC32C;DataDigest=None",
			func(p params) bool { return p.HeaderDigest && !p.DataDigest }},
		{"HeaderDigest=MD5", "HeaderDigest=Reject", func(p params) bool { return !p.HeaderDigest }},
		{"MaxConnections=4", "MaxConnections=1", nil},
		{"InitialR2T=No;ImmediateData=Yes", "InitialR2T=No;ImmediateData=Yes",
			func(p params) bool { return !p.InitialR2T && p.ImmediateData }},
		{"InitialR2T=Yes;ImmediateData=No", "InitialR2T=Yes;ImmediateData=No",
			func(p params) bool { return p.InitialR2T && !p.ImmediateData }},
		{"ImmediateData=maybe", "ImmediateData=Reject", func(p params) bool { return p.ImmediateData }},
		{"MaxBurstLength=16776192;FirstBurstLength=65536", "MaxBurstLength=1048576;FirstBurstLength=65536",
			func(p params) bool { return p.MaxBurstLength == 1<<20 && p.FirstBurstLength == 65536 }},
		{"MaxBurstLength=4096;FirstBurstLength=8192", "MaxBurstLength=4096;FirstBurstLength=8192",
			func(p params) bool { return p.FirstBurstLength == 4096 }},
		{"MaxBurstLength=100", "MaxBurstLength=Reject", func(p params) bool { return p.MaxBurstLength == 262144 }},
		{"MaxRecvDataSegmentLength=0x1000", "MaxRecvDataSegmentLength=262144",
			func(p params) bool { return p.InitiatorMaxRecv == 4096 }},
		{"MaxOutstandingR2T=64", "MaxOutstandingR2T=8", func(p params) bool { return p.MaxOutstandingR2T == 8 }},
		{"DefaultTime2Wait=0;DefaultTime2Retain=20", "DefaultTime2Wait=2;DefaultTime2Retain=0", nil},
		{"ErrorRecoveryLevel=2", "ErrorRecoveryLevel=0", nil},
		{"DataPDUInOrder=No;DataSequenceInOrder=No", "DataPDUInOrder=Yes;DataSequenceInOrder=Yes", nil},
		{"IFMarker=Yes;OFMarker=No", "IFMarker=No;OFMarker=No", nil},
		{"X-com.example.Foo=1;Bogus=2", "X-com.example.Foo=NotUnderstood;Bogus=NotUnderstood", nil},
		{"iSCSIProtocolLevel=2", "iSCSIProtocolLevel=1", nil},
		{"InitiatorAlias=host;TargetAlias=x", "TargetAlias=Irrelevant", nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var kvs []keyValue
			for _, s := range strings.Split(tt.in, ";") {
				k, v, _ := strings.Cut(s, "=")
				kvs = append(kvs, keyValue{k, v})
			}
			n := newNegotiator(defaultLimits())
			var got []string
			for _, kv := range n.negotiate(kvs) {
				got = append(got, kv.Key+"="+kv.Value)
			}
			if g := strings.Join(got, ";"); g != tt.want {
				t.Fatalf("answers %q, want %q", g, tt.want)
			}
			if p := n.finish(); tt.chk != nil && !tt.chk(p) {
				t.Fatalf("result %+v", p)
			}
		})
	}
}

func TestParseText(t *testing.T) {
	tests := []struct {
		in      string
		n       int
		wantErr bool
	}{
		{"a=b\x00c=d\x00", 2, false},
		{"a=b\x00\x00\x00", 1, false},
		{"a=b", 1, false},
		{"a=\x00", 1, false},
		{"a=b\x00a=c\x00", 0, true},
		{"ab\x00", 0, true},
		{"=b\x00", 0, true},
		{"a b=c\x00", 0, true},
		{strings.Repeat("k", 64) + "=v\x00", 0, true},
		{"k=" + strings.Repeat("v", 8193) + "\x00", 0, true},
	}
	for _, tt := range tests {
		kvs, err := parseText([]byte(tt.in))
		if (err != nil) != tt.wantErr || len(kvs) != tt.n {
			t.Errorf("parseText(%.20q) = %d pairs, %v", tt.in, len(kvs), err)
		}
	}
}

func TestCHAPBinary(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"0x0102ff", "\x01\x02\xff", true},
		{"0X0a", "\x0a", true},
		{"0x102", "\x01\x02", true},
		{"0bAQL/", "\x01\x02\xff", true},
		{"0xZZ", "", false},
		{"12", "", false},
		{"0b!!", "", false},
	}
	for _, tt := range tests {
		b, err := decodeCHAPBinary(tt.in)
		if (err == nil) != tt.ok || string(b) != tt.want {
			t.Errorf("decodeCHAPBinary(%q) = %x, %v", tt.in, b, err)
		}
	}
}

func TestCmdWindow(t *testing.T) {
	var w cmdWindow
	w.init(0xfffffffe, 4) // wraps around
	for _, sn := range []uint32{0xfffffffe, 0xffffffff, 0, 1} {
		if !w.accept(sn) {
			t.Fatalf("CmdSN %#x refused", sn)
		}
	}
	if w.accept(2) {
		t.Fatal("CmdSN beyond MaxCmdSN accepted")
	}
	if w.accept(0) {
		t.Fatal("old CmdSN accepted")
	}
	w.complete()
	if exp, maxSN := w.get(); exp != 2 || maxSN != 2 {
		t.Fatalf("window %d..%d", exp, maxSN)
	}
	if !w.accept(2) {
		t.Fatal("CmdSN 2 refused after a completion")
	}
}
