package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file holds every error value of the package and Status, the one place
// where an error returned by LogicalUnit.Execute becomes a SCSI status byte
// and sense data on the wire. Logical units return *SenseError for CHECK
// CONDITION, StatusError for a bare status (RESERVATION CONFLICT, BUSY, TASK
// SET FULL), and may return any other error, which is reported as a hardware
// error (internal target failure) so that a bug or a backend failure never
// reaches the initiator as GOOD.

// Sense keys (SPC-4 table 27).
const (
	SenseNoSense        byte = 0x0
	SenseRecoveredError byte = 0x1
	SenseNotReady       byte = 0x2
	SenseMediumError    byte = 0x3
	SenseHardwareError  byte = 0x4
	SenseIllegalRequest byte = 0x5
	SenseUnitAttention  byte = 0x6
	SenseDataProtect    byte = 0x7
	SenseBlankCheck     byte = 0x8
	SenseCopyAborted    byte = 0xA
	SenseAbortedCommand byte = 0xB
	SenseVolumeOverflow byte = 0xD
	SenseMiscompare     byte = 0xE
)

// ASC is an additional sense code (high byte) and additional sense code
// qualifier (low byte) pair, written as in the SPC-4 tables: 0x2400 is
// INVALID FIELD IN CDB (24h/00h).
type ASC uint16

// Additional sense codes used by the disk emulation and available to other
// device types.
const (
	ASCNoAdditionalSense          ASC = 0x0000
	ASCFilemarkDetected           ASC = 0x0001
	ASCEndOfPartitionDetected     ASC = 0x0002
	ASCSetmarkDetected            ASC = 0x0003
	ASCBeginningOfPartition       ASC = 0x0004
	ASCEndOfDataDetected          ASC = 0x0005
	ASCNotReadyCauseNotReportable ASC = 0x0400
	ASCNotReadyBecomingReady      ASC = 0x0401
	ASCNotReadyInitCmdRequired    ASC = 0x0402
	ASCNotReadyManualIntervention ASC = 0x0403
	ASCNotReadyFormatInProgress   ASC = 0x0404
	ASCWriteError                 ASC = 0x0C00
	ASCUnrecoveredReadError       ASC = 0x1100
	ASCMiscompareDuringVerify     ASC = 0x1D00
	ASCParameterListLengthError   ASC = 0x1A00
	ASCInvalidOpcode              ASC = 0x2000
	ASCLBAOutOfRange              ASC = 0x2100
	ASCInvalidFieldInCDB          ASC = 0x2400
	ASCLUNotSupported             ASC = 0x2500
	ASCInvalidFieldInParamList    ASC = 0x2600
	ASCParameterNotSupported      ASC = 0x2601
	ASCParameterValueInvalid      ASC = 0x2602
	ASCInvalidRelease             ASC = 0x2604 // INVALID RELEASE OF PERSISTENT RESERVATION
	ASCWriteProtected             ASC = 0x2700
	ASCNotReadyToReadyChange      ASC = 0x2800
	ASCImportExportAccessed       ASC = 0x2801
	ASCPowerOnResetOccurred       ASC = 0x2900
	ASCPowerOnOccurred            ASC = 0x2901
	ASCBusResetOccurred           ASC = 0x2902
	ASCBusDeviceResetOccurred     ASC = 0x2903
	ASCITNexusLossOccurred        ASC = 0x2907
	ASCParametersChanged          ASC = 0x2A00
	ASCModeParametersChanged      ASC = 0x2A01
	ASCReservationsPreempted      ASC = 0x2A03
	ASCReservationsReleased       ASC = 0x2A04
	ASCRegistrationsPreempted     ASC = 0x2A05
	ASCCapacityDataChanged        ASC = 0x2A09
	ASCCommandsClearedByAnother   ASC = 0x2F00
	ASCSavingParamsNotSupported   ASC = 0x3900
	ASCMediumNotPresent           ASC = 0x3A00
	ASCMediumRemovalPrevented     ASC = 0x5302
	ASCInternalTargetFailure      ASC = 0x4400
	ASCInsufficientResources      ASC = 0x5503
	ASCInsufficientRegResources   ASC = 0x5504
	ASCReportedLUNsDataChanged    ASC = 0x3F0E
	ASCInquiryDataChanged         ASC = 0x3F03
	ASCLogicalUnitCommFailure     ASC = 0x0800
)

// SenseError is a CHECK CONDITION with sense data. It optionally wraps the
// error that caused it (for logs; the cause never reaches the wire).
type SenseError struct {
	// Key is the sense key.
	Key byte
	// Code is the additional sense code and qualifier.
	Code ASC
	// Info is the INFORMATION field, reported when InfoValid is set (the
	// fixed format VALID bit).
	Info      uint64
	InfoValid bool
	// CmdInfo is the COMMAND-SPECIFIC INFORMATION field.
	CmdInfo uint64
	// Filemark, EOM and ILI are the stream-device flags of byte 2 of fixed
	// sense data (used by tape drives).
	Filemark, EOM, ILI bool
	// FieldValid marks Field, InCDB, BitValid and Bit as the sense-key
	// specific field pointer (SKSV) of INVALID FIELD IN CDB / PARAMETER
	// LIST: Field is the byte offset, InCDB tells whether it points into the
	// CDB (C/D bit) or into the parameter data, and Bit, when BitValid, is
	// the bit within that byte.
	FieldValid bool
	InCDB      bool
	BitValid   bool
	Field      uint16
	Bit        uint8
	// Err is the underlying cause, if any.
	Err error
}

// NewSense returns a *SenseError with the given sense key and code.
func NewSense(key byte, code ASC) *SenseError {
	return &SenseError{Key: key, Code: code}
}

// Error implements error.
func (e *SenseError) Error() string {
	s := fmt.Sprintf("scsi: sense key %#x asc/ascq %02x/%02x", e.Key, byte(e.Code>>8), byte(e.Code))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *SenseError) Unwrap() error { return e.Err }

// Is reports whether target is a *SenseError with the same key and code, so
// that errors.Is(err, NewSense(SenseIllegalRequest, ASCLBAOutOfRange))
// works.
func (e *SenseError) Is(target error) bool {
	t, ok := target.(*SenseError)
	return ok && t.Key == e.Key && t.Code == e.Code
}

// WithInfo returns e with the INFORMATION field set.
func (e *SenseError) WithInfo(info uint64) *SenseError {
	e.Info, e.InfoValid = info, true
	return e
}

// Wrap returns e with cause set as the underlying error.
func (e *SenseError) Wrap(cause error) *SenseError {
	e.Err = cause
	return e
}

// FixedLen is the length of fixed-format sense data built by Fixed.
const FixedLen = 18

// Fixed writes fixed-format sense data (response code 70h, SPC-4 4.5.3)
// into dst, which must hold FixedLen bytes, and returns FixedLen.
func (e *SenseError) Fixed(dst []byte) int {
	b := dst[:FixedLen]
	clear(b)
	b[0] = 0x70
	if e.InfoValid {
		b[0] |= 0x80
	}
	b[2] = e.Key & 0x0f
	if e.Filemark {
		b[2] |= 0x80
	}
	if e.EOM {
		b[2] |= 0x40
	}
	if e.ILI {
		b[2] |= 0x20
	}
	binary.BigEndian.PutUint32(b[3:7], uint32(e.Info))
	b[7] = FixedLen - 8
	binary.BigEndian.PutUint32(b[8:12], uint32(e.CmdInfo))
	b[12], b[13] = byte(e.Code>>8), byte(e.Code)
	e.putSKS(b[15:18])
	return FixedLen
}

func (e *SenseError) putSKS(b []byte) {
	if !e.FieldValid {
		return
	}
	b[0] = 0x80
	if e.InCDB {
		b[0] |= 0x40
	}
	if e.BitValid {
		b[0] |= 0x08 | e.Bit&0x07
	}
	binary.BigEndian.PutUint16(b[1:3], e.Field)
}

// DescriptorLen is the maximum length of descriptor-format sense data built
// by Descriptor.
const DescriptorLen = 8 + 12 + 8

// Descriptor writes descriptor-format sense data (response code 72h, SPC-4
// 4.5.2) into dst, which must hold DescriptorLen bytes, and returns its
// length. It carries an information descriptor when InfoValid and a
// sense-key specific descriptor when FieldValid.
func (e *SenseError) Descriptor(dst []byte) int {
	b := dst[:DescriptorLen]
	clear(b)
	b[0] = 0x72
	b[1] = e.Key & 0x0f
	b[2], b[3] = byte(e.Code>>8), byte(e.Code)
	n := 8
	if e.InfoValid {
		b[n] = 0x00
		b[n+1] = 0x0a
		b[n+2] = 0x80
		binary.BigEndian.PutUint64(b[n+4:n+12], e.Info)
		n += 12
	}
	if e.FieldValid {
		b[n] = 0x02
		b[n+1] = 0x06
		e.putSKS(b[n+4 : n+7])
		n += 8
	}
	b[7] = byte(n - 8)
	return n
}

// StatusError is a bare SCSI status without sense data, such as
// RESERVATION CONFLICT, BUSY or TASK SET FULL.
type StatusError byte

// Error implements error.
func (e StatusError) Error() string {
	switch byte(e) {
	case StatusReservationConflict:
		return "scsi: reservation conflict"
	case StatusBusy:
		return "scsi: busy"
	case StatusTaskSetFull:
		return "scsi: task set full"
	case StatusTaskAborted:
		return "scsi: task aborted"
	}
	return fmt.Sprintf("scsi: status %#02x", byte(e))
}

// Bare statuses as errors.
const (
	ErrReservationConflict = StatusError(StatusReservationConflict)
	ErrBusy                = StatusError(StatusBusy)
	ErrTaskSetFull         = StatusError(StatusTaskSetFull)
)

// Status turns an error returned by LogicalUnit.Execute into the SCSI
// status and sense data sent to the initiator. It is the only place where
// errors become wire bytes:
//
//   - nil is GOOD with no sense data;
//   - a *SenseError (found with errors.As) is CHECK CONDITION with 18 bytes
//     of fixed-format sense data;
//   - a StatusError is that status with no sense data;
//   - anything else is CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET
//     FAILURE (44h/00h).
func Status(err error) (status byte, sense []byte) {
	if err == nil {
		return StatusGood, nil
	}
	var se *SenseError
	if errors.As(err, &se) {
		sense = make([]byte, FixedLen)
		se.Fixed(sense)
		return StatusCheckCondition, sense
	}
	var st StatusError
	if errors.As(err, &st) {
		if byte(st) == StatusCheckCondition {
			return Status(NewSense(SenseHardwareError, ASCInternalTargetFailure))
		}
		return byte(st), nil
	}
	return Status(NewSense(SenseHardwareError, ASCInternalTargetFailure))
}

// Constructors for the common conditions. Each call returns a fresh value
// so callers may set INFORMATION or wrap a cause.

// ErrInvalidOpcode is ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE.
func ErrInvalidOpcode() *SenseError { return NewSense(SenseIllegalRequest, ASCInvalidOpcode) }

// ErrInvalidField is ILLEGAL REQUEST / INVALID FIELD IN CDB with the field
// pointer at byte off of the CDB, and bit if bit is in 0..7 (pass -1 for no
// bit pointer).
func ErrInvalidField(off, bit int) *SenseError {
	return fieldErr(ASCInvalidFieldInCDB, true, off, bit)
}

// ErrInvalidParam is ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST with
// the field pointer at byte off of the parameter data, and bit if bit is in
// 0..7 (pass -1 for no bit pointer).
func ErrInvalidParam(off, bit int) *SenseError {
	return fieldErr(ASCInvalidFieldInParamList, false, off, bit)
}

func fieldErr(code ASC, cdb bool, off, bit int) *SenseError {
	e := NewSense(SenseIllegalRequest, code)
	e.FieldValid, e.InCDB, e.Field = true, cdb, uint16(off)
	if bit >= 0 && bit <= 7 {
		e.BitValid, e.Bit = true, uint8(bit)
	}
	return e
}

// ErrLBAOutOfRange is ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE.
func ErrLBAOutOfRange() *SenseError { return NewSense(SenseIllegalRequest, ASCLBAOutOfRange) }

// ErrParamListLength is ILLEGAL REQUEST / PARAMETER LIST LENGTH ERROR.
func ErrParamListLength() *SenseError {
	return NewSense(SenseIllegalRequest, ASCParameterListLengthError)
}

// ErrLUNotSupported is ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED.
func ErrLUNotSupported() *SenseError { return NewSense(SenseIllegalRequest, ASCLUNotSupported) }

// ErrWriteProtected is DATA PROTECT / WRITE PROTECTED.
func ErrWriteProtected() *SenseError { return NewSense(SenseDataProtect, ASCWriteProtected) }

// ErrMiscompare is MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION with the
// byte offset of the first differing byte in INFORMATION.
func ErrMiscompare(offset uint64) *SenseError {
	return NewSense(SenseMiscompare, ASCMiscompareDuringVerify).WithInfo(offset)
}

// ErrNotReady is NOT READY with the given 04h/xx code.
func ErrNotReady(code ASC) *SenseError { return NewSense(SenseNotReady, code) }

// ErrMediumError is MEDIUM ERROR with the given code (for example
// ASCUnrecoveredReadError or ASCWriteError) wrapping cause.
func ErrMediumError(code ASC, cause error) *SenseError {
	return NewSense(SenseMediumError, code).Wrap(cause)
}

// ErrHardware is HARDWARE ERROR / INTERNAL TARGET FAILURE wrapping cause.
func ErrHardware(cause error) *SenseError {
	return NewSense(SenseHardwareError, ASCInternalTargetFailure).Wrap(cause)
}

// ErrAborted is ABORTED COMMAND with the given code wrapping cause.
func ErrAborted(code ASC, cause error) *SenseError {
	return NewSense(SenseAbortedCommand, code).Wrap(cause)
}

// ErrUnitAttention is UNIT ATTENTION with the given code.
func ErrUnitAttention(code ASC) *SenseError { return NewSense(SenseUnitAttention, code) }
