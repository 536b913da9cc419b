package vtl

import (
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// TestModeSensePageZero checks MODE SENSE with page code 00h, which Linux
// st sends (6-byte CDB, allocation length 12) at every open to learn the
// density code, block length, write protection and buffered mode from the
// header and block descriptor: it answers those without any page.
func TestModeSensePageZero(t *testing.T) {
	l := openTestLibrary(t, embeddedStore(t), nil)
	_, d := loadFirst(t, l, 64<<20)
	exec(t, d, []byte{0, 0, 0, 0, 0, 0}, nil, 0) // clear the unit attention
	r := exec(t, d, []byte{0x1a, 0, 0, 0, 12, 0}, nil, 12).mustOK(t, "MODE SENSE(6) page 00h")
	want := []byte{11, 0, 0x10, 8, densityLTO5, 0, 0, 0, 0, 0, 0, 0}
	if !eq(r.data, want) {
		t.Fatalf("MODE SENSE(6) page 00h = % x, want % x", r.data, want)
	}
	r = exec(t, d, []byte{0x5a, 0, 0, 0, 0, 0, 0, 0, 255, 0}, nil, 255).mustOK(t, "MODE SENSE(10) page 00h")
	want10 := []byte{0, 14, 0, 0x10, 0, 0, 0, 8, densityLTO5, 0, 0, 0, 0, 0, 0, 0}
	if !eq(r.data, want10) {
		t.Fatalf("MODE SENSE(10) page 00h = % x, want % x", r.data, want10)
	}
	// Page 00h with a subpage is still an invalid field.
	exec(t, d, []byte{0x1a, 0, 0, 1, 255, 0}, nil, 255).senseIs(t, "page 00h subpage 01h", scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
}
