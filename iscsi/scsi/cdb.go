package scsi

import (
	"encoding/binary"
	"fmt"
)

// CDBLen returns the length of a CDB that starts with opcode as the SCSI
// operation code groups define it (SPC-4 4.3.2): 6 bytes for group 0, 10
// for groups 1 and 2, 16 for group 4 and 12 for group 5. It returns 0 for
// the reserved group 3 (other than the variable-length 7Fh, whose length is
// in its byte 7, see DecodeCDB) and the vendor-specific groups 6 and 7.
func CDBLen(opcode byte) int {
	switch opcode >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	if opcode == 0x7f {
		return 8
	}
	return 0
}

// CDB is the generic decoding of a command descriptor block: the fields
// that sit at the same place in every block-command CDB of a size (READ,
// WRITE, VERIFY, WRITE SAME, ...). Other commands read their own fields from
// the raw bytes, with the Uint helpers.
type CDB struct {
	// Raw is the CDB, trimmed to its length.
	Raw []byte
	// Opcode is byte 0.
	Opcode byte
	// ServiceAction is the service action of commands that have one
	// (low five bits of byte 1 for 9Eh/9Fh/A3h/A4h/5Eh/5Fh, bytes 8-9 for
	// variable-length CDBs); 0 otherwise.
	ServiceAction uint16
	// Flags is byte 1 (byte 10 of a variable-length CDB): DPO, FUA, BYTCHK,
	// UNMAP and similar bits of block commands.
	Flags byte
	// LBA is the logical block address field.
	LBA uint64
	// Length is the TRANSFER LENGTH (or NUMBER OF LOGICAL BLOCKS) field.
	// For 6-byte READ/WRITE it is the raw byte (0 means 256 there; the
	// caller decides).
	Length uint32
	// Group is the GROUP NUMBER field (0 where the CDB has none).
	Group byte
	// Control is the last byte.
	Control byte
}

// NACA reports whether the CONTROL byte's NACA bit is set.
func (c *CDB) NACA() bool { return c.Control&0x04 != 0 }

// Uint16 returns the big-endian 16-bit field at byte off.
func (c *CDB) Uint16(off int) uint16 { return binary.BigEndian.Uint16(c.Raw[off:]) }

// Uint24 returns the big-endian 24-bit field at byte off.
func (c *CDB) Uint24(off int) uint32 {
	return uint32(c.Raw[off])<<16 | uint32(c.Raw[off+1])<<8 | uint32(c.Raw[off+2])
}

// Uint32 returns the big-endian 32-bit field at byte off.
func (c *CDB) Uint32(off int) uint32 { return binary.BigEndian.Uint32(c.Raw[off:]) }

// Uint64 returns the big-endian 64-bit field at byte off.
func (c *CDB) Uint64(off int) uint64 { return binary.BigEndian.Uint64(c.Raw[off:]) }

// hasServiceAction reports opcodes whose byte 1 carries a service action.
func hasServiceAction(op byte) bool {
	switch op {
	case 0x5e, 0x5f, 0x9e, 0x9f, 0xa3, 0xa4, 0x48, 0x83, 0x84, 0x8c, 0x8d, 0x94, 0x95:
		return true
	}
	return false
}

// DecodeCDB decodes raw. It fails with ILLEGAL REQUEST / INVALID COMMAND
// OPERATION CODE for an empty CDB or an opcode in a reserved or vendor
// group, and INVALID FIELD IN CDB when raw is shorter than the opcode's
// CDB length. Extra trailing bytes are ignored. DecodeCDB does not
// allocate.
func DecodeCDB(raw []byte) (CDB, error) {
	var c CDB
	if len(raw) == 0 {
		return c, ErrInvalidOpcode().Wrap(fmt.Errorf("empty CDB"))
	}
	op := raw[0]
	n := CDBLen(op)
	if n == 0 {
		return c, ErrInvalidOpcode()
	}
	if len(raw) < n {
		return c, ErrInvalidField(0, -1).Wrap(fmt.Errorf("CDB opcode %#02x: %d bytes, need %d", op, len(raw), n))
	}
	if op == 0x7f {
		n = 8 + int(raw[7])
		if n < 12 || len(raw) < n {
			return c, ErrInvalidField(7, -1).Wrap(fmt.Errorf("variable-length CDB: additional length %d", raw[7]))
		}
		c.Raw, c.Opcode = raw[:n], op
		c.Control = raw[1]
		c.ServiceAction = binary.BigEndian.Uint16(raw[8:])
		if n >= 32 {
			c.Flags = raw[10]
			c.LBA = binary.BigEndian.Uint64(raw[12:])
			c.Length = binary.BigEndian.Uint32(raw[28:])
			c.Group = raw[6] & 0x1f
		}
		return c, nil
	}
	c.Raw, c.Opcode, c.Control = raw[:n], op, raw[n-1]
	c.Flags = raw[1]
	if hasServiceAction(op) {
		c.ServiceAction = uint16(raw[1] & 0x1f)
	}
	switch n {
	case 6:
		c.LBA = uint64(raw[1]&0x1f)<<16 | uint64(raw[2])<<8 | uint64(raw[3])
		c.Length = uint32(raw[4])
	case 10:
		c.LBA = uint64(binary.BigEndian.Uint32(raw[2:]))
		c.Length = uint32(binary.BigEndian.Uint16(raw[7:]))
		c.Group = raw[6] & 0x1f
	case 12:
		c.LBA = uint64(binary.BigEndian.Uint32(raw[2:]))
		c.Length = binary.BigEndian.Uint32(raw[6:])
		c.Group = raw[10] & 0x1f
	case 16:
		c.LBA = binary.BigEndian.Uint64(raw[2:])
		c.Length = binary.BigEndian.Uint32(raw[10:])
		c.Group = raw[14] & 0x1f
	}
	return c, nil
}
