package vtl

import (
	"encoding/binary"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// Element type codes (SMC-3 table 12).
const (
	etAll       = 0
	etTransport = 1
	etStorage   = 2
	etIE        = 3
	etDrive     = 4
)

// readElementStatus serves READ ELEMENT STATUS (SMC-3 6.10) with primary
// volume tags (barcodes) and, with DVCID, the drives' identification
// (T10 vendor ID: vendor, product, serial number), which is how a host
// matches data transfer elements with the drive targets.
func (c *Changer) readElementStatus(cmd *scsi.Command, cdb *scsi.CDB) (int, error) {
	voltag := cdb.Raw[1]&0x10 != 0
	etype := cdb.Raw[1] & 0x0f
	start := cdb.Uint16(2)
	count := int(cdb.Uint16(4))
	dvcid := cdb.Raw[6]&0x01 != 0
	alloc := int(cdb.Uint24(7))
	if etype > etDrive {
		return 0, scsi.ErrInvalidField(1, 3)
	}
	l := c.lib
	l.mu.Lock()
	defer l.mu.Unlock()
	cfg := &l.cfg
	occ := l.occupantsLocked()
	type kind struct {
		code  byte
		base  int
		n     int
		flags byte // ACCESS etc. for a present element
	}
	kinds := []kind{
		{etTransport, addrTransport, 1, 0},
		{etStorage, addrSlot, cfg.Slots, 0x08},
		{etIE, addrIE, cfg.IESlots, 0x08 | 0x20 | 0x10},
		{etDrive, addrDrive, cfg.Drives, 0x08},
	}
	out := make([]byte, 8, 64)
	first, reported := uint16(0), 0
	for _, k := range kinds {
		if etype != etAll && etype != k.code {
			continue
		}
		descLen := 12
		if voltag {
			descLen += 36
		}
		withID := dvcid && k.code == etDrive
		if withID {
			descLen += 4 + 34
		}
		pageStart := len(out)
		var ph [8]byte
		ph[0] = k.code
		if voltag {
			ph[1] = 0x80
		}
		binary.BigEndian.PutUint16(ph[2:], uint16(descLen))
		out = append(out, ph[:]...)
		n := 0
		for i := 0; i < k.n && reported < count; i++ {
			a := uint16(k.base + i)
			if a < start {
				continue
			}
			if reported == 0 {
				first = a
			}
			reported++
			n++
			d := make([]byte, descLen)
			binary.BigEndian.PutUint16(d[0:], a)
			t := occ[a]
			d[2] = k.flags
			if k.code == etIE {
				d[2] |= 0x02 // IMPEXP: placed by the operator
			}
			if t != nil {
				d[2] |= 0x01 // FULL
				d[9] = 0x01  // medium type: data
				if t.Source != 0 && k.code == etDrive {
					d[9] |= 0x80 // SVALID
					binary.BigEndian.PutUint16(d[10:], t.Source)
				}
			}
			if k.code == etDrive {
				d[6] = 0x80 // NOT BUS: the drive is another target
			}
			off := 12
			if voltag {
				if t != nil {
					scsi.PutASCII(d[off:off+32], t.Barcode)
				}
				off += 36
			}
			if withID {
				dr := l.drives[i]
				d[off] = scsi.CodeSetASCII
				d[off+1] = scsi.DesigT10Vendor
				d[off+3] = 34
				scsi.PutASCII(d[off+4:off+12], driveVendor)
				scsi.PutASCII(d[off+12:off+28], driveProduct)
				scsi.PutASCII(d[off+28:off+38], dr.serial)
			}
			out = append(out, d...)
		}
		if n == 0 {
			out = out[:pageStart]
			continue
		}
		bc := len(out) - pageStart - 8
		out[pageStart+5], out[pageStart+6], out[pageStart+7] = byte(bc>>16), byte(bc>>8), byte(bc)
	}
	binary.BigEndian.PutUint16(out[0:], first)
	binary.BigEndian.PutUint16(out[2:], uint16(reported))
	total := len(out) - 8
	out[5], out[6], out[7] = byte(total>>16), byte(total>>8), byte(total)
	return scsi.Respond(cmd, out, alloc), nil
}
