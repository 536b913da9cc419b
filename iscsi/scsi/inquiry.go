package scsi

import (
	"crypto/sha256"
	"encoding/binary"
)

// Peripheral device types (SPC-4 table 141).
const (
	TypeDisk          byte = 0x00
	TypeTape          byte = 0x01
	TypeMediumChanger byte = 0x08
	TypeUnknown       byte = 0x1f
)

// Version descriptors (SPC-4 table 147).
const (
	VersionSAM5  uint16 = 0x00a0
	VersionSPC4  uint16 = 0x0460
	VersionSBC3  uint16 = 0x04c0
	VersionSSC4  uint16 = 0x0560
	VersionSMC3  uint16 = 0x0480
	VersionISCSI uint16 = 0x0960
)

// Inquiry describes standard INQUIRY data (SPC-4 6.6.2). Package vtl uses it
// for tape drives and media changers too.
type Inquiry struct {
	// Qualifier is the peripheral qualifier (0: unit connected; 3: no unit
	// at this LUN).
	Qualifier byte
	// DeviceType is the peripheral device type.
	DeviceType byte
	// Removable sets RMB.
	Removable bool
	// Version is the VERSION field (6: SPC-4).
	Version byte
	// TPGS is the target port group support field (0..3).
	TPGS byte
	// Protect, ThirdPartyCopy, CmdQue and HiSup set the bits of those
	// names; MChngr marks an embedded medium changer.
	Protect, ThirdPartyCopy, CmdQue, HiSup, MChngr bool
	// Vendor, Product and Revision are space padded (or truncated) to 8,
	// 16 and 4 bytes.
	Vendor, Product, Revision string
	// VendorSpecific fills bytes 36-55 (space padded) when not empty; tape
	// drives put a serial number there.
	VendorSpecific string
	// Versions are up to 8 version descriptors.
	Versions []uint16
}

// InquiryLen is the length of the standard INQUIRY data Marshal builds.
const InquiryLen = 96

// Marshal writes the standard INQUIRY data into dst, which must hold
// InquiryLen bytes, and returns InquiryLen.
func (q *Inquiry) Marshal(dst []byte) int {
	b := dst[:InquiryLen]
	clear(b)
	b[0] = q.Qualifier<<5 | q.DeviceType&0x1f
	if q.Removable {
		b[1] = 0x80
	}
	b[2] = q.Version
	b[3] = 0x02 // response data format 2
	if q.HiSup {
		b[3] |= 0x10
	}
	b[4] = InquiryLen - 5
	b[5] = (q.TPGS & 3) << 4
	if q.ThirdPartyCopy {
		b[5] |= 0x08
	}
	if q.Protect {
		b[5] |= 0x01
	}
	if q.MChngr {
		b[6] |= 0x08
	}
	if q.CmdQue {
		b[7] = 0x02
	}
	PutASCII(b[8:16], q.Vendor)
	PutASCII(b[16:32], q.Product)
	PutASCII(b[32:36], q.Revision)
	if q.VendorSpecific != "" {
		PutASCII(b[36:56], q.VendorSpecific)
	}
	for i, v := range q.Versions {
		if i == 8 {
			break
		}
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return InquiryLen
}

// PutASCII copies s into dst, replacing characters outside 20h-7Eh with
// spaces and padding with spaces.
func PutASCII(dst []byte, s string) {
	for i := range dst {
		c := byte(' ')
		if i < len(s) && s[i] >= 0x20 && s[i] <= 0x7e {
			c = s[i]
		}
		dst[i] = c
	}
}

// AppendVPD appends a VPD page with the given peripheral byte (qualifier
// and device type), page code and body, filling in the 4-byte header.
func AppendVPD(dst []byte, peripheral, page byte, body []byte) []byte {
	dst = append(dst, peripheral, page, 0, 0)
	binary.BigEndian.PutUint16(dst[len(dst)-2:], uint16(len(body)))
	return append(dst, body...)
}

// Designator code sets, associations and types (SPC-4 7.8.6.1).
const (
	CodeSetBinary byte = 1
	CodeSetASCII  byte = 2
	CodeSetUTF8   byte = 3

	AssocLU         byte = 0
	AssocTargetPort byte = 1
	AssocTarget     byte = 2

	DesigVendorSpecific  byte = 0
	DesigT10Vendor       byte = 1
	DesigEUI64           byte = 2
	DesigNAA             byte = 3
	DesigRelativePort    byte = 4
	DesigTargetPortGroup byte = 5
	DesigSCSIName        byte = 8

	// ProtocolISCSI is the iSCSI protocol identifier.
	ProtocolISCSI byte = 5
)

// AppendDesignator appends one designation descriptor of VPD page 83h.
// When piv is set the protocol identifier protocol applies.
func AppendDesignator(dst []byte, protocol byte, piv bool, codeSet, assoc, typ byte, id []byte) []byte {
	b0 := protocol<<4 | codeSet&0x0f
	b1 := (assoc&3)<<4 | typ&0x0f
	if piv {
		b1 |= 0x80
	}
	dst = append(dst, b0, b1, 0, byte(len(id)))
	return append(dst, id...)
}

// SCSINameString returns name as the value of a SCSI name string
// designator: null terminated and padded with nulls to a multiple of four
// bytes (SPC-4 7.8.6.11).
func SCSINameString(name string) []byte {
	n := (len(name) + 4) &^ 3
	b := make([]byte, n)
	copy(b, name)
	return b
}

// NAARegisteredExtended builds a 16-byte NAA IEEE Registered Extended
// designator (NAA 6h) from a 24-bit IEEE company ID and a 16-byte unique
// identifier. The designator has room for 100 identifier bits, so they are
// taken from the SHA-256 digest of id: every bit of id matters, and distinct
// ids give distinct designators with overwhelming probability.
func NAARegisteredExtended(oui uint32, id [16]byte) []byte {
	sum := sha256.Sum256(id[:])
	hi, lo := binary.BigEndian.Uint64(sum[0:8]), binary.BigEndian.Uint64(sum[8:16])
	b := make([]byte, 16)
	// NAA (4 bits) | company ID (24 bits) | vendor specific identifier (36
	// bits) | vendor specific identifier extension (64 bits).
	binary.BigEndian.PutUint64(b[0:8], uint64(6)<<60|uint64(oui&0xffffff)<<36|hi>>28)
	binary.BigEndian.PutUint64(b[8:16], lo)
	return b
}

// Respond copies data into cmd.DataIn, truncated to the allocation length
// alloc and to the buffer size, and returns the number of bytes copied.
func Respond(cmd *Command, data []byte, alloc int) int {
	n := min(len(data), alloc, len(cmd.DataIn))
	return copy(cmd.DataIn[:n], data)
}
