package vtl

import (
	"errors"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// This file holds the package's error values. Lifecycle methods of Library
// wrap them with %w, so callers (the daemon's REST API) classify failures
// with errors.Is; SCSI commands fail with *scsi.SenseError values built
// here and by package scsi, which scsi.Status turns into wire bytes.

// Lifecycle errors.
var (
	// ErrNotFound: no tape has the barcode.
	ErrNotFound = errors.New("vtl: tape not found")
	// ErrInvalid: the request is malformed (bad barcode prefix, size, pool,
	// count).
	ErrInvalid = errors.New("vtl: invalid request")
	// ErrBusy: the tape is in a drive, or in the wrong place or state for
	// the operation.
	ErrBusy = errors.New("vtl: tape busy or in the wrong state")
	// ErrNoSpace: no free slot, or the library holds its maximum number of
	// tapes.
	ErrNoSpace = errors.New("vtl: no free slot or tape limit reached")
	// ErrRetentionLocked: the tape's pool retention lock forbids deleting
	// it before its retain-until date (compliance mode, or governance mode
	// without the bypass flag).
	ErrRetentionLocked = errors.New("vtl: tape is retention locked")
	// ErrBarcodeUsed: the barcode was issued before; barcodes are never
	// reused.
	ErrBarcodeUsed = errors.New("vtl: barcode already used")
	// ErrCorruptIndex: a tape index or segment object failed validation.
	ErrCorruptIndex = errors.New("vtl: corrupt tape index")
	// ErrConflict: the library state object was changed by someone else
	// (two gateways on one prefix).
	ErrConflict = errors.New("vtl: library state changed concurrently")
	// ErrClosed: the library was closed.
	ErrClosed = errors.New("vtl: library closed")
)

// Additional sense codes of SSC-3 and SMC-3 that package scsi does not
// define.
const (
	ascEndOfPartition        scsi.ASC = 0x0002 // END-OF-PARTITION/MEDIUM DETECTED
	ascInvalidElementAddress scsi.ASC = 0x2101
	ascSequentialPositionErr scsi.ASC = 0x3B00 // SEQUENTIAL POSITIONING ERROR
	ascDestinationFull       scsi.ASC = 0x3B0D // MEDIUM DESTINATION ELEMENT FULL
	ascSourceEmpty           scsi.ASC = 0x3B0E // MEDIUM SOURCE ELEMENT EMPTY
	ascMediumMagazineRemoved scsi.ASC = 0x3B12
	ascWORMOverwrite         scsi.ASC = 0x300C // WORM MEDIUM - OVERWRITE ATTEMPTED
	ascCannotReadMediumFmt   scsi.ASC = 0x3002 // CANNOT READ MEDIUM - INCOMPATIBLE FORMAT
	ascLoadEjectFailed       scsi.ASC = 0x5300 // MEDIA LOAD OR EJECT FAILED
)

// errNoMedium is NOT READY / MEDIUM NOT PRESENT.
func errNoMedium() *scsi.SenseError { return scsi.ErrNotReady(scsi.ASCMediumNotPresent) }

// errInvalidElement is ILLEGAL REQUEST / INVALID ELEMENT ADDRESS.
func errInvalidElement() *scsi.SenseError {
	return scsi.NewSense(scsi.SenseIllegalRequest, ascInvalidElementAddress)
}
