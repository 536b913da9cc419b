package vtl

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// loadFirst creates a tape and moves it into drive 1.
func loadFirst(t *testing.T, l *Library, size int64) (string, *Drive) {
	t.Helper()
	tapes, err := l.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "TST", Count: 1, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(t, "MOVE MEDIUM")
	return tapes[0].Barcode, l.Drives()[0]
}

func TestDriveSemantics(t *testing.T) {
	store := embeddedStore(t)
	l := openTestLibrary(t, store, nil)
	d := l.Drives()[1]
	exec(t, d, []byte{0, 0, 0, 0, 0, 0}, nil, 0).senseIs(t, "TUR empty", scsi.SenseNotReady, scsi.ASCMediumNotPresent)
	bc, d := loadFirst(t, l, 64<<20)
	exec(t, d, []byte{0, 0, 0, 0, 0, 0}, nil, 0).mustOK(t, "TUR loaded")

	// file 0: records of several sizes; file 1: fixed 512-byte blocks.
	sizes := []int{100, 65536, 3000, 200000, 1, 65536, 65536}
	for i, n := range sizes {
		exec(t, d, cdbWrite(n, false), record(i, n), 0).mustOK(t, "WRITE")
	}
	exec(t, d, cdbWFM(1), nil, 0).mustOK(t, "WFM")
	// MODE SELECT block length 512 then fixed writes of 8 blocks.
	ms := []byte{0, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 0x02, 0x00}
	exec(t, d, []byte{0x15, 0x10, 0, 0, byte(len(ms)), 0}, ms, 0).mustOK(t, "MODE SELECT")
	exec(t, d, cdbWrite(8, true), record(99, 4096), 0).mustOK(t, "WRITE fixed")
	exec(t, d, cdbWFM(2), nil, 0).mustOK(t, "WFM 2")
	exec(t, d, []byte{0x10, 0x02, 0, 0, 1, 0}, nil, 0).senseIs(t, "setmark", scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	eod := posOf(t, exec(t, d, cdbReadPosLong(), nil, 32))
	if want := uint64(len(sizes) + 1 + 8 + 2); eod != want {
		t.Fatalf("EOD at %d, want %d", eod, want)
	}
	exec(t, d, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0).mustOK(t, "REWIND")

	// Variable reads: exact, short (ILI), long (ILI, negative residue), SILI.
	r := exec(t, d, cdbRead(100, false, false), nil, 100).mustOK(t, "READ 0")
	if !eq(r.data, record(0, 100)) {
		t.Fatal("record 0 differs")
	}
	r = exec(t, d, cdbRead(70000, false, false), nil, 70000)
	se := r.senseIs(t, "READ short record", scsi.SenseNoSense, scsi.ASCNoAdditionalSense)
	if !se.ILI || se.Info != 70000-65536 || !eq(r.data, record(1, 65536)) {
		t.Fatalf("short record: ili %v info %d len %d", se.ILI, se.Info, len(r.data))
	}
	r = exec(t, d, cdbRead(1000, false, false), nil, 1000)
	se = r.senseIs(t, "READ long record", scsi.SenseNoSense, scsi.ASCNoAdditionalSense)
	if !se.ILI || int32(se.Info) != -2000 || !eq(r.data, record(2, 3000)[:1000]) {
		t.Fatalf("long record: ili %v info %d", se.ILI, int32(se.Info))
	}
	r = exec(t, d, cdbRead(250000, false, true), nil, 250000).mustOK(t, "READ SILI")
	if !eq(r.data, record(3, 200000)) {
		t.Fatal("record 3 differs")
	}
	// SPACE 3 blocks forward hits the filemark after 3 (4, 5, 6 then FM).
	exec(t, d, cdbSpace(0, 3), nil, 0).mustOK(t, "SPACE 3")
	r = exec(t, d, cdbRead(65536, false, false), nil, 65536)
	se = r.senseIs(t, "READ filemark", scsi.SenseNoSense, scsi.ASCFilemarkDetected)
	if !se.Filemark {
		t.Fatal("no FILEMARK bit")
	}
	// Fixed reads of file 1.
	r = exec(t, d, cdbRead(8, true, false), nil, 4096).mustOK(t, "READ fixed")
	if !eq(r.data, record(99, 4096)) {
		t.Fatal("fixed blocks differ")
	}
	r = exec(t, d, cdbRead(4, true, false), nil, 2048)
	se = r.senseIs(t, "READ fixed FM", scsi.SenseNoSense, scsi.ASCFilemarkDetected)
	if se.Info != 4 {
		t.Fatalf("fixed filemark residue %d", se.Info)
	}
	// SPACE filemarks backward 2: lands before the filemark ending file 0.
	exec(t, d, cdbSpace(1, -2&0xffffff), nil, 0).mustOK(t, "SPACE -2 FM")
	if p := posOf(t, exec(t, d, cdbReadPosLong(), nil, 32)); p != 7 {
		t.Fatalf("after SPACE -2 FM at %d, want 7", p)
	}
	exec(t, d, cdbSpace(1, 5), nil, 0).senseIs(t, "SPACE FM past EOD", scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected)
	exec(t, d, cdbSpace(0, -20&0xffffff), nil, 0).senseIs(t, "SPACE back to FM", scsi.SenseNoSense, scsi.ASCFilemarkDetected)
	exec(t, d, cdbLocate(3), nil, 0).mustOK(t, "LOCATE 3")
	r = exec(t, d, cdbRead(200000, false, false), nil, 200000).mustOK(t, "READ after LOCATE")
	if !eq(r.data, record(3, 200000)) {
		t.Fatal("record 3 after LOCATE differs")
	}
	exec(t, d, cdbLocate(1000), nil, 0).senseIs(t, "LOCATE past EOD", scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected)
	exec(t, d, cdbRead(10, false, false), nil, 10).senseIs(t, "READ at EOD", scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected)

	// Overwrite in the middle truncates: write at 5 makes EOD 6.
	exec(t, d, cdbLocate(5), nil, 0).mustOK(t, "LOCATE 5")
	exec(t, d, cdbWrite(10, false), record(50, 10), 0).mustOK(t, "overwrite")
	exec(t, d, cdbSpace(3, 0), nil, 0).mustOK(t, "SPACE EOD")
	if p := posOf(t, exec(t, d, cdbReadPosLong(), nil, 32)); p != 6 {
		t.Fatalf("EOD after overwrite %d, want 6", p)
	}

	// Unload, reopen the library on the same store, the tape is back in
	// the drive and reads the same.
	exec(t, d, []byte{0x1b, 0, 0, 0, 0, 0}, nil, 0).mustOK(t, "UNLOAD")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l2 := openTestLibrary(t, store, nil)
	defer l2.Close(context.Background())
	d2 := l2.Drives()[0]
	exec(t, d2, []byte{0x1b, 0, 0, 0, 1, 0}, nil, 0).mustOK(t, "LOAD")
	exec(t, d2, cdbLocate(5), nil, 0).mustOK(t, "LOCATE after reopen")
	r = exec(t, d2, cdbRead(10, false, false), nil, 10).mustOK(t, "READ after reopen")
	if !eq(r.data, record(50, 10)) {
		t.Fatal("record after reopen differs")
	}
	ti, err := l2.Tape(bc)
	if err != nil || ti.Location != "drive 1" || ti.Used == 0 {
		t.Fatalf("tape after reopen: %+v %v", ti, err)
	}
	mustCheck(t, l2)
}

func TestEarlyWarningAndOverflow(t *testing.T) {
	l := openTestLibrary(t, embeddedStore(t), nil)
	defer l.Close(context.Background())
	_, d := loadFirst(t, l, 1<<20) // early warning zone 32 KiB
	blk := record(1, 64<<10)
	var ew bool
	for i := 0; i < 20; i++ {
		r := exec(t, d, cdbWrite(len(blk), false), blk, 0)
		if r.err == nil {
			continue
		}
		se := r.se
		switch {
		case se != nil && se.Key == scsi.SenseNoSense && se.EOM:
			ew = true
		case se != nil && se.Key == scsi.SenseVolumeOverflow && se.EOM:
			if !ew {
				t.Fatal("overflow before early warning")
			}
			return
		default:
			t.Fatalf("write %d: %v", i, r.err)
		}
	}
	t.Fatal("no VOLUME OVERFLOW")
}

func TestReadOnlyTape(t *testing.T) {
	l := openTestLibrary(t, embeddedStore(t), nil)
	defer l.Close(context.Background())
	ctx := context.Background()
	bc, d := loadFirst(t, l, 1<<20)
	exec(t, d, cdbWrite(10, false), record(1, 10), 0).mustOK(t, "WRITE")
	exec(t, d, cdbWFM(1), nil, 0).mustOK(t, "WFM")
	if _, err := l.ArchiveTape(ctx, bc); err == nil {
		t.Fatal("archived a tape in a drive")
	}
	ti, _ := l.Tape(bc)
	exec(t, l.Changer(), cdbMove(addrDrive, ti.Source), nil, 0).mustOK(t, "MOVE back")
	if _, err := l.ArchiveTape(ctx, bc); err != nil {
		t.Fatal(err)
	}
	ti, err := l.RetrieveTape(ctx, bc)
	if err != nil || !ti.ReadOnly {
		t.Fatal(ti, err)
	}
	exec(t, l.Changer(), cdbMove(ti.Element, addrDrive), nil, 0).mustOK(t, "MOVE retrieved")
	exec(t, d, cdbWrite(10, false), record(1, 10), 0).senseIs(t, "WRITE retrieved", scsi.SenseDataProtect, scsi.ASCWriteProtected)
	r := exec(t, d, cdbRead(10, false, false), nil, 10).mustOK(t, "READ retrieved")
	if !eq(r.data, record(1, 10)) {
		t.Fatal("retrieved data differs")
	}
}

func TestIndexChunks(t *testing.T) {
	store := embeddedStore(t)
	small := func(c *Config) { c.chunkSegs = 3 }
	l := openTestLibrary(t, store, small)
	ctx := context.Background()
	bc, d := loadFirst(t, l, 64<<20)
	// Each record and its filemark make one segment: 10 segments, 4 chunks.
	for i := 0; i < 10; i++ {
		exec(t, d, cdbWrite(100+i, false), record(i, 100+i), 0).mustOK(t, "WRITE")
		exec(t, d, cdbWFM(1), nil, 0).mustOK(t, "WFM")
	}
	// Overwrite from record 4 (object 8): chunks from the second on change.
	exec(t, d, cdbLocate(8), nil, 0).mustOK(t, "LOCATE 8")
	exec(t, d, cdbWrite(50, false), record(40, 50), 0).mustOK(t, "overwrite")
	exec(t, d, cdbWFM(1), nil, 0).mustOK(t, "WFM")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l = openTestLibrary(t, store, small)
	defer l.Close(ctx)
	d = l.Drives()[0]
	exec(t, d, []byte{0x1b, 0, 0, 0, 1, 0}, nil, 0).mustOK(t, "LOAD")
	for i := 0; i < 5; i++ {
		want := record(i, 100+i)
		if i == 4 {
			want = record(40, 50)
		}
		r := exec(t, d, cdbRead(1000, false, true), nil, 1000).mustOK(t, "READ")
		if !eq(r.data, want) {
			t.Fatalf("record %d differs", i)
		}
		exec(t, d, cdbRead(1000, false, true), nil, 1000).senseIs(t, "FM", scsi.SenseNoSense, scsi.ASCFilemarkDetected)
	}
	exec(t, d, cdbRead(1000, false, true), nil, 1000).senseIs(t, "EOD", scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected)
	mustCheck(t, l)
	// Replaced chunks and segments were deleted: 5 segments, 2 chunks.
	var segs, chunks int
	if err := objstore.ListAll(ctx, store, "vtl/tapes/"+bc+"/", func(o objstore.ObjectInfo) error {
		switch {
		case strings.Contains(o.Key, "/seg-"):
			segs++
		case strings.Contains(o.Key, "/idx-"):
			chunks++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if segs != 5 || chunks != 2 {
		t.Fatalf("%d segment and %d chunk objects, want 5 and 2", segs, chunks)
	}
}
