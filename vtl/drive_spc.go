package vtl

import (
	"context"
	"encoding/binary"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// opInquiry serves INQUIRY: standard data and VPD pages 00h, 80h, 83h.
func (d *Drive) opInquiry(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	q := scsi.Inquiry{
		DeviceType: scsi.TypeTape, Removable: true, Version: 6, HiSup: true,
		Vendor: driveVendor, Product: driveProduct, Revision: driveRevision,
		VendorSpecific: d.serial,
		Versions:       []uint16{scsi.VersionSAM5, scsi.VersionISCSI, scsi.VersionSPC4, versionSSC3},
	}
	return inquiry(cmd, &c, &q, d.serial)
}

// inquiry answers INQUIRY for a drive or changer with identity q.
func inquiry(cmd *scsi.Command, c *scsi.CDB, q *scsi.Inquiry, serial string) (int, error) {
	alloc := int(c.Uint16(3))
	if c.Raw[1]&0xfe != 0 {
		return 0, scsi.ErrInvalidField(1, -1)
	}
	if c.Raw[1]&0x01 == 0 {
		if c.Raw[2] != 0 {
			return 0, scsi.ErrInvalidField(2, -1)
		}
		var buf [scsi.InquiryLen]byte
		q.Marshal(buf[:])
		return scsi.Respond(cmd, buf[:], alloc), nil
	}
	pd := q.DeviceType
	var out []byte
	switch c.Raw[2] {
	case 0x00:
		out = scsi.AppendVPD(nil, pd, 0x00, []byte{0x00, 0x80, 0x83})
	case 0x80:
		s := make([]byte, len(serial))
		scsi.PutASCII(s, serial)
		out = scsi.AppendVPD(nil, pd, 0x80, s)
	case 0x83:
		t10 := make([]byte, 24+len(serial))
		scsi.PutASCII(t10[:8], q.Vendor)
		scsi.PutASCII(t10[8:24], q.Product)
		scsi.PutASCII(t10[24:], serial)
		var id [16]byte
		copy(id[:], serial)
		body := scsi.AppendDesignator(nil, 0, false, scsi.CodeSetASCII, scsi.AssocLU, scsi.DesigT10Vendor, t10)
		body = scsi.AppendDesignator(body, 0, false, scsi.CodeSetBinary, scsi.AssocLU, scsi.DesigNAA, scsi.NAARegisteredExtended(0, id))
		out = scsi.AppendVPD(nil, pd, 0x83, body)
	default:
		return 0, scsi.ErrInvalidField(2, -1)
	}
	return scsi.Respond(cmd, out, alloc), nil
}

// driveModePages builds the drive's mode pages: read-write error recovery
// (01h), disconnect-reconnect (02h), data compression (0Fh), device
// configuration (10h) and informational exceptions control (1Ch).
func driveModePages() scsi.ModePages {
	page := func(code byte, cur, changeable []byte) scsi.ModePage {
		return scsi.ModePage{Page: code, Current: cur, Default: append([]byte(nil), cur...), Changeable: changeable}
	}
	comp := make([]byte, 14)
	comp[0] = 0xc0 // DCE DCC
	comp[1] = 0x80 // DDE
	binary.BigEndian.PutUint32(comp[2:], 1)
	binary.BigEndian.PutUint32(comp[6:], 1)
	compCh := make([]byte, 14)
	compCh[0] = 0x80
	dev := make([]byte, 14)
	dev[6] = 0x00
	dev[8] = 0x18  // EEG SEW
	dev[12] = 0x01 // SELECT DATA COMPRESSION ALGORITHM
	devCh := make([]byte, 14)
	devCh[12] = 0xff
	iec := make([]byte, 10)
	iec[1] = 0x03 // MRIE: conditionally generate recovered error
	return scsi.ModePages{
		page(0x01, make([]byte, 10), make([]byte, 10)),
		page(0x02, make([]byte, 14), make([]byte, 14)),
		page(0x0f, comp, compCh),
		page(0x10, dev, devCh),
		page(0x1c, iec, make([]byte, 10)),
	}
}

// opModeSense serves MODE SENSE(6) and (10) with the sequential-access
// block descriptor (density code and block length).
func (d *Drive) opModeSense(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	ten := c.Opcode == 0x5a
	h := scsi.ModeSenseHeader{Sequential: true, BlockLen: d.blockSize, DeviceSpecific: 0x10}
	if d.cart != nil {
		h.Density = densityLTO5
		if d.cart.readOnly {
			h.DeviceSpecific |= 0x80
		}
	}
	// Page code 00h, subpage 00h: the header and block descriptor alone.
	// Linux st asks for it at every open (density, block length, WP,
	// buffered mode); built here as "all pages" with the pages cut off.
	pageZero := c.Raw[2]&0x3f == 0 && c.Raw[3] == 0
	if pageZero {
		raw := append([]byte(nil), c.Raw...)
		raw[2] |= 0x3f
		c.Raw = raw
	}
	out, err := scsi.ModeSense(&c, ten, h, d.mode)
	if err != nil {
		return 0, err
	}
	if pageZero {
		if ten {
			n := 8 + int(binary.BigEndian.Uint16(out[6:]))
			out = out[:n]
			binary.BigEndian.PutUint16(out[0:], uint16(n-2))
		} else {
			n := 4 + int(out[3])
			out = out[:n]
			out[0] = byte(n - 1)
		}
	}
	alloc := int(c.Raw[4])
	if ten {
		alloc = int(c.Uint16(7))
	}
	return scsi.Respond(cmd, out, alloc), nil
}

// opModeSelect serves MODE SELECT(6) and (10): the block descriptor sets
// the block length (0: variable), pages their changeable fields.
func (d *Drive) opModeSelect(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	ten := c.Opcode == 0x55
	plen := int(c.Raw[4])
	if ten {
		plen = int(c.Uint16(7))
	}
	if plen == 0 {
		return 0, nil
	}
	if c.Raw[1]&0x01 != 0 { // SP
		return 0, scsi.NewSense(scsi.SenseIllegalRequest, scsi.ASCSavingParamsNotSupported)
	}
	if len(cmd.DataOut) < plen {
		return 0, scsi.ErrParamListLength()
	}
	params := cmd.DataOut[:plen]
	desc, off, err := scsi.ModeSelectParams(params, ten)
	if err != nil {
		return 0, err
	}
	bs := d.blockSize
	switch len(desc) {
	case 0:
	case 8:
		bs = uint32(desc[5])<<16 | uint32(desc[6])<<8 | uint32(desc[7])
		if bs > uint32(d.lib.cfg.MaxBlockSize) {
			return 0, scsi.ErrInvalidParam(off-3, -1)
		}
	default:
		return 0, scsi.ErrInvalidParam(3, -1)
	}
	if _, err := d.mode.Select(params[off:], off); err != nil {
		return 0, err
	}
	d.blockSize = bs
	return 0, nil
}

// logParam appends one log parameter with a big-endian value of n bytes.
func logParam(dst []byte, code uint16, n int, v uint64) []byte {
	dst = append(dst, byte(code>>8), byte(code), 0x60, byte(n))
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// opLogSense serves LOG SENSE: supported pages (00h), write and read error
// counters (02h, 03h), sequential-access device (0Ch) and TapeAlert (2Eh).
func (d *Drive) opLogSense(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	alloc := int(c.Uint16(7))
	page, sub := c.Raw[2]&0x3f, c.Raw[3]
	if sub != 0 {
		return 0, scsi.ErrInvalidField(3, -1)
	}
	var body []byte
	switch page {
	case 0x00:
		body = []byte{0x00, 0x02, 0x03, 0x0c, 0x2e}
	case 0x02, 0x03:
		v := d.stats.written
		if page == 0x03 {
			v = d.stats.read
		}
		for code := uint16(0); code <= 6; code++ {
			val := uint64(0)
			if code == 5 {
				val = v
			}
			body = logParam(body, code, 8, val)
		}
	case 0x0c:
		body = logParam(body, 0, 8, d.stats.written)
		body = logParam(body, 1, 8, d.stats.written)
		body = logParam(body, 2, 8, d.stats.read)
		body = logParam(body, 3, 8, d.stats.read)
		body = logParam(body, 0x100, 1, 0)
	case 0x2e:
		for code := uint16(1); code <= 0x40; code++ {
			body = logParam(body, code, 1, 0)
		}
	default:
		return 0, scsi.ErrInvalidField(2, 5)
	}
	out := make([]byte, 4, 4+len(body))
	out[0] = page
	binary.BigEndian.PutUint16(out[2:], uint16(len(body)))
	out = append(out, body...)
	return scsi.Respond(cmd, out, alloc), nil
}

// opLogSelect serves LOG SELECT: PCR resets the counters; parameter data
// is not supported.
func (d *Drive) opLogSelect(_ context.Context, _ *scsi.Command, c scsi.CDB) (int, error) {
	if c.Uint16(7) != 0 {
		return 0, scsi.ErrInvalidField(7, -1)
	}
	if c.Raw[1]&0x02 != 0 {
		d.stats = driveStats{}
	}
	return 0, nil
}

// opReportDensity serves REPORT DENSITY SUPPORT: LTO-5 (default, write),
// LTO-4 (write) and LTO-3 (read only).
func (d *Drive) opReportDensity(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	if c.Raw[1]&0x02 != 0 { // MEDIUM TYPE
		return 0, scsi.ErrInvalidField(1, 1)
	}
	alloc := int(c.Uint16(7))
	type dens struct {
		code           byte
		flags          byte
		bpmm           uint32
		tracks         uint16
		capMB          uint32
		name, descript string
	}
	all := []dens{
		{0x58, 0xa0, 15142, 1280, 1500000, "U-516", "Ultrium 5/16T"},
		{0x46, 0x80, 12725, 896, 800000, "U-416", "Ultrium 4/16T"},
		{0x44, 0x00, 9638, 704, 400000, "U-316", "Ultrium 3/16T"},
	}
	if c.Raw[1]&0x01 != 0 && d.cart != nil { // MEDIA: the mounted tape's
		all = all[:1]
	}
	out := make([]byte, 4, 4+52*len(all))
	for _, x := range all {
		var b [52]byte
		b[0], b[1], b[2] = x.code, x.code, x.flags
		b[5], b[6], b[7] = byte(x.bpmm>>16), byte(x.bpmm>>8), byte(x.bpmm)
		binary.BigEndian.PutUint16(b[8:], 127)
		binary.BigEndian.PutUint16(b[10:], x.tracks)
		binary.BigEndian.PutUint32(b[12:], x.capMB)
		scsi.PutASCII(b[16:24], "LTO-CVE")
		scsi.PutASCII(b[24:32], x.name)
		scsi.PutASCII(b[32:52], x.descript)
		out = append(out, b[:]...)
	}
	binary.BigEndian.PutUint16(out[0:], uint16(len(out)-2))
	return scsi.Respond(cmd, out, alloc), nil
}
