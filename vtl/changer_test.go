package vtl

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func TestChangerModels(t *testing.T) {
	for _, tc := range []struct{ model, vendor, product, rev string }{
		{ModelAWS, "AWS", "Gateway-VTL", "0100"},
		{ModelSTK, "STK", "L700", "0105"},
		{ModelIBM, "IBM", "03584L32", "0402"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			l := openTestLibrary(t, embeddedStore(t), func(c *Config) { c.ChangerModel = tc.model })
			defer l.Close(context.Background())
			r := exec(t, l.Changer(), []byte{0x12, 0, 0, 0, 96, 0}, nil, 96).mustOK(t, "INQUIRY")
			if r.data[0] != scsi.TypeMediumChanger || string(trimSpace(r.data[8:16])) != tc.vendor ||
				string(trimSpace(r.data[16:32])) != tc.product || string(r.data[32:36]) != tc.rev {
				t.Fatalf("inquiry % x", r.data[:36])
			}
		})
	}
	if _, err := Open(context.Background(), Config{Store: embeddedStore(t), Gateway: "x", ChangerModel: "ACME"}); err == nil {
		t.Fatal("unknown model accepted")
	}
}

func TestChangerElementsAndMoves(t *testing.T) {
	l := openTestLibrary(t, embeddedStore(t), nil)
	defer l.Close(context.Background())
	c := l.Changer()
	tapes, err := l.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "EL", Count: 2, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// Element address assignment page.
	r := exec(t, c, []byte{0x1a, 0x08, 0x1d, 0, 255, 0}, nil, 255).mustOK(t, "MODE SENSE 1Dh")
	ea := r.data[4+2:]
	if binary.BigEndian.Uint16(ea[4:]) != addrSlot || binary.BigEndian.Uint16(ea[6:]) != 8 ||
		binary.BigEndian.Uint16(ea[12:]) != addrDrive || binary.BigEndian.Uint16(ea[14:]) != 2 {
		t.Fatalf("element address page % x", ea)
	}
	for _, tc := range []struct {
		name     string
		src, dst uint16
		key      byte
		code     scsi.ASC
	}{
		{"empty source", addrSlot + 5, addrDrive, scsi.SenseIllegalRequest, ascSourceEmpty},
		{"full destination", addrSlot, addrSlot + 1, scsi.SenseIllegalRequest, ascDestinationFull},
		{"bad address", addrSlot, 0x7777, scsi.SenseIllegalRequest, ascInvalidElementAddress},
		{"to transport", addrSlot, addrTransport, scsi.SenseIllegalRequest, ascInvalidElementAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exec(t, c, cdbMove(tc.src, tc.dst), nil, 0).senseIs(t, tc.name, tc.key, tc.code)
		})
	}
	exec(t, c, cdbMove(tapes[1].Element, addrDrive+1), nil, 0).mustOK(t, "MOVE to drive 2")
	// PREVENT on the drive blocks moving the tape out.
	d := l.Drives()[1]
	exec(t, d, []byte{0x1e, 0, 0, 0, 1, 0}, nil, 0).mustOK(t, "PREVENT")
	exec(t, c, cdbMove(addrDrive+1, tapes[1].Element), nil, 0).senseIs(t, "MOVE prevented", scsi.SenseIllegalRequest, scsi.ASCMediumRemovalPrevented)
	exec(t, d, []byte{0x1e, 0, 0, 0, 0, 0}, nil, 0).mustOK(t, "ALLOW")

	// READ ELEMENT STATUS of the drives with VOLTAG and DVCID.
	cdb := []byte{0xb8, 0x10 | etDrive, 0, 0, 0, 10, 0x01, 0, 0x10, 0, 0, 0}
	r = exec(t, c, cdb, nil, 4096).mustOK(t, "READ ELEMENT STATUS")
	if n := binary.BigEndian.Uint16(r.data[2:]); n != 2 {
		t.Fatalf("%d elements", n)
	}
	page := r.data[8:]
	dl := int(binary.BigEndian.Uint16(page[2:]))
	if page[0] != etDrive || page[1]&0x80 == 0 || dl != 12+36+4+34 {
		t.Fatalf("page header % x", page[:8])
	}
	d2 := page[8+dl : 8+2*dl]
	if binary.BigEndian.Uint16(d2) != addrDrive+1 || d2[2]&0x01 == 0 || d2[9]&0x80 == 0 ||
		binary.BigEndian.Uint16(d2[10:]) != tapes[1].Element || string(trimSpace(d2[12:44])) != tapes[1].Barcode {
		t.Fatalf("drive 2 descriptor % x", d2)
	}
	if id := string(d2[48+4+24 : 48+4+34]); id != l.Drives()[1].Serial() {
		t.Fatalf("DVCID serial %q, want %q", id, l.Drives()[1].Serial())
	}
	// Allocation length truncation keeps the full byte count.
	cdb[9] = 16
	cdb[8] = 0
	r = exec(t, c, cdb, nil, 4096).mustOK(t, "READ ELEMENT STATUS truncated")
	if len(r.data) != 16 || int(r.data[5])<<16|int(r.data[6])<<8|int(r.data[7]) != 8+2*dl {
		t.Fatalf("truncated: % x", r.data)
	}
	// EXCHANGE MEDIUM: drive 2 <-> slot of tape 0, via drive 1.
	ex := make([]byte, 12)
	ex[0] = 0xa6
	binary.BigEndian.PutUint16(ex[4:], addrDrive+1)
	binary.BigEndian.PutUint16(ex[6:], tapes[0].Element)
	binary.BigEndian.PutUint16(ex[8:], addrDrive)
	exec(t, c, ex, nil, 0).mustOK(t, "EXCHANGE MEDIUM")
	if ti, _ := l.Tape(tapes[0].Barcode); ti.Element != addrDrive {
		t.Fatalf("tape 0 at %#x", ti.Element)
	}
	if ti, _ := l.Tape(tapes[1].Barcode); ti.Element != tapes[0].Element {
		t.Fatalf("tape 1 at %#x", ti.Element)
	}
	mustCheck(t, l)
}

func TestEjectHook(t *testing.T) {
	var ejected []string
	l := openTestLibrary(t, embeddedStore(t), func(c *Config) { c.OnEject = func(bc string) { ejected = append(ejected, bc) } })
	defer l.Close(context.Background())
	tapes, _ := l.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "EJ", Count: 1, Size: 1 << 20})
	exec(t, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(t, "MOVE to drive")
	exec(t, l.Changer(), cdbMove(addrDrive, addrIE), nil, 0).mustOK(t, "MOVE to I/E")
	if len(ejected) != 1 || ejected[0] != tapes[0].Barcode {
		t.Fatalf("ejected %v", ejected)
	}
	if got := l.Drives()[0].Loaded(); got != "" {
		t.Fatalf("drive still holds %q", got)
	}
	// The daemon's reaction: archive the ejected tape.
	if ti, err := l.ArchiveTape(context.Background(), ejected[0]); err != nil || ti.Location != "archive" {
		t.Fatal(ti, err)
	}
}
