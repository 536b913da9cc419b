package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
	"github.com/sluicegw/sluice/iscsi/scsi/scsitest"
)

func unmapParams(descs ...[2]uint64) []byte {
	p := make([]byte, 8+16*len(descs))
	binary.BigEndian.PutUint16(p[0:], uint16(len(p)-2))
	binary.BigEndian.PutUint16(p[2:], uint16(16*len(descs)))
	for i, d := range descs {
		binary.BigEndian.PutUint64(p[8+16*i:], d[0])
		binary.BigEndian.PutUint32(p[8+16*i+8:], uint32(d[1]))
	}
	return p
}

func unmapCDB(plen int) []byte {
	c := make([]byte, 10)
	c[0] = 0x42
	binary.BigEndian.PutUint16(c[7:], uint16(plen))
	return c
}

func TestWriteSame(t *testing.T) {
	pattern := fill(512, 0x5a)
	zero := make([]byte, 512)
	tests := []struct {
		name     string
		cdb      []byte
		out      []byte
		want     want
		lba, n   int64 // range expected to hold the block afterwards
		unmapped bool
	}{
		{"10 simple", cdb10(0x41, 0, 4, 3), pattern, good, 4, 3, false},
		{"16 simple", cdb16(0x93, 0, 100, 256), pattern, good, 100, 256, false},
		{"10 to end", cdb10(0x41, 0, testBlocks-5, 0), pattern, good, testBlocks - 5, 5, false},
		{"16 past end", cdb16(0x93, 0, testBlocks-1, 2), pattern, outOfRange, 0, 0, false},
		{"10 zero blocks past end", cdb10(0x41, 0, testBlocks+1, 0), pattern, outOfRange, 0, 0, false},
		{"10 unmap zeros", cdb10(0x41, 0x08, 8, 16), zero, good, 8, 16, true},
		{"16 unmap nonzero data unmaps", cdb16(0x93, 0x08, 30, 2), pattern, good, 30, 2, true},
		{"16 ndob", cdb16(0x93, 0x09, 40, 4), nil, good, 40, 4, true},
		{"10 unmap until end", cdb10(0x41, 0x08, testBlocks-7, 0), pattern, good, testBlocks - 7, 7, true},
		{"10 ndob bit invalid", cdb10(0x41, 0x01, 0, 1), pattern, badField, 0, 0, false},
		{"anchor", cdb10(0x41, 0x10, 0, 1), zero, badField, 0, 0, false},
		{"anchor unmap", cdb10(0x41, 0x18, 0, 1), zero, badField, 0, 0, false},
		{"lbdata", cdb10(0x41, 0x02, 0, 1), zero, badField, 0, 0, false},
		{"short data", cdb10(0x41, 0, 0, 1), zero[:256], badField, 0, 0, false},
		{"long data", cdb10(0x41, 0, 0, 1), append(zero, zero...), badField, 0, 0, false},
		{"too many blocks", cdb16(0x93, 0, 0, 1025), pattern, badField, 0, 0, false},
		{"wrprotect", cdb16(0x93, 0x20, 0, 1), pattern, badField, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, scsi.DiskOptions{MaxWriteSameBlocks: 1024})
			h.do("prefill", cdb16(0x93, 0, 0, 0), fill(512, 0xff), 0, want{status: scsi.StatusCheckCondition, key: scsi.SenseIllegalRequest, asc: scsi.ASCInvalidFieldInCDB})
			h.do("prefill", cdb16(0x93, 0, 0, 1024), fill(512, 0xff), 0, good)
			h.do("prefill", cdb16(0x93, 0, 1024, 1024), fill(512, 0xff), 0, good)
			h.do(tt.name, tt.cdb, tt.out, 0, tt.want)
			if tt.n == 0 {
				return
			}
			exp := pattern
			if tt.unmapped || tt.out != nil && tt.out[0] == 0 {
				exp = zero
			}
			for b := tt.lba; b < tt.lba+tt.n; b++ {
				if !bytes.Equal(h.dev.Bytes(b*512, 512), exp) {
					t.Fatalf("block %d does not hold the pattern", b)
				}
			}
			if tt.lba+tt.n < testBlocks && h.dev.Bytes((tt.lba+tt.n)*512, 1)[0] != 0xff {
				t.Fatal("write same went past its range")
			}
			mapped, _, _ := h.dev.Mapped(context.Background(), tt.lba*512)
			if mapped == tt.unmapped {
				t.Fatalf("mapped = %v after write same", mapped)
			}
		})
	}
}

func TestUnmap(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{MaxUnmapDescriptors: 4, MaxUnmapBlocks: 64})
	h.do("fill", cdb16(0x93, 0, 0, 512), fill(512, 'a'), 0, good)
	tests := []struct {
		name   string
		cdb    []byte
		params []byte
		want   want
	}{
		{"simple", nil, unmapParams([2]uint64{0, 8}), good},
		{"two", nil, unmapParams([2]uint64{16, 8}, [2]uint64{32, 1}), good},
		{"zero blocks at end", nil, unmapParams([2]uint64{testBlocks, 0}), good},
		{"no descriptors", nil, unmapParams(), good},
		{"zero param length", unmapCDB(0), nil, good},
		{"past end", nil, unmapParams([2]uint64{testBlocks - 1, 2}), outOfRange},
		{"too many blocks", nil, unmapParams([2]uint64{0, 65}), badParam},
		{"too many descriptors", nil, unmapParams([2]uint64{0, 1}, [2]uint64{1, 1}, [2]uint64{2, 1}, [2]uint64{3, 1}, [2]uint64{4, 1}), badParam},
		{"short header", unmapCDB(4), []byte{0, 2, 0, 0}, badParamLen},
		{"descriptor length beyond list", unmapCDB(24), append([]byte{0, 22, 0, 32, 0, 0, 0, 0}, make([]byte, 16)...), badParamLen},
		{"odd descriptor length", unmapCDB(24), append([]byte{0, 22, 0, 12, 0, 0, 0, 0}, make([]byte, 16)...), badParam},
		{"data shorter than cdb", unmapCDB(40), unmapParams([2]uint64{0, 1}), badParamLen},
		{"anchor", []byte{0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0}, unmapParams([2]uint64{0, 1}), badField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cdb
			if c == nil {
				c = unmapCDB(len(tt.params))
			}
			h.sub(t).do(tt.name, c, tt.params, 0, tt.want)
		})
	}
	for _, b := range []int64{0, 7, 16, 23, 32} {
		if m, _, _ := h.dev.Mapped(context.Background(), b*512); m {
			t.Fatalf("block %d still mapped", b)
		}
	}
	if m, _, _ := h.dev.Mapped(context.Background(), 8*512); !m {
		t.Fatal("block 8 unmapped")
	}
	// A past-end descriptor after a valid one changes nothing.
	h.do("mixed", unmapCDB(40), unmapParams([2]uint64{100, 1}, [2]uint64{testBlocks, 1}), 0, outOfRange)
	if m, _, _ := h.dev.Mapped(context.Background(), 100*512); !m {
		t.Fatal("UNMAP applied a descriptor of a failing command")
	}
}

func TestNoUnmapWithoutUnmapper(t *testing.T) {
	dev := struct{ scsi.BlockDevice }{scsitest.NewMemDevice(1 << 20)}
	d, err := scsi.NewDisk(dev, scsi.DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, d: d}
	h.clearUA(nexusA)
	h.do("unmap", unmapCDB(24), unmapParams([2]uint64{0, 1}), 0, badOpcode)
	in := h.do("lbp vpd", []byte{0x12, 1, 0xb2, 0, 64, 0}, nil, 64, good)
	if in[5] != 0 {
		t.Fatalf("LBP flags %#x on a thick disk", in[5])
	}
	in = h.do("gls", cdb16(0x9e, 0x12, 0, 24), nil, 24, good)
	if in[20] != 0 || binary.BigEndian.Uint32(in[16:]) != 2048 {
		t.Fatalf("GET LBA STATUS %x", in)
	}
}

func TestGetLBAStatus(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	h.do("write", cdb16(0x93, 0, 10, 5), fill(512, 1), 0, good)
	gls := func(lba uint64, alloc uint32) []byte { return cdb16(0x9e, 0x12, lba, alloc) }
	tests := []struct {
		name  string
		lba   uint64
		alloc uint32
		want  want
		descs [][3]uint64 // lba, blocks, status
	}{
		{"start unmapped", 0, 24, good, [][3]uint64{{0, 10, 1}}},
		{"mapped", 10, 24, good, [][3]uint64{{10, 5, 0}}},
		{"middle", 12, 24, good, [][3]uint64{{12, 3, 0}}},
		{"several", 0, 56, good, [][3]uint64{{0, 10, 1}, {10, 5, 0}, {15, testBlocks - 15, 1}}},
		{"last", testBlocks - 1, 24, good, [][3]uint64{{testBlocks - 1, 1, 1}}},
		{"at end", testBlocks, 24, outOfRange, nil},
		{"huge", 1 << 63, 24, outOfRange, nil},
		{"zero alloc", 0, 0, good, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := h.sub(t).do(tt.name, gls(tt.lba, tt.alloc), nil, int(tt.alloc), tt.want)
			if tt.descs == nil {
				return
			}
			if got := binary.BigEndian.Uint32(in); got != uint32(4+16*len(tt.descs)) {
				t.Fatalf("parameter data length %d", got)
			}
			for i, d := range tt.descs {
				desc := in[8+16*i:]
				got := [3]uint64{binary.BigEndian.Uint64(desc), uint64(binary.BigEndian.Uint32(desc[8:])), uint64(desc[12] & 0x0f)}
				if got != d {
					t.Fatalf("descriptor %d = %v, want %v", i, got, d)
				}
			}
		})
	}
}

func cawCDB(lba uint64, n byte, flags byte) []byte {
	c := cdb16(0x89, flags, lba, 0)
	c[13] = n
	return c
}

func TestCompareAndWrite(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	old, nw := fill(1024, 'A'), fill(1024, 'B')
	h.do("seed", cdb10(0x2a, 0, 0, 2), old, 0, good)
	bad := append([]byte(nil), old...)
	bad[700] = 'Z'
	tests := []struct {
		name string
		cdb  []byte
		out  []byte
		want want
	}{
		{"miscompare", cawCDB(0, 2, 0), append(append([]byte(nil), bad...), nw...), miscompare},
		{"size mismatch", cawCDB(0, 1, 0), append(append([]byte(nil), old...), nw...), badField},
		{"too long", cawCDB(0, 255, 0), nil, badField},
		{"past end", cawCDB(testBlocks-1, 2, 0), append(append([]byte(nil), old...), nw...), outOfRange},
		{"zero blocks", cawCDB(0, 0, 0), nil, good},
		{"zero blocks with data", cawCDB(0, 0, 0), append(append([]byte(nil), old...), nw...), badField},
		{"wrprotect", cawCDB(0, 2, 0x20), append(append([]byte(nil), old...), nw...), badField},
		{"match fua", cawCDB(0, 2, 0x18), append(append([]byte(nil), old...), nw...), good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.sub(t)
			st, sense, _ := h.exec(nexusA, tt.cdb, tt.out, 0)
			h.check(tt.name, st, sense, tt.want)
			if tt.want == miscompare && binary.BigEndian.Uint32(sense[3:]) != 700 {
				t.Fatalf("miscompare offset %d", binary.BigEndian.Uint32(sense[3:]))
			}
		})
	}
	if !bytes.Equal(h.dev.Bytes(0, 1024), nw) {
		t.Fatal("COMPARE AND WRITE did not write")
	}
}

// TestCompareAndWriteAtomic runs concurrent increments of a counter block
// through COMPARE AND WRITE, mixed with plain writes elsewhere in the same
// stripe; no increment may be lost.
func TestCompareAndWriteAtomic(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{MaxCompareBlocks: 1})
	const workers, incs = 4, 50
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < incs; {
				cur := make([]byte, 512)
				rd := &scsi.Command{Nexus: nexusA, CDB: cdb10(0x28, 0, 0, 1), DataIn: cur}
				if _, err := h.d.Execute(ctx, rd); err != nil {
					t.Error(err)
					return
				}
				next := append([]byte(nil), cur...)
				binary.BigEndian.PutUint64(next, binary.BigEndian.Uint64(cur)+1)
				cw := &scsi.Command{Nexus: nexusA, CDB: cawCDB(0, 1, 0), DataOut: append(cur, next...)}
				_, err := h.d.Execute(ctx, cw)
				if st, _ := scsi.Status(err); st == scsi.StatusGood {
					i++
				} else if st != scsi.StatusCheckCondition {
					t.Error(err)
					return
				}
				wr := &scsi.Command{Nexus: nexusA, CDB: cdb10(0x2a, 0, 1, 1), DataOut: next}
				if _, err := h.d.Execute(ctx, wr); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := binary.BigEndian.Uint64(h.dev.Bytes(0, 8)); got != workers*incs {
		t.Fatalf("counter %d, want %d", got, workers*incs)
	}
}

func TestOrWrite(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	h.do("seed", cdb10(0x2a, 0, 0, 2), fill(1024, 0xa0), 0, good)
	h.do("or", cdb16(0x8b, 0, 0, 2), fill(1024, 0x05), 0, good)
	if !bytes.Equal(h.dev.Bytes(0, 1024), fill(1024, 0xa5)) {
		t.Fatal("ORWRITE result wrong")
	}
	h.do("past end", cdb16(0x8b, 0, testBlocks, 1), fill(512, 1), 0, outOfRange)
	h.do("zero", cdb16(0x8b, 0, 0, 0), nil, 0, good)
	h.do("orprotect", cdb16(0x8b, 0x20, 0, 1), fill(512, 1), 0, badField)
}

func TestReadDefectData(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	in := h.do("10", []byte{0x37, 0, 0x05, 0, 0, 0, 0, 0, 32, 0}, nil, 32, good)
	if len(in) != 4 || in[1] != 5 {
		t.Fatalf("READ DEFECT DATA(10) %x", in)
	}
	in = h.do("12", []byte{0xb7, 0x04, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, nil, 32, good)
	if len(in) != 8 || in[1] != 4 {
		t.Fatalf("READ DEFECT DATA(12) %x", in)
	}
}

func TestWriteAtomic(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{MaxTransferBlocks: 8})
	wa := func(lba uint64, n uint16, flags byte) []byte {
		c := cdb16(0x9c, flags, lba, 0)
		binary.BigEndian.PutUint16(c[12:], n)
		return c
	}
	data := fill(1024, 'x')
	h.do("write", wa(4, 2, 0x08), data, 0, good)
	if !bytes.Equal(h.dev.Bytes(4*512, 1024), data) {
		t.Fatal("WRITE ATOMIC did not write")
	}
	h.do("past end", wa(testBlocks-1, 2, 0), data, 0, outOfRange)
	h.do("too long", wa(0, 9, 0), fill(9*512, 0), 0, badField)
	h.do("wrprotect", wa(0, 1, 0x20), data[:512], 0, badField)
	h.do("zero", wa(0, 0, 0), nil, 0, good)
	bl := h.do("block limits", inquiryCDB(true, 0xb0, 64), nil, 64, good)
	if binary.BigEndian.Uint32(bl[44:]) != 8 {
		t.Fatalf("MAXIMUM ATOMIC TRANSFER LENGTH %d", binary.BigEndian.Uint32(bl[44:]))
	}
}
