package scsi

import (
	"context"
	"encoding/binary"
)

// VPD page codes served by Disk.
const (
	vpdSupported      = 0x00
	vpdSerial         = 0x80
	vpdDeviceID       = 0x83
	vpdBlockLimits    = 0xb0
	vpdBlockDevChar   = 0xb1
	vpdLBProvisioning = 0xb2
)

func (d *Disk) standardInquiry() Inquiry {
	return Inquiry{
		DeviceType: TypeDisk,
		Version:    6,
		CmdQue:     true,
		HiSup:      true,
		Vendor:     d.opts.Vendor,
		Product:    d.opts.Product,
		Revision:   d.opts.Revision,
		Versions:   []uint16{VersionSAM5, VersionISCSI, VersionSPC4, VersionSBC3},
	}
}

// opInquiry serves INQUIRY: standard data or one of the VPD pages.
func opInquiry(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	evpd := c.Raw[1]&0x01 != 0
	page := c.Raw[2]
	alloc := int(c.Uint16(3))
	if c.Raw[1]&0xfe != 0 {
		return 0, ErrInvalidField(1, -1)
	}
	if !evpd {
		if page != 0 {
			return 0, ErrInvalidField(2, -1)
		}
		var buf [InquiryLen]byte
		q := d.standardInquiry()
		q.Marshal(buf[:])
		return Respond(cmd, buf[:], alloc), nil
	}
	data, err := d.vpd(page, cmd.Nexus)
	if err != nil {
		return 0, err
	}
	return Respond(cmd, data, alloc), nil
}

func (d *Disk) vpdPages() []byte {
	return []byte{vpdSupported, vpdSerial, vpdDeviceID, vpdBlockLimits, vpdBlockDevChar, vpdLBProvisioning}
}

// vpd builds VPD page page.
func (d *Disk) vpd(page byte, n Nexus) ([]byte, error) {
	const pd = TypeDisk
	switch page {
	case vpdSupported:
		return AppendVPD(nil, pd, page, d.vpdPages()), nil
	case vpdSerial:
		s := make([]byte, len(d.opts.Serial))
		PutASCII(s, d.opts.Serial)
		return AppendVPD(nil, pd, page, s), nil
	case vpdDeviceID:
		var body []byte
		body = AppendDesignator(body, 0, false, CodeSetBinary, AssocLU, DesigNAA, NAARegisteredExtended(d.opts.NAAOUI, d.opts.ID))
		t10 := make([]byte, 8+len(d.opts.Serial))
		PutASCII(t10[:8], d.opts.Vendor)
		PutASCII(t10[8:], d.opts.Serial)
		body = AppendDesignator(body, 0, false, CodeSetASCII, AssocLU, DesigT10Vendor, t10)
		var rel [4]byte
		binary.BigEndian.PutUint16(rel[2:], d.relPort(n))
		body = AppendDesignator(body, ProtocolISCSI, true, CodeSetBinary, AssocTargetPort, DesigRelativePort, rel[:])
		if n.TargetName != "" {
			body = AppendDesignator(body, ProtocolISCSI, true, CodeSetUTF8, AssocTargetPort, DesigSCSIName, SCSINameString(n.TargetPortID()))
			body = AppendDesignator(body, ProtocolISCSI, true, CodeSetUTF8, AssocTarget, DesigSCSIName, SCSINameString(n.TargetName))
		}
		return AppendVPD(nil, pd, page, body), nil
	case vpdBlockLimits:
		return AppendVPD(nil, pd, page, d.blockLimits()), nil
	case vpdBlockDevChar:
		body := make([]byte, 0x3c)
		binary.BigEndian.PutUint16(body[0:], 1) // non-rotating medium
		body[3] = 0x05                          // nominal form factor: less than 1.8 inch
		return AppendVPD(nil, pd, page, body), nil
	case vpdLBProvisioning:
		body := make([]byte, 4)
		if d.unmapper != nil {
			body[1] = 0x80 | 0x40 | 0x20 | 0x04 // LBPU LBPWS LBPWS10 LBPRZ
			body[2] = 0x02                      // thin provisioned
		}
		return AppendVPD(nil, pd, page, body), nil
	}
	return nil, ErrInvalidField(2, -1)
}

// blockLimits builds the body of the Block Limits VPD page (SBC-3 6.5.3).
func (d *Disk) blockLimits() []byte {
	b := make([]byte, 0x3c)
	b[1] = byte(d.maxCompare())
	binary.BigEndian.PutUint16(b[2:], 1<<d.opts.PhysicalBlockExp) // OPTIMAL TRANSFER LENGTH GRANULARITY
	binary.BigEndian.PutUint32(b[4:], d.opts.MaxTransferBlocks)
	binary.BigEndian.PutUint32(b[8:], d.opts.OptimalTransferBlock)
	if d.unmapper != nil {
		binary.BigEndian.PutUint32(b[16:], d.opts.MaxUnmapBlocks)
		binary.BigEndian.PutUint32(b[20:], d.opts.MaxUnmapDescriptors)
		binary.BigEndian.PutUint32(b[24:], d.opts.UnmapGranularity)
	}
	binary.BigEndian.PutUint64(b[32:], d.opts.MaxWriteSameBlocks)
	binary.BigEndian.PutUint32(b[40:], d.opts.MaxTransferBlocks) // MAXIMUM ATOMIC TRANSFER LENGTH
	return b
}

// opTestUnitReady serves TEST UNIT READY.
func opTestUnitReady(*Disk, context.Context, *Command, CDB) (int, error) {
	return 0, nil
}

// opRequestSense serves REQUEST SENSE: a pending unit attention is reported
// (and cleared); otherwise NO SENSE. DESC selects descriptor format.
func opRequestSense(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	return RequestSense(d.ua, cmd, &c)
}

// RequestSense answers REQUEST SENSE for a logical unit whose only
// deferred conditions are the unit attentions in ua (nil for none): the
// oldest pending condition is returned and cleared, else NO SENSE. It
// honours the DESC bit and the allocation length.
func RequestSense(ua *UnitAttentions, cmd *Command, c *CDB) (int, error) {
	if c.Raw[1]&0xfe != 0 {
		return 0, ErrInvalidField(1, -1)
	}
	se := NewSense(SenseNoSense, ASCNoAdditionalSense)
	if ua != nil {
		if code, ok := ua.Next(cmd.Nexus); ok {
			se = ErrUnitAttention(code)
		}
	}
	return RespondSense(cmd, se, c.Raw[1]&0x01 != 0, int(c.Raw[4])), nil
}

// RespondSense writes se as REQUEST SENSE parameter data into cmd.DataIn
// (descriptor format when desc) truncated to alloc, and returns the
// number of bytes written.
func RespondSense(cmd *Command, se *SenseError, desc bool, alloc int) int {
	var buf [DescriptorLen]byte
	var n int
	if desc {
		n = se.Descriptor(buf[:])
	} else {
		n = se.Fixed(buf[:])
	}
	return Respond(cmd, buf[:n], alloc)
}

// opReadCapacity10 serves READ CAPACITY(10).
func opReadCapacity10(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	pmi := c.Raw[8]&0x01 != 0
	if !pmi && c.Uint32(2) != 0 {
		return 0, ErrInvalidField(2, -1)
	}
	var b [8]byte
	last := d.blocks.Load() - 1
	if d.blocks.Load() == 0 {
		last = 0
	}
	if last > 0xffffffff {
		last = 0xffffffff
	}
	binary.BigEndian.PutUint32(b[0:], uint32(last))
	binary.BigEndian.PutUint32(b[4:], uint32(d.bs))
	return Respond(cmd, b[:], len(b)), nil
}

// opReadCapacity16 serves SERVICE ACTION IN(16) / READ CAPACITY(16).
func opReadCapacity16(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	alloc := int(c.Uint32(10))
	var b [32]byte
	last := d.blocks.Load()
	if last > 0 {
		last--
	}
	binary.BigEndian.PutUint64(b[0:], last)
	binary.BigEndian.PutUint32(b[8:], uint32(d.bs))
	b[13] = d.opts.PhysicalBlockExp & 0x0f
	if d.unmapper != nil {
		b[14] = 0x80 | 0x40 // LBPME LBPRZ
	}
	return Respond(cmd, b[:], alloc), nil
}

// opStartStopUnit serves START STOP UNIT. The medium is not removable and
// always ready: START, LOEJ, IMMED and power conditions are accepted and
// ignored.
func opStartStopUnit(_ *Disk, _ context.Context, _ *Command, c CDB) (int, error) {
	return 0, nil
}

// opPreventAllow serves PREVENT ALLOW MEDIUM REMOVAL: the state is kept per
// nexus (it only matters to removable media).
func opPreventAllow(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	prevent := c.Raw[4] & 0x03
	d.mu.Lock()
	defer d.mu.Unlock()
	if prevent != 0 {
		d.prevent[cmd.Nexus] = true
	} else {
		delete(d.prevent, cmd.Nexus)
	}
	return 0, nil
}

// opReportLUNs answers REPORT LUNS with the addressed LUN only; the
// transport normally intercepts REPORT LUNS to list every LUN of the target.
func opReportLUNs(_ *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	return reportLUNs(cmd, &c, []uint64{cmd.LUN})
}

func reportLUNs(cmd *Command, c *CDB, luns []uint64) (int, error) {
	alloc := int(c.Uint32(6))
	if alloc < 16 {
		return 0, ErrInvalidField(6, -1)
	}
	if sel := c.Raw[2]; sel > 2 && sel != 0x10 && sel != 0x11 && sel != 0x12 {
		return 0, ErrInvalidField(2, -1)
	}
	buf := make([]byte, 8+8*len(luns))
	n := ReportLUNsData(luns, buf)
	return Respond(cmd, buf[:n], alloc), nil
}
