package scsi_test

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
	"github.com/sluicegw/sluice/iscsi/scsi/scsitest"
)

// harness drives one Disk over a MemDevice.
type harness struct {
	t   *testing.T
	d   *scsi.Disk
	dev *scsitest.MemDevice
}

var (
	nexusA = scsi.Nexus{InitiatorName: "iqn.2026-01.test:a", ISID: [6]byte{0x80, 0, 0, 0, 0, 1}, TargetName: "iqn.2026-01.test:t", TPGT: 1}
	nexusB = scsi.Nexus{InitiatorName: "iqn.2026-01.test:b", ISID: [6]byte{0x80, 0, 0, 0, 0, 2}, TargetName: "iqn.2026-01.test:t", TPGT: 1}
)

const testBlocks = 2048

func newHarness(t *testing.T, opts scsi.DiskOptions) *harness {
	t.Helper()
	bs := opts.BlockSize
	if bs == 0 {
		bs = 512
	}
	dev := scsitest.NewMemDevice(int64(testBlocks * bs))
	d, err := scsi.NewDisk(dev, opts)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, d: d, dev: dev}
	h.clearUA(nexusA)
	h.clearUA(nexusB)
	return h
}

// sub returns h reporting failures to t (for subtests).
func (h *harness) sub(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// clearUA runs TEST UNIT READY until it succeeds.
func (h *harness) clearUA(n scsi.Nexus) {
	h.t.Helper()
	for i := 0; i < 10; i++ {
		if st, _, _ := h.exec(n, []byte{0, 0, 0, 0, 0, 0}, nil, 0); st == scsi.StatusGood {
			return
		}
	}
	h.t.Fatal("unit attention does not clear")
}

// exec runs cdb and returns status, sense and data-in.
func (h *harness) exec(n scsi.Nexus, cdb, out []byte, inLen int) (byte, []byte, []byte) {
	h.t.Helper()
	cmd := &scsi.Command{Nexus: n, CDB: cdb, DataOut: out, DataIn: make([]byte, inLen)}
	k, err := h.d.Execute(context.Background(), cmd)
	if k < 0 || k > inLen {
		h.t.Fatalf("Execute(%x) returned %d bytes of %d", cdb, k, inLen)
	}
	st, sense := scsi.Status(err)
	return st, sense, cmd.DataIn[:k]
}

// want describes an expected outcome: a status, and for CHECK CONDITION a
// sense key and ASC/ASCQ.
type want struct {
	status byte
	key    byte
	asc    scsi.ASC
}

var (
	good        = want{status: scsi.StatusGood}
	conflict    = want{status: scsi.StatusReservationConflict}
	badOpcode   = want{scsi.StatusCheckCondition, scsi.SenseIllegalRequest, scsi.ASCInvalidOpcode}
	badField    = want{scsi.StatusCheckCondition, scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB}
	badParam    = want{scsi.StatusCheckCondition, scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParamList}
	badParamLen = want{scsi.StatusCheckCondition, scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError}
	outOfRange  = want{scsi.StatusCheckCondition, scsi.SenseIllegalRequest, scsi.ASCLBAOutOfRange}
	protected   = want{scsi.StatusCheckCondition, scsi.SenseDataProtect, scsi.ASCWriteProtected}
	miscompare  = want{scsi.StatusCheckCondition, scsi.SenseMiscompare, scsi.ASCMiscompareDuringVerify}
)

func ua(code scsi.ASC) want {
	return want{scsi.StatusCheckCondition, scsi.SenseUnitAttention, code}
}

// check compares an outcome with w.
func (h *harness) check(name string, st byte, sense []byte, w want) {
	h.t.Helper()
	if st != w.status {
		h.t.Fatalf("%s: status %#x (sense %x), want %#x", name, st, sense, w.status)
	}
	if st != scsi.StatusCheckCondition {
		return
	}
	if len(sense) < 14 {
		h.t.Fatalf("%s: short sense %x", name, sense)
	}
	key, asc := sense[2]&0x0f, scsi.ASC(sense[12])<<8|scsi.ASC(sense[13])
	if key != w.key || asc != w.asc {
		h.t.Fatalf("%s: sense key %#x asc %04x, want %#x %04x", name, key, asc, w.key, w.asc)
	}
}

// do runs cdb as nexus A and checks the outcome, returning data-in.
func (h *harness) do(name string, cdb, out []byte, inLen int, w want) []byte {
	h.t.Helper()
	st, sense, in := h.exec(nexusA, cdb, out, inLen)
	h.check(name, st, sense, w)
	return in
}

func cdb10(op byte, flags byte, lba uint32, n uint16) []byte {
	c := make([]byte, 10)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func cdb12(op byte, flags byte, lba uint32, n uint32) []byte {
	c := make([]byte, 12)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint32(c[6:], n)
	return c
}

func cdb16(op byte, flags byte, lba uint64, n uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func fill(n int, b byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = b
	}
	return p
}
