package scsi

import (
	"context"
	"encoding/binary"
)

// Mode page codes used by Disk.
const (
	pageRWErrorRecovery = 0x01
	pageCaching         = 0x08
	pageControl         = 0x0a
	pageInfoExceptions  = 0x1c
)

// diskModePages returns the mode pages of a disk with their defaults.
func diskModePages() ModePages {
	rw := []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0} // AWRE
	caching := make([]byte, 0x12)
	caching[0] = 0x04 // WCE
	cachingCh := make([]byte, 0x12)
	cachingCh[0] = 0x04
	control := make([]byte, 0x0a)
	control[1] = 0x10                               // QUEUE ALGORITHM MODIFIER 1: unrestricted
	control[3] = 0x40                               // TAS
	binary.BigEndian.PutUint16(control[6:], 0xffff) // BUSY TIMEOUT PERIOD: unlimited
	controlCh := make([]byte, 0x0a)
	controlCh[2] = 0x08 // SWP
	ie := make([]byte, 0x0a)
	ie[0] = 0x08 // DEXCPT
	pages := ModePages{
		{Page: pageRWErrorRecovery, Current: rw, Default: clone(rw), Changeable: make([]byte, len(rw))},
		{Page: pageCaching, Current: caching, Default: clone(caching), Changeable: cachingCh},
		{Page: pageControl, Current: control, Default: clone(control), Changeable: controlCh},
		{Page: pageInfoExceptions, Current: ie, Default: clone(ie), Changeable: make([]byte, len(ie))},
	}
	return pages
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// syncModeLocked refreshes the cached mode flags from the current pages.
func (d *Disk) syncModeLocked() {
	d.wce.Store(d.mode.find(pageCaching, 0).Current[0]&0x04 != 0)
	d.swp.Store(d.mode.find(pageControl, 0).Current[2]&0x08 != 0)
}

// opModeSense serves MODE SENSE(6) and (10).
func opModeSense(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	ten := c.Opcode == 0x5a
	alloc := int(c.Raw[4])
	if ten {
		alloc = int(c.Uint16(7))
	}
	h := ModeSenseHeader{Blocks: d.blocks.Load(), BlockLen: uint32(d.bs), DeviceSpecific: 0x10}
	d.mu.Lock()
	if d.opts.ReadOnly || d.swp.Load() {
		h.DeviceSpecific |= 0x80
	}
	data, err := ModeSense(&c, ten, h, d.mode)
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return Respond(cmd, data, alloc), nil
}

// opModeSelect serves MODE SELECT(6) and (10).
func opModeSelect(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	ten := c.Opcode == 0x55
	plen := int(c.Raw[4])
	if ten {
		plen = int(c.Uint16(7))
	}
	if c.Raw[1]&0x01 != 0 { // SP: saving pages is not supported
		return 0, ErrInvalidField(1, 0)
	}
	if plen == 0 {
		return 0, nil
	}
	if len(cmd.DataOut) < plen {
		return 0, ErrParamListLength()
	}
	params := cmd.DataOut[:plen]
	desc, off, err := ModeSelectParams(params, ten)
	if err != nil {
		return 0, err
	}
	switch len(desc) {
	case 0:
	case 8:
		if bl := uint32(desc[5])<<16 | uint32(desc[6])<<8 | uint32(desc[7]); bl != uint32(d.bs) {
			return 0, ErrInvalidParam(off-3, -1)
		}
	case 16:
		if !ten || params[4]&0x01 == 0 {
			return 0, ErrInvalidParam(off-16, -1)
		}
		if bl := binary.BigEndian.Uint32(desc[12:]); bl != uint32(d.bs) {
			return 0, ErrInvalidParam(off-4, -1)
		}
	default:
		return 0, ErrInvalidParam(3, -1)
	}
	if c.Raw[1]&0x10 == 0 && off < len(params) { // PF=0: vendor-specific page format
		return 0, ErrInvalidField(1, 4)
	}
	d.mu.Lock()
	changed, err := d.mode.Select(params[off:], off)
	if changed {
		d.syncModeLocked()
	}
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if changed {
		d.ua.EstablishAll(ASCModeParametersChanged, func(n Nexus) bool { return n == cmd.Nexus })
	}
	return 0, nil
}
