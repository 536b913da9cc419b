package scsi_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func TestStatus(t *testing.T) {
	lba := scsi.ErrLBAOutOfRange()
	field := scsi.ErrInvalidField(2, 5)
	tests := []struct {
		name   string
		err    error
		status byte
		sense  []byte
	}{
		{"nil", nil, scsi.StatusGood, nil},
		{"sense", lba, scsi.StatusCheckCondition,
			[]byte{0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0}},
		{"wrapped sense", fmt.Errorf("ctx: %w", lba), scsi.StatusCheckCondition,
			[]byte{0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0}},
		{"field pointer", field, scsi.StatusCheckCondition,
			[]byte{0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xcd, 0, 2}},
		{"miscompare info", scsi.ErrMiscompare(0x1234), scsi.StatusCheckCondition,
			[]byte{0xf0, 0, 0xe, 0, 0, 0x12, 0x34, 10, 0, 0, 0, 0, 0x1d, 0, 0, 0, 0, 0}},
		{"conflict", scsi.ErrReservationConflict, scsi.StatusReservationConflict, nil},
		{"wrapped busy", fmt.Errorf("x: %w", scsi.ErrBusy), scsi.StatusBusy, nil},
		{"task set full", scsi.ErrTaskSetFull, scsi.StatusTaskSetFull, nil},
		{"other", errors.New("boom"), scsi.StatusCheckCondition,
			[]byte{0x70, 0, 4, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x44, 0, 0, 0, 0, 0}},
		{"status check condition", scsi.StatusError(scsi.StatusCheckCondition), scsi.StatusCheckCondition,
			[]byte{0x70, 0, 4, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x44, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, sense := scsi.Status(tt.err)
			if st != tt.status || !bytes.Equal(sense, tt.sense) {
				t.Fatalf("Status = %#x %x, want %#x %x", st, sense, tt.status, tt.sense)
			}
		})
	}
}

func TestSenseErrorIsAndUnwrap(t *testing.T) {
	cause := errors.New("disk on fire")
	err := fmt.Errorf("op: %w", scsi.ErrMediumError(scsi.ASCUnrecoveredReadError, cause))
	if !errors.Is(err, cause) {
		t.Fatal("cause not found")
	}
	if !errors.Is(err, scsi.NewSense(scsi.SenseMediumError, scsi.ASCUnrecoveredReadError)) {
		t.Fatal("sense not matched")
	}
	if errors.Is(err, scsi.ErrLBAOutOfRange()) {
		t.Fatal("wrong sense matched")
	}
}

func TestDescriptorSense(t *testing.T) {
	e := scsi.ErrInvalidField(7, -1).WithInfo(9)
	buf := make([]byte, scsi.DescriptorLen)
	n := e.Descriptor(buf)
	want := []byte{0x72, 5, 0x24, 0, 0, 0, 0, 20,
		0, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 9,
		2, 6, 0, 0, 0xc0, 0, 7, 0}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("descriptor sense %x, want %x", buf[:n], want)
	}
	tape := &scsi.SenseError{Key: scsi.SenseNoSense, Code: scsi.ASCFilemarkDetected, Filemark: true, ILI: true}
	n = tape.Fixed(buf)
	if n != 18 || buf[2] != 0xa0 || buf[13] != 1 {
		t.Fatalf("tape sense %x", buf[:n])
	}
}
