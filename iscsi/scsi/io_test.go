package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func TestReadWriteChecks(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{MaxTransferBlocks: 16})
	blk := fill(512, 0xa6)
	tests := []struct {
		name  string
		cdb   []byte
		out   []byte
		inLen int
		want  want
	}{
		{"read10 0 blocks at 0", cdb10(0x28, 0, 0, 0), nil, 0, good},
		{"read10 0 blocks at end", cdb10(0x28, 0, testBlocks, 0), nil, 0, good},
		{"read10 0 blocks past end", cdb10(0x28, 0, testBlocks+1, 0), nil, 0, outOfRange},
		{"read10 last block", cdb10(0x28, 0, testBlocks-1, 1), nil, 512, good},
		{"read10 past end", cdb10(0x28, 0, testBlocks-1, 2), nil, 1024, outOfRange},
		{"read10 lba -1", cdb10(0x28, 0, 0xffffffff, 1), nil, 512, outOfRange},
		{"read16 huge lba", cdb16(0x88, 0, 1<<63, 1), nil, 512, outOfRange},
		{"read16 wrap", cdb16(0x88, 0, ^uint64(0), 2), nil, 1024, outOfRange},
		{"read12 past end", cdb12(0xa8, 0, testBlocks, 1), nil, 512, outOfRange},
		{"read6 past end", []byte{0x08, 0, 0x08, 0x00, 1, 0}, nil, 512, outOfRange},
		{"read10 rdprotect", cdb10(0x28, 0x20, 0, 1), nil, 512, badField},
		{"read16 dpo fua", cdb16(0x88, 0x18, 0, 1), nil, 512, good},
		{"read10 too long", cdb10(0x28, 0, 0, 17), nil, 0, badField},
		{"read10 max", cdb10(0x28, 0, 0, 16), nil, 8192, good},
		{"write10 0 blocks", cdb10(0x2a, 0, 0, 0), nil, 0, good},
		{"write10 0 blocks past end", cdb10(0x2a, 0, testBlocks+1, 0), nil, 0, outOfRange},
		{"write10 past end", cdb10(0x2a, 0, testBlocks, 1), blk, 0, outOfRange},
		{"write16 wrprotect", cdb16(0x8a, 0x40, 0, 1), blk, 0, badField},
		{"write12 fua", cdb12(0xaa, 0x08, 0, 1), blk, 0, good},
		{"naca", []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04}, nil, 512, badField},
		{"short cdb", []byte{0x28, 0, 0}, nil, 0, badField},
		{"unknown opcode", []byte{0xc0, 0, 0, 0, 0, 0}, nil, 0, badOpcode},
		{"sanitize", []byte{0x48, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0, badOpcode},
		{"extended copy", []byte{0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0, badOpcode},
		{"bad service action", cdb16(0x9e, 0x1f, 0, 0), nil, 0, badField},
		{"vendor opcode", []byte{0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0, badOpcode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.sub(t).do(tt.name, tt.cdb, tt.out, tt.inLen, tt.want)
		})
	}
}

func TestResiduals(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	h.do("seed", cdb10(0x2a, 0, 0, 2), fill(1024, 'a'), 0, good)
	// Overflow: the CDB asks for 2 blocks, the initiator sends 600 bytes.
	h.do("short write", cdb10(0x2a, 0, 0, 2), fill(600, 'b'), 0, good)
	got := h.dev.Bytes(0, 1024)
	if !bytes.Equal(got[:600], fill(600, 'b')) || !bytes.Equal(got[600:], fill(424, 'a')) {
		t.Fatal("overflow write did not write exactly the data sent")
	}
	// Underflow: more data than the CDB describes is ignored.
	h.do("long write", cdb10(0x2a, 0, 0, 1), fill(1024, 'c'), 0, good)
	if got := h.dev.Bytes(512, 512); !bytes.Equal(got[88:], fill(424, 'a')) {
		t.Fatal("underflow write wrote past the transfer length")
	}
	// Short read buffer gets what fits.
	in := h.do("short read", cdb10(0x28, 0, 0, 2), nil, 200, good)
	if len(in) != 200 || in[0] != 'c' {
		t.Fatalf("short read returned %d bytes", len(in))
	}
	in = h.do("long read", cdb10(0x28, 0, 0, 1), nil, 10000, good)
	if len(in) != 512 {
		t.Fatalf("long read returned %d bytes", len(in))
	}
}

func TestReadOnly(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{ReadOnly: true})
	blk := fill(512, 1)
	unmap := append([]byte{0, 22, 0, 16, 0, 0, 0, 0}, make([]byte, 16)...)
	unmap[8+11] = 1
	for _, tt := range []struct {
		name string
		cdb  []byte
		out  []byte
	}{
		{"write6", []byte{0x0a, 0, 0, 0, 1, 0}, blk},
		{"write10", cdb10(0x2a, 0, 0, 1), blk},
		{"write12", cdb12(0xaa, 0, 0, 1), blk},
		{"write16", cdb16(0x8a, 0, 0, 1), blk},
		{"writeverify10", cdb10(0x2e, 0, 0, 1), blk},
		{"writesame10", cdb10(0x41, 0, 0, 1), blk},
		{"writesame16", cdb16(0x93, 0, 0, 1), blk},
		{"orwrite", cdb16(0x8b, 0, 0, 1), blk},
		{"caw", cdb16(0x89, 0, 0, 1), append(blk, blk...)},
		{"unmap", []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, unmap},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h.sub(t).do(tt.name, tt.cdb, tt.out, 0, protected)
		})
	}
	h.do("read", cdb10(0x28, 0, 0, 1), nil, 512, good)
	in := h.do("mode sense", []byte{0x1a, 0x08, 0x3f, 0, 255, 0}, nil, 255, good)
	if in[2]&0x80 == 0 {
		t.Fatal("WP not set in mode sense")
	}
}

func TestFUAAndWriteCache(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	blk := fill(512, 1)
	h.do("write", cdb10(0x2a, 0, 0, 1), blk, 0, good)
	h.do("write fua", cdb10(0x2a, 0x08, 0, 1), blk, 0, good)
	if h.dev.FUAWrites() != 1 {
		t.Fatalf("FUA writes %d, want 1", h.dev.FUAWrites())
	}
	// Turn the write cache off: every write becomes FUA.
	ms := h.do("sense caching", []byte{0x1a, 0x08, 0x08, 0, 255, 0}, nil, 255, good)
	page := append([]byte(nil), ms[4:]...)
	page[2] &^= 0x04
	param := append([]byte{0, 0, 0, 0}, page...)
	h.do("select caching", []byte{0x15, 0x10, 0, 0, byte(len(param)), 0}, param, 0, good)
	h.do("write after wce=0", cdb10(0x2a, 0, 0, 1), blk, 0, good)
	if h.dev.FUAWrites() != 2 {
		t.Fatalf("FUA writes %d, want 2", h.dev.FUAWrites())
	}
	h.do("sync10", cdb10(0x35, 0x02, 0, 0), nil, 0, good)
	h.do("sync16", cdb16(0x91, 0, 0, 0), nil, 0, good)
	h.do("sync past end", cdb10(0x35, 0, testBlocks, 1), nil, 0, outOfRange)
	if h.dev.Flushes() != 2 {
		t.Fatalf("flushes %d, want 2", h.dev.Flushes())
	}
}

func TestVerify(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	data := fill(2048, 'v')
	h.do("write", cdb10(0x2a, 0, 10, 4), data, 0, good)
	bad := append([]byte(nil), data...)
	bad[1500] ^= 0xff
	tests := []struct {
		name string
		cdb  []byte
		out  []byte
		want want
		info uint32
	}{
		{"verify10 no compare", cdb10(0x2f, 0, 10, 4), nil, good, 0},
		{"verify10 match", cdb10(0x2f, 0x02, 10, 4), data, good, 0},
		{"verify10 mismatch", cdb10(0x2f, 0x02, 10, 4), bad, miscompare, 1500},
		{"verify10 no compare mismatch", cdb10(0x2f, 0, 10, 4), bad, good, 0},
		{"verify12 match", cdb12(0xaf, 0x12, 10, 4), data, good, 0},
		{"verify16 mismatch", cdb16(0x8f, 0x02, 10, 4), bad, miscompare, 1500},
		{"verify16 bytchk 3", cdb16(0x8f, 0x06, 10, 4), data[:512], good, 0},
		{"verify16 bytchk 3 mismatch", cdb16(0x8f, 0x06, 10, 4), bad[1024:1536], miscompare, 476},
		{"verify bytchk 2", cdb10(0x2f, 0x04, 10, 4), data, badField, 0},
		{"verify past end", cdb10(0x2f, 0x02, testBlocks-1, 2), data[:1024], outOfRange, 0},
		{"verify 0 blocks", cdb10(0x2f, 0x02, 0, 0), nil, good, 0},
		{"verify vrprotect", cdb10(0x2f, 0x22, 10, 1), data[:512], badField, 0},
		{"verify short data", cdb10(0x2f, 0x02, 10, 4), data[:512], badParamLen, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.sub(t)
			st, sense, _ := h.exec(nexusA, tt.cdb, tt.out, 0)
			h.check(tt.name, st, sense, tt.want)
			if tt.want == miscompare {
				if sense[0]&0x80 == 0 || uint32(sense[3])<<24|uint32(sense[4])<<16|uint32(sense[5])<<8|uint32(sense[6]) != tt.info {
					t.Fatalf("miscompare information %x, want %d", sense[3:7], tt.info)
				}
			}
		})
	}
}

func TestWriteAndVerify(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	data := fill(1024, 'w')
	for _, c := range [][]byte{cdb10(0x2e, 0x02, 3, 2), cdb12(0xae, 0x02, 3, 2), cdb16(0x8e, 0x12, 3, 2)} {
		h.do("write and verify", c, data, 0, good)
	}
	if !bytes.Equal(h.dev.Bytes(3*512, 1024), data) {
		t.Fatal("data not written")
	}
	h.do("past end", cdb10(0x2e, 0, testBlocks-1, 2), data, 0, outOfRange)
	h.do("zero blocks", cdb10(0x2e, 0, 0, 0), nil, 0, good)
}

func TestPrefetch(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	for _, tt := range []struct {
		name string
		cdb  []byte
		want want
	}{
		{"10", cdb10(0x34, 0, 0, 8), good},
		{"10 immed", cdb10(0x34, 0x02, 0, 8), good},
		{"10 zero", cdb10(0x34, 0, testBlocks, 0), good},
		{"10 past end", cdb10(0x34, 0, testBlocks-1, 2), outOfRange},
		{"16", cdb16(0x90, 0, 5, 8), good},
		{"16 past end", cdb16(0x90, 0, testBlocks+1, 0), outOfRange},
	} {
		t.Run(tt.name, func(t *testing.T) { h.sub(t).do(tt.name, tt.cdb, nil, 0, tt.want) })
	}
}

// TestDeviceErrors fires faults at each durability boundary of the backing
// device and checks what the initiator is told.
func TestDeviceErrors(t *testing.T) {
	backend := errors.New("backend unavailable")
	readErr := want{scsi.StatusCheckCondition, scsi.SenseMediumError, scsi.ASCUnrecoveredReadError}
	writeErr := want{scsi.StatusCheckCondition, scsi.SenseMediumError, scsi.ASCWriteError}
	aborted := want{scsi.StatusCheckCondition, scsi.SenseAbortedCommand, scsi.ASCNoAdditionalSense}
	blk := fill(512, 0)
	tests := []struct {
		name   string
		failOp string
		err    error
		cdb    []byte
		out    []byte
		want   want
	}{
		{"read", "read", backend, cdb10(0x28, 0, 0, 1), nil, readErr},
		{"write", "write", backend, cdb10(0x2a, 0, 0, 1), blk, writeErr},
		{"write fua", "write", backend, cdb10(0x2a, 0x08, 0, 1), blk, writeErr},
		{"write canceled", "write", context.Canceled, cdb10(0x2a, 0, 0, 1), blk, aborted},
		{"read deadline", "read", context.DeadlineExceeded, cdb10(0x28, 0, 0, 1), nil, aborted},
		{"flush", "flush", backend, cdb10(0x35, 0, 0, 0), nil, writeErr},
		{"unmap", "unmap", backend, unmapCDB(24), unmapParams([2]uint64{0, 1}), writeErr},
		{"write same", "write", backend, cdb16(0x93, 0, 0, 4), blk, writeErr},
		{"caw read", "read", backend, cawCDB(0, 1, 0), append(fill(512, 0), blk...), readErr},
		{"verify read", "read", backend, cdb10(0x2f, 0x02, 0, 1), blk, readErr},
		{"get lba status", "mapped", backend, cdb16(0x9e, 0x12, 0, 24), nil, readErr},
		{"sense passes through", "read", scsi.ErrNotReady(scsi.ASCNotReadyBecomingReady), cdb10(0x28, 0, 0, 1), nil,
			want{scsi.StatusCheckCondition, scsi.SenseNotReady, scsi.ASCNotReadyBecomingReady}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, scsi.DiskOptions{})
			h.dev.Fail = func(op string, _ int64) error {
				if op == tt.failOp {
					return tt.err
				}
				return nil
			}
			h.do(tt.name, tt.cdb, tt.out, 512, tt.want)
		})
	}
}

func TestDataPathAllocations(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	ctx := context.Background()
	rd := &scsi.Command{Nexus: nexusA, CDB: cdb10(0x28, 0, 8, 8), DataIn: make([]byte, 4096)}
	wr := &scsi.Command{Nexus: nexusA, CDB: cdb16(0x8a, 0, 8, 8), DataOut: make([]byte, 4096)}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := h.d.Execute(ctx, rd); err != nil {
			t.Fatal(err)
		}
		if _, err := h.d.Execute(ctx, wr); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per READ+WRITE, want 0", allocs)
	}
}

func TestBlockSize4K(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{BlockSize: 4096, PhysicalBlockExp: 0})
	data := fill(8192, 'k')
	h.do("write", cdb10(0x2a, 0, 1, 2), data, 0, good)
	if got := h.do("read", cdb16(0x88, 0, 1, 2), nil, 8192, good); !bytes.Equal(got, data) {
		t.Fatal("4K read back differs")
	}
	in := h.do("rc10", cdb10(0x25, 0, 0, 0), nil, 8, good)
	if in[6] != 0x10 || in[7] != 0 {
		t.Fatalf("block length %x", in[4:8])
	}
	if _, err := scsi.NewDisk(h.dev, scsi.DiskOptions{BlockSize: 1024}); err == nil {
		t.Fatal("block size 1024 accepted")
	}
}

// hugeDevice is a BlockDevice that only has a size, for capacity tests.
type hugeDevice struct{ size int64 }

func (hugeDevice) ReadAt(context.Context, []byte, int64) error        { return nil }
func (hugeDevice) WriteAt(context.Context, []byte, int64, bool) error { return nil }
func (hugeDevice) Flush(context.Context) error                        { return nil }
func (h hugeDevice) Size() int64                                      { return h.size }

func TestReadCapacityLarge(t *testing.T) {
	tests := []struct {
		name   string
		size   int64
		bs     int
		rc10   uint32
		rc16   uint64
		exp    uint8
		lbpme  bool
		expOut byte
	}{
		{"3 TiB 512", 3 << 40, 512, 0xffffffff, 3<<40/512 - 1, 0, false, 0},
		{"2 TiB exactly", 2 << 40, 512, 0xffffffff, 2<<40/512 - 1, 0, false, 0},
		{"just below 2 TiB", 2<<40 - 512, 512, 0xfffffffe, 2<<40/512 - 2, 0, false, 0},
		{"16 TiB 4K", 16 << 40, 4096, 0xffffffff, 16<<40/4096 - 1, 0, false, 0},
		{"512e", 1 << 30, 512, 1<<30/512 - 1, 1<<30/512 - 1, 3, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := scsi.NewDisk(hugeDevice{tt.size}, scsi.DiskOptions{BlockSize: tt.bs, PhysicalBlockExp: tt.exp})
			if err != nil {
				t.Fatal(err)
			}
			h := &harness{t: t, d: d}
			h.clearUA(nexusA)
			in := h.do("rc10", cdb10(0x25, 0, 0, 0), nil, 8, good)
			if got := binary.BigEndian.Uint32(in); got != tt.rc10 {
				t.Fatalf("READ CAPACITY(10) %#x, want %#x", got, tt.rc10)
			}
			in = h.do("rc16", cdb16(0x9e, 0x10, 0, 32), nil, 32, good)
			if got := binary.BigEndian.Uint64(in); got != tt.rc16 || in[13]&0x0f != tt.expOut || (in[14]&0x80 != 0) != tt.lbpme {
				t.Fatalf("READ CAPACITY(16) %x", in)
			}
		})
	}
}
