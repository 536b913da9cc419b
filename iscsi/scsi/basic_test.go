package scsi_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func TestPowerOnUnitAttention(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	n := scsi.Nexus{InitiatorName: "iqn.new"}
	tur := []byte{0, 0, 0, 0, 0, 0}
	// INQUIRY is neither blocked nor clears the condition.
	st, sense, _ := h.exec(n, []byte{0x12, 0, 0, 0, 96, 0}, nil, 96)
	h.check("inquiry", st, sense, good)
	st, sense, _ = h.exec(n, tur, nil, 0)
	h.check("tur 1", st, sense, ua(scsi.ASCPowerOnResetOccurred))
	st, sense, _ = h.exec(n, tur, nil, 0)
	h.check("tur 2", st, sense, good)
}

func TestReadWriteRoundTrip(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	tests := []struct {
		name  string
		write []byte
		read  []byte
	}{
		{"10", cdb10(0x2a, 0, 5, 2), cdb10(0x28, 0, 5, 2)},
		{"12", cdb12(0xaa, 0x08, 9, 2), cdb12(0xa8, 0, 9, 2)},
		{"16", cdb16(0x8a, 0x08, 100, 2), cdb16(0x88, 0x10, 100, 2)},
		{"6", []byte{0x0a, 0, 0, 20, 2, 0}, []byte{0x08, 0, 0, 20, 2, 0}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := fill(1024, byte(i+1))
			h.do("write", tt.write, data, 0, good)
			got := h.do("read", tt.read, nil, 1024, good)
			if !bytes.Equal(got, data) {
				t.Fatalf("read back %x...", got[:8])
			}
		})
	}
}

func TestReadCapacity(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	in := h.do("rc10", cdb10(0x25, 0, 0, 0), nil, 8, good)
	if got := binary.BigEndian.Uint32(in); got != testBlocks-1 {
		t.Fatalf("last LBA %d", got)
	}
	in = h.do("rc16", cdb16(0x9e, 0x10, 0, 32), nil, 32, good)
	if got := binary.BigEndian.Uint64(in); got != testBlocks-1 {
		t.Fatalf("last LBA %d", got)
	}
	if in[14]&0x80 == 0 {
		t.Fatal("LBPME not set")
	}
}
