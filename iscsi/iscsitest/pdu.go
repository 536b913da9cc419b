package iscsitest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Opcodes the initiator sends and receives (RFC 7143 section 11).
const (
	OpNopOut     = 0x00
	OpSCSICmd    = 0x01
	OpTaskMgmt   = 0x02
	OpLoginReq   = 0x03
	OpTextReq    = 0x04
	OpDataOut    = 0x05
	OpLogoutReq  = 0x06
	OpNopIn      = 0x20
	OpSCSIResp   = 0x21
	OpTaskResp   = 0x22
	OpLoginResp  = 0x23
	OpTextResp   = 0x24
	OpDataIn     = 0x25
	OpLogoutResp = 0x26
	OpR2T        = 0x31
	OpAsync      = 0x32
	OpReject     = 0x3f
)

const reserved = 0xffffffff

// crcTable returns the CRC32C table (cached by the crc32 package).
func crcTable() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// PDU is one iSCSI PDU: a 48-byte basic header segment, the additional
// header segments and the data segment.
type PDU struct {
	BHS  [48]byte
	AHS  []byte
	Data []byte
}

// Opcode returns the PDU's opcode.
func (p *PDU) Opcode() byte { return p.BHS[0] & 0x3f }

// U32 reads a big-endian field of the BHS.
func (p *PDU) U32(off int) uint32 { return binary.BigEndian.Uint32(p.BHS[off:]) }

// SetU32 writes a big-endian field of the BHS.
func (p *PDU) SetU32(off int, v uint32) { binary.BigEndian.PutUint32(p.BHS[off:], v) }

// Encode returns the PDU in wire form, with the given digests.
func (p *PDU) Encode(headerDigest, dataDigest bool) []byte {
	h := p.BHS
	h[4] = byte(len(p.AHS) / 4)
	n := len(p.Data)
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
	out := append([]byte(nil), h[:]...)
	out = append(out, p.AHS...)
	if headerDigest {
		out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable()))
	}
	if n > 0 {
		start := len(out)
		out = append(out, p.Data...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
		if dataDigest {
			out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out[start:], crcTable()))
		}
	}
	return out
}

// ReadPDU reads one PDU, checking digests when enabled.
func ReadPDU(r io.Reader, headerDigest, dataDigest bool) (*PDU, error) {
	p := &PDU{}
	if _, err := io.ReadFull(r, p.BHS[:]); err != nil {
		return nil, err
	}
	if n := int(p.BHS[4]) * 4; n > 0 {
		p.AHS = make([]byte, n)
		if _, err := io.ReadFull(r, p.AHS); err != nil {
			return nil, err
		}
	}
	if headerDigest {
		var d [4]byte
		if _, err := io.ReadFull(r, d[:]); err != nil {
			return nil, err
		}
		crc := crc32.Update(crc32.Checksum(p.BHS[:], crcTable()), crcTable(), p.AHS)
		if crc != binary.LittleEndian.Uint32(d[:]) {
			return nil, fmt.Errorf("iscsitest: header digest mismatch")
		}
	}
	n := int(p.BHS[5])<<16 | int(p.BHS[6])<<8 | int(p.BHS[7])
	if n > 0 {
		padded := (n + 3) &^ 3
		extra := 0
		if dataDigest {
			extra = 4
		}
		buf := make([]byte, padded+extra)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if dataDigest && crc32.Checksum(buf[:padded], crcTable()) != binary.LittleEndian.Uint32(buf[padded:]) {
			return nil, fmt.Errorf("iscsitest: data digest mismatch")
		}
		p.Data = buf[:n]
	}
	return p, nil
}

// EncodeText encodes key=value pairs as a text data segment.
func EncodeText(kv ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(kv); i += 2 {
		b = append(b, kv[i]+"="+kv[i+1]...)
		b = append(b, 0)
	}
	return b
}

// ParseText decodes a text data segment into an ordered list of pairs.
func ParseText(data []byte) [][2]string {
	var out [][2]string
	for _, item := range strings.Split(string(data), "\x00") {
		if item == "" {
			continue
		}
		k, v, _ := strings.Cut(item, "=")
		out = append(out, [2]string{k, v})
	}
	return out
}

// EncodeLUN encodes a LUN in SAM single-level form.
func EncodeLUN(lun uint64) [8]byte {
	var b [8]byte
	if lun < 256 {
		b[1] = byte(lun)
	} else {
		b[0] = 0x40 | byte(lun>>8)&0x3f
		b[1] = byte(lun)
	}
	return b
}
