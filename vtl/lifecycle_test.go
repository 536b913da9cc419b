package vtl

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func TestCreateValidation(t *testing.T) {
	l := openTestLibrary(t, embeddedStore(t), nil)
	defer l.Close(context.Background())
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    CreateOptions
		want error
	}{
		{"lower-case prefix", CreateOptions{BarcodePrefix: "ab", Count: 1, Size: 1 << 20}, ErrInvalid},
		{"long prefix", CreateOptions{BarcodePrefix: "ABCDE", Count: 1, Size: 1 << 20}, ErrInvalid},
		{"digit prefix", CreateOptions{BarcodePrefix: "A1", Count: 1, Size: 1 << 20}, ErrInvalid},
		{"zero count", CreateOptions{BarcodePrefix: "A", Count: 0, Size: 1 << 20}, ErrInvalid},
		{"too small", CreateOptions{BarcodePrefix: "A", Count: 1, Size: 1}, ErrInvalid},
		{"too large", CreateOptions{BarcodePrefix: "A", Count: 1, Size: 16 << 40}, ErrInvalid},
		{"unknown pool", CreateOptions{BarcodePrefix: "A", Count: 1, Size: 1 << 20, Pool: "x"}, ErrInvalid},
		{"more than slots", CreateOptions{BarcodePrefix: "A", Count: 9, Size: 1 << 20}, ErrNoSpace},
		{"ok", CreateOptions{BarcodePrefix: "ABCD", Count: 2, Size: 1 << 20, Pool: PoolDeepArchive, WORM: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tapes, err := l.CreateTapes(ctx, tc.o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, tp := range tapes {
				if len(tp.Barcode) != 8 || !strings.HasPrefix(tp.Barcode, tc.o.BarcodePrefix) || tp.Location == "" {
					t.Fatalf("tape %+v", tp)
				}
			}
		})
	}
}

func TestBarcodesNeverReused(t *testing.T) {
	store := embeddedStore(t)
	l := openTestLibrary(t, store, nil)
	ctx := context.Background()
	a, err := l.CreateTapes(ctx, CreateOptions{BarcodePrefix: "R", Count: 2, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range a {
		if err := l.DeleteTape(ctx, tp.Barcode, DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l = openTestLibrary(t, store, nil) // across a restart too
	defer l.Close(ctx)
	b, err := l.CreateTapes(ctx, CreateOptions{BarcodePrefix: "R", Count: 2, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{a[0].Barcode: true, a[1].Barcode: true}
	for _, tp := range b {
		if seen[tp.Barcode] {
			t.Fatalf("barcode %s reused", tp.Barcode)
		}
	}
	if _, err := l.Tape(a[0].Barcode); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted tape: %v", err)
	}
	mustCheck(t, l)
}

func TestRetentionLock(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l := openTestLibrary(t, embeddedStore(t), func(c *Config) {
		c.Now = clock
		c.Pools = map[string]Pool{
			"gov":  {RetentionMode: RetentionGovernance, RetentionDays: 10},
			"comp": {RetentionMode: RetentionCompliance, RetentionDays: 10},
		}
	})
	defer l.Close(context.Background())
	ctx := context.Background()
	g, _ := l.CreateTapes(ctx, CreateOptions{BarcodePrefix: "G", Count: 1, Size: 1 << 20, Pool: "gov"})
	c, _ := l.CreateTapes(ctx, CreateOptions{BarcodePrefix: "C", Count: 1, Size: 1 << 20, Pool: "comp"})
	for _, bc := range []string{g[0].Barcode, c[0].Barcode} {
		ti, err := l.ArchiveTape(ctx, bc)
		if err != nil || ti.Status != StatusArchived || !ti.RetainUntil.Equal(now.AddDate(0, 0, 10)) {
			t.Fatalf("archive %s: %+v %v", bc, ti, err)
		}
	}
	if err := l.DeleteTape(ctx, g[0].Barcode, DeleteOptions{}); !errors.Is(err, ErrRetentionLocked) {
		t.Fatalf("governance delete without bypass: %v", err)
	}
	if err := l.DeleteTape(ctx, c[0].Barcode, DeleteOptions{BypassGovernance: true, Reason: "test"}); !errors.Is(err, ErrRetentionLocked) {
		t.Fatalf("compliance delete with bypass: %v", err)
	}
	if err := l.DeleteTape(ctx, g[0].Barcode, DeleteOptions{BypassGovernance: true, Reason: "ticket 42"}); err != nil {
		t.Fatalf("governance delete with bypass: %v", err)
	}
	found := false
	for _, ev := range l.Audit() {
		if ev.Action == "retention-bypass" && ev.Barcode == g[0].Barcode && strings.Contains(ev.Detail, "ticket 42") {
			found = true
		}
	}
	if !found {
		t.Fatalf("bypass not audited: %+v", l.Audit())
	}
	now = now.AddDate(0, 0, 11)
	if err := l.DeleteTape(ctx, c[0].Barcode, DeleteOptions{}); err != nil {
		t.Fatalf("compliance delete after the date: %v", err)
	}
}

func TestAutoCreate(t *testing.T) {
	store := embeddedStore(t)
	l := openTestLibrary(t, store, nil)
	ctx := context.Background()
	if err := l.SetAutoCreate(ctx, &AutoCreateRule{MinAvailable: 3, BarcodePrefix: "AU", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Tapes()); n != 3 {
		t.Fatalf("%d tapes, want 3", n)
	}
	// Write to one tape: after it comes back it is no longer available.
	tp := l.Tapes()[0]
	exec(t, l.Changer(), cdbMove(tp.Element, addrDrive), nil, 0).mustOK(t, "MOVE in")
	d := l.Drives()[0]
	exec(t, d, cdbWrite(10, false), record(1, 10), 0).mustOK(t, "WRITE")
	exec(t, l.Changer(), cdbMove(addrDrive, tp.Element), nil, 0).mustOK(t, "MOVE out")
	if n := len(l.Tapes()); n != 4 {
		t.Fatalf("%d tapes after one was used, want 4", n)
	}
	if err := l.SetAutoCreate(ctx, &AutoCreateRule{MinAvailable: 1, BarcodePrefix: "au", Size: 1 << 20}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad rule: %v", err)
	}
	l.Close(ctx)
	l = openTestLibrary(t, store, nil)
	defer l.Close(ctx)
	if n := len(l.Tapes()); n != 4 {
		t.Fatalf("%d tapes after restart, want 4", n)
	}
	mustCheck(t, l)
}

func TestWORM(t *testing.T) {
	l := openTestLibrary(t, embeddedStore(t), nil)
	defer l.Close(context.Background())
	ctx := context.Background()
	tapes, _ := l.CreateTapes(ctx, CreateOptions{BarcodePrefix: "W", Count: 1, Size: 1 << 20, WORM: true})
	exec(t, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(t, "MOVE")
	d := l.Drives()[0]
	exec(t, d, cdbWrite(10, false), record(1, 10), 0).mustOK(t, "WRITE")
	exec(t, d, cdbWFM(1), nil, 0).mustOK(t, "WFM")
	exec(t, d, cdbWrite(10, false), record(2, 10), 0).mustOK(t, "append")
	exec(t, d, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0).mustOK(t, "REWIND")
	exec(t, d, cdbWrite(10, false), record(3, 10), 0).senseIs(t, "overwrite", scsi.SenseDataProtect, ascWORMOverwrite)
	exec(t, d, []byte{0x19, 0, 0, 0, 0, 0}, nil, 0).senseIs(t, "erase", scsi.SenseDataProtect, ascWORMOverwrite)
}

func TestFailpoints(t *testing.T) {
	var fail string
	store := embeddedStore(t)
	l := openTestLibrary(t, store, func(c *Config) {
		c.Failpoint = func(name string) error {
			if name == fail {
				return errors.New("injected")
			}
			return nil
		}
	})
	ctx := context.Background()
	tapes, _ := l.CreateTapes(ctx, CreateOptions{BarcodePrefix: "F", Count: 1, Size: 64 << 20})
	exec(t, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(t, "MOVE")
	d := l.Drives()[0]
	exec(t, d, cdbWrite(1000, false), record(1, 1000), 0).mustOK(t, "WRITE")
	exec(t, d, cdbWFM(1), nil, 0).mustOK(t, "WFM") // durable: record 1 + FM

	// A failed index commit fails WRITE FILEMARKS with a MEDIUM ERROR...
	exec(t, d, cdbWrite(1000, false), record(2, 1000), 0).mustOK(t, "WRITE 2")
	fail = "vtl/index-commit"
	exec(t, d, cdbWFM(1), nil, 0).senseIs(t, "WFM with failing commit", scsi.SenseMediumError, scsi.ASCWriteError)
	// ...and a failed segment upload fails the next durability point.
	fail = "vtl/segment-upload"
	exec(t, d, cdbWrite(1000, false), record(3, 1000), 0).mustOK(t, "WRITE 3")
	exec(t, d, cdbWFM(0), nil, 0).senseIs(t, "WFM with failing upload", scsi.SenseMediumError, scsi.ASCWriteError)
	fail = ""
	exec(t, d, cdbWFM(0), nil, 0).senseIs(t, "write error is sticky", scsi.SenseMediumError, scsi.ASCWriteError)
	// Simulate power loss: reopen without a clean close. The tape holds
	// what the last successful commit covered: record 1 and a filemark.
	l2 := openTestLibrary(t, store, nil)
	defer l2.Close(ctx)
	d2 := l2.Drives()[0]
	r := exec(t, d2, cdbRead(1000, false, false), nil, 1000).mustOK(t, "READ 1")
	if !eq(r.data, record(1, 1000)) {
		t.Fatal("record 1 differs")
	}
	exec(t, d2, cdbRead(1000, false, false), nil, 1000).senseIs(t, "FM", scsi.SenseNoSense, scsi.ASCFilemarkDetected)
	exec(t, d2, cdbRead(1000, false, false), nil, 1000).senseIs(t, "EOD", scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected)
}

func TestCheckFindsDamage(t *testing.T) {
	store := embeddedStore(t)
	l := openTestLibrary(t, store, nil)
	defer l.Close(context.Background())
	ctx := context.Background()
	bc, d := loadFirst(t, l, 64<<20)
	exec(t, d, cdbWrite(1000, false), record(1, 1000), 0).mustOK(t, "WRITE")
	exec(t, d, cdbWFM(1), nil, 0).mustOK(t, "WFM")
	mustCheck(t, l)
	if err := store.Delete(ctx, segKey("vtl/tapes/"+bc+"/", 1)); err != nil {
		t.Fatal(err)
	}
	problems, err := l.Check(ctx)
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0], "segment 1 missing") {
		t.Fatalf("check: %v %v", problems, err)
	}
}

func TestArchiveToOtherStore(t *testing.T) {
	cold := embeddedStore(t)
	l := openTestLibrary(t, embeddedStore(t), func(c *Config) {
		c.Pools = map[string]Pool{"cold": {Store: cold, Prefix: "tapes-cold/"}}
	})
	defer l.Close(context.Background())
	ctx := context.Background()
	tapes, err := l.CreateTapes(ctx, CreateOptions{BarcodePrefix: "CO", Count: 1, Size: 1 << 20, Pool: "cold"})
	if err != nil {
		t.Fatal(err)
	}
	bc := tapes[0].Barcode
	exec(t, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(t, "MOVE")
	d := l.Drives()[0]
	exec(t, d, cdbWrite(300, false), record(9, 300), 0).mustOK(t, "WRITE")
	exec(t, l.Changer(), cdbMove(addrDrive, tapes[0].Element), nil, 0).mustOK(t, "MOVE back")
	if _, err := l.ArchiveTape(ctx, bc); err != nil {
		t.Fatal(err)
	}
	if _, err := cold.Head(ctx, "tapes-cold/"+bc+"/index"); err != nil {
		t.Fatalf("index not in the pool's store: %v", err)
	}
	ti, err := l.RetrieveTape(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, l.Changer(), cdbMove(ti.Element, addrDrive), nil, 0).mustOK(t, "MOVE retrieved")
	r := exec(t, d, cdbRead(300, false, false), nil, 300).mustOK(t, "READ")
	if !eq(r.data, record(9, 300)) {
		t.Fatal("data differs after archive to another store")
	}
	mustCheck(t, l)
}

func TestArchiveStateSaveFails(t *testing.T) {
	fail := false
	store := embeddedStore(t)
	l := openTestLibrary(t, store, func(c *Config) {
		c.Failpoint = func(name string) error {
			if fail && name == "vtl/state-save" {
				return errors.New("injected")
			}
			return nil
		}
	})
	defer l.Close(context.Background())
	ctx := context.Background()
	bc, d := loadFirst(t, l, 1<<20)
	exec(t, d, cdbWrite(10, false), record(1, 10), 0).mustOK(t, "WRITE")
	ti, _ := l.Tape(bc)
	exec(t, l.Changer(), cdbMove(addrDrive, ti.Source), nil, 0).mustOK(t, "MOVE back")
	fail = true
	if _, err := l.ArchiveTape(ctx, bc); err == nil {
		t.Fatal("archive succeeded without saving the state")
	}
	fail = false
	// The tape is still in the library, readable where it was.
	ti, err := l.Tape(bc)
	if err != nil || ti.Status != StatusAvailable || ti.Element == 0 {
		t.Fatalf("after failed archive: %+v %v", ti, err)
	}
	exec(t, l.Changer(), cdbMove(ti.Element, addrDrive), nil, 0).mustOK(t, "MOVE")
	r := exec(t, d, cdbRead(10, false, false), nil, 10).mustOK(t, "READ")
	if !eq(r.data, record(1, 10)) {
		t.Fatal("data lost by a failed archive")
	}
}
