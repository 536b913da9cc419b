package scsi

import (
	"context"
	"encoding/binary"
)

// EncodeLUN encodes lun as an 8-byte SAM LUN field: peripheral device
// addressing for LUNs below 256, flat space addressing below 16384, and the
// raw 64-bit value (assumed to be already in SAM format) above.
func EncodeLUN(lun uint64) [8]byte {
	var b [8]byte
	switch {
	case lun < 256:
		b[1] = byte(lun)
	case lun < 1<<14:
		b[0] = 0x40 | byte(lun>>8)
		b[1] = byte(lun)
	default:
		binary.BigEndian.PutUint64(b[:], lun)
	}
	return b
}

// DecodeLUN is the inverse of EncodeLUN for single-level peripheral and
// flat space LUNs; other formats are returned as the raw 64-bit value.
func DecodeLUN(b [8]byte) uint64 {
	if b[2]|b[3]|b[4]|b[5]|b[6]|b[7] == 0 {
		switch b[0] >> 6 {
		case 0:
			if b[0] == 0 {
				return uint64(b[1])
			}
		case 1:
			return uint64(b[0]&0x3f)<<8 | uint64(b[1])
		}
	}
	return binary.BigEndian.Uint64(b[:])
}

// ReportLUNsData writes REPORT LUNS parameter data (SPC-4 6.33) listing
// luns, encoded with EncodeLUN, into dst. The LUN LIST LENGTH always
// describes the whole list; only as much as fits in dst is written. It
// returns the number of bytes written, so a dst sized to the allocation
// length yields the truncated response directly.
func ReportLUNsData(luns []uint64, dst []byte) int {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(8*len(luns)))
	n := copy(dst, hdr[:])
	for _, l := range luns {
		if n >= len(dst) {
			break
		}
		e := EncodeLUN(l)
		n += copy(dst[n:], e[:])
	}
	return n
}

// NoSuchLU is the LogicalUnit the transport uses for a LUN that has no
// logical unit. INQUIRY answers with peripheral qualifier 011b and device
// type 1Fh, REQUEST SENSE returns LOGICAL UNIT NOT SUPPORTED as parameter
// data, and every other command fails with ILLEGAL REQUEST / LOGICAL UNIT
// NOT SUPPORTED. The zero value is ready to use.
type NoSuchLU struct {
	// Vendor, Product and Revision fill the standard INQUIRY data.
	Vendor, Product, Revision string
}

var _ LogicalUnit = NoSuchLU{}

// Execute implements LogicalUnit.
func (u NoSuchLU) Execute(_ context.Context, cmd *Command) (int, error) {
	c, err := DecodeCDB(cmd.CDB)
	if err != nil {
		return 0, err
	}
	switch c.Opcode {
	case 0x12: // INQUIRY
		alloc := int(c.Uint16(3))
		if c.Raw[1]&0x01 != 0 {
			if c.Raw[2] != 0 {
				return 0, ErrInvalidField(2, -1)
			}
			return Respond(cmd, AppendVPD(nil, 3<<5|TypeUnknown, 0, []byte{0}), alloc), nil
		}
		if c.Raw[2] != 0 {
			return 0, ErrInvalidField(2, -1)
		}
		q := Inquiry{Qualifier: 3, DeviceType: TypeUnknown, Version: 6, Vendor: u.Vendor, Product: u.Product, Revision: u.Revision}
		var buf [InquiryLen]byte
		q.Marshal(buf[:])
		return Respond(cmd, buf[:], alloc), nil
	case 0x03: // REQUEST SENSE
		return RespondSense(cmd, ErrLUNotSupported(), c.Raw[1]&0x01 != 0, int(c.Raw[4])), nil
	}
	return 0, ErrLUNotSupported()
}

// Reset implements LogicalUnit; there is no state to reset.
func (NoSuchLU) Reset(ResetKind, Nexus) {}

// NexusLost implements LogicalUnit; there is no per-nexus state.
func (NoSuchLU) NexusLost(Nexus) {}
