package vtl

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// checkFuzzResult enforces the CDB contract: no panic (the fuzzer catches
// those), a data-in count within the buffer, and errors that are sense
// errors (never a bare internal error reaching the wire as GOOD).
func checkFuzzResult(t *testing.T, cdb []byte, n int, in []byte, err error) {
	if n < 0 || n > len(in) {
		t.Fatalf("cdb % x: data-in %d of %d", cdb, n, len(in))
	}
	if err == nil {
		return
	}
	var se *scsi.SenseError
	if !errors.As(err, &se) {
		t.Fatalf("cdb % x: non-sense error %v", cdb, err)
	}
	if se.Key == scsi.SenseHardwareError {
		t.Fatalf("cdb % x: hardware error %v", cdb, err)
	}
}

// FuzzDriveExecute sends arbitrary CDBs and data through a drive holding a
// small tape, after a fixed prologue that writes a few records.
func FuzzDriveExecute(f *testing.F) {
	seeds := [][]byte{
		{0x00, 0, 0, 0, 0, 0}, {0x01, 0, 0, 0, 0, 0}, {0x05, 0, 0, 0, 0, 0},
		cdbRead(100, false, false), cdbRead(2, true, false), cdbWrite(16, false), cdbWrite(2, true),
		cdbWFM(1), {0x10, 0x02, 0, 0, 1, 0}, cdbSpace(0, 2), cdbSpace(1, 0xffffff), cdbSpace(3, 0),
		cdbLocate(3), {0x2b, 0, 0, 0, 0, 0, 2, 0, 0, 0}, cdbReadPosLong(), {0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x34, 0x08, 0, 0, 0, 0, 0, 0, 32, 0}, {0x19, 0x01, 0, 0, 0, 0}, {0x1a, 0, 0x3f, 0, 255, 0},
		{0x5a, 0, 0x0f, 0, 0, 0, 0, 1, 0, 0}, {0x15, 0x10, 0, 0, 12, 0}, {0x44, 0, 0, 0, 0, 0, 0, 1, 0, 0},
		{0x4d, 0, 0x2e, 0, 0, 0, 0, 2, 0, 0}, {0x4d, 0, 0x0c, 0, 0, 0, 0, 1, 0, 0}, {0x1b, 0, 0, 0, 1, 0},
		{0x1b, 0, 0, 0, 0, 0}, {0x1e, 0, 0, 0, 1, 0}, {0x12, 1, 0x83, 0, 255, 0}, {0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0},
		{0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0}, {0x7f, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0},
	}
	for _, s := range seeds {
		f.Add(s, []byte{0, 0, 0x10, 8, 0x58, 0, 0, 0, 0, 0, 2, 0})
	}
	store := embeddedStore(f)
	l := openTestLibrary(f, store, func(c *Config) { c.MaxBlockSize = 64 << 10; c.SegmentSize = 1 << 20 })
	f.Cleanup(func() { l.Close(context.Background()) })
	tapes, err := l.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "FZ", Count: 1, Size: 4 << 20})
	if err != nil {
		f.Fatal(err)
	}
	exec(f, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(f, "MOVE")
	d := l.Drives()[0]
	f.Fuzz(func(t *testing.T, cdb, data []byte) {
		if len(data) > 256<<10 {
			data = data[:256<<10]
		}
		// Fresh prologue state: rewind, a few records, a filemark.
		exec(t, d, []byte{0x1b, 0, 0, 0, 1, 0}, nil, 0)
		exec(t, d, cdbWrite(5, false), []byte("hello"), 0)
		exec(t, d, cdbWFM(1), nil, 0)
		exec(t, d, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0)
		in := make([]byte, 70000)
		cmd := &scsi.Command{Nexus: testNexus, CDB: cdb, DataOut: data, DataIn: in}
		n, err := d.Execute(context.Background(), cmd)
		checkFuzzResult(t, cdb, n, in, err)
		// Malformed opcodes must be ILLEGAL REQUEST.
		if len(cdb) > 0 && scsi.CDBLen(cdb[0]) == 0 && cdb[0] != 0x7f {
			var se *scsi.SenseError
			if !errors.As(err, &se) || se.Key != scsi.SenseIllegalRequest {
				t.Fatalf("cdb % x: %v, want ILLEGAL REQUEST", cdb, err)
			}
		}
		d.mu.Lock()
		d.blockSize = 0
		clear(d.prevent)
		d.mu.Unlock()
	})
}

// FuzzChangerExecute sends arbitrary CDBs and data through the changer.
func FuzzChangerExecute(f *testing.F) {
	seeds := [][]byte{
		{0x00, 0, 0, 0, 0, 0}, {0x12, 0, 0, 0, 96, 0}, {0x12, 1, 0x80, 0, 255, 0},
		{0xb8, 0x10, 0, 0, 0xff, 0xff, 0x01, 0, 0x40, 0, 0, 0}, {0xb8, 0x14, 0x01, 0, 0, 2, 0x01, 0, 0x10, 0, 0, 0},
		cdbMove(addrSlot, addrDrive), cdbMove(addrDrive, addrSlot), cdbMove(addrSlot, addrIE),
		{0xa6, 0, 0, 1, 0x04, 0, 0x04, 1, 0x04, 0, 0, 0}, {0x07, 0, 0, 0, 0, 0},
		{0x37, 1, 0x04, 0, 0, 4, 0, 0, 0, 0}, {0x2b, 0, 0, 1, 0x04, 0, 0, 0, 0, 0},
		{0x1a, 0x08, 0x1d, 0, 255, 0}, {0x5a, 0x08, 0x3f, 0, 0, 0, 0, 1, 0, 0}, {0x1e, 0, 0, 0, 1, 0},
		{0x4d, 0, 0, 0, 0, 0, 0, 1, 0, 0}, {0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0},
	}
	for _, s := range seeds {
		f.Add(s, []byte{})
	}
	store := embeddedStore(f)
	l := openTestLibrary(f, store, nil)
	f.Cleanup(func() { l.Close(context.Background()) })
	if _, err := l.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "FZ", Count: 3, Size: 1 << 20}); err != nil {
		f.Fatal(err)
	}
	c := l.Changer()
	f.Fuzz(func(t *testing.T, cdb, data []byte) {
		in := make([]byte, 8192)
		cmd := &scsi.Command{Nexus: testNexus, CDB: cdb, DataOut: data, DataIn: in}
		n, err := c.Execute(context.Background(), cmd)
		checkFuzzResult(t, cdb, n, in, err)
		if len(cdb) > 0 && scsi.CDBLen(cdb[0]) == 0 && cdb[0] != 0x7f {
			var se *scsi.SenseError
			if !errors.As(err, &se) || se.Key != scsi.SenseIllegalRequest {
				t.Fatalf("cdb % x: %v, want ILLEGAL REQUEST", cdb, err)
			}
		}
	})
}

// FuzzDecodeIndex checks that the index decoders (root and chunk objects)
// never panic, and that a chunk they accept re-encodes to the same bytes
// and can be sought and truncated.
func FuzzDecodeIndex(f *testing.F) {
	s := segInfo{seq: 1, first: 0}
	s.appendRun(65536, 10)
	s.appendRun(fmSize, 1)
	s.appendRun(100, 3)
	s2 := segInfo{first: s.items, firstByte: uint64(s.rawLen)}
	s2.appendRun(fmSize, 2)
	for _, segs := range [][]segInfo{nil, {s}, {s, s2}} {
		enc := encodeChunk(nil, segs)
		f.Add(enc)
		f.Add(enc[:len(enc)-4])
	}
	root := encodeRoot(nil, &tapeIndex{nextSeq: 5, nextChunk: 3, chunkSegs: 16}, []chunkRef{{1, 100}, {2, 50}})
	f.Add(root)
	f.Add(root[:len(root)-4])
	f.Fuzz(func(t *testing.T, b []byte) {
		// The raw input, and the input with a valid checksum appended so
		// the structural checks are reached too.
		fuzzIndex(t, b)
		fuzzIndex(t, binary.BigEndian.AppendUint32(append([]byte(nil), b...), crc32.Checksum(b, castagnoli)))
	})
}

func fuzzIndex(t *testing.T, b []byte) {
	if rx, chunks, err := decodeRoot(b); err != nil {
		if !errors.Is(err, ErrCorruptIndex) {
			t.Fatalf("root error %v does not wrap ErrCorruptIndex", err)
		}
	} else if !bytes.Equal(encodeRoot(nil, rx, chunks), b) {
		t.Fatal("root re-encoding differs")
	}
	x := &tapeIndex{nextSeq: 1 << 62}
	if err := x.decodeChunk(b); err != nil {
		if !errors.Is(err, ErrCorruptIndex) {
			t.Fatalf("error %v does not wrap ErrCorruptIndex", err)
		}
		return
	}
	if !bytes.Equal(encodeChunk(nil, x.segs), b) {
		t.Fatal("re-encoding differs")
	}
	eod := x.eod()
	for _, p := range []uint64{0, eod / 2, eod - 1} {
		if p < eod {
			c := x.seek(p)
			x.object(c)
			x.advance(&c)
		}
	}
	x.fmBefore(eod)
	x.truncate(eod / 2)
	if x.eod() != eod/2 {
		t.Fatalf("truncate to %d left eod %d", eod/2, x.eod())
	}
}
