package scsi

import (
	"encoding/binary"
	"fmt"
)

// Page control values of MODE SENSE (SPC-4 6.11).
const (
	PCCurrent    byte = 0
	PCChangeable byte = 1
	PCDefault    byte = 2
	PCSaved      byte = 3
)

// ModePage is one mode page: its current, default and changeable values.
// Each slice holds the page parameters after the page header (byte 2 on of
// a page_0 page, byte 4 on of a sub_page page) and all three have the same
// length. Current is updated in place by ModePages.Select.
type ModePage struct {
	Page, Subpage                byte
	Current, Default, Changeable []byte
}

// ModePages is the set of mode pages of a logical unit, in ascending page
// order. It is not safe for concurrent use; the owner serializes access.
type ModePages []ModePage

func (p *ModePage) appendTo(dst []byte, pc byte) []byte {
	var body []byte
	switch pc {
	case PCChangeable:
		body = p.Changeable
	case PCDefault:
		body = p.Default
	default:
		body = p.Current
	}
	if p.Subpage != 0 {
		dst = append(dst, 0x40|p.Page&0x3f, p.Subpage, byte(len(body)>>8), byte(len(body)))
	} else {
		dst = append(dst, p.Page&0x3f, byte(len(body)))
	}
	return append(dst, body...)
}

// Append appends the pages selected by page and subpage (3Fh and FFh
// select all, SPC-4 table 448) in page control pc to dst. An unsupported
// selection fails with INVALID FIELD IN CDB pointing at field byte off of
// the MODE SENSE CDB (2 for the page code).
func (ps ModePages) Append(dst []byte, pc, page, subpage byte) ([]byte, error) {
	found := false
	for i := range ps {
		p := &ps[i]
		switch {
		case page == 0x3f && subpage == 0x00 && p.Subpage == 0,
			page == 0x3f && subpage == 0xff,
			page == p.Page && subpage == 0xff,
			page == p.Page && subpage == p.Subpage:
			dst = p.appendTo(dst, pc)
			found = true
		}
	}
	if !found {
		if page != 0x3f && subpage != 0 && subpage != 0xff {
			return dst, ErrInvalidField(3, -1)
		}
		return dst, ErrInvalidField(2, 5)
	}
	return dst, nil
}

// find returns the page with the given codes, or nil.
func (ps ModePages) find(page, subpage byte) *ModePage {
	for i := range ps {
		if ps[i].Page == page && ps[i].Subpage == subpage {
			return &ps[i]
		}
	}
	return nil
}

// Select applies the mode pages in params (the MODE SELECT parameter list
// after the header and block descriptors; base is their offset in the
// parameter list, for field pointers). Every page must be known, have the
// right length, and change only changeable bits; otherwise nothing is
// applied and the error is INVALID FIELD IN PARAMETER LIST. It reports
// whether any current value changed.
func (ps ModePages) Select(params []byte, base int) (changed bool, err error) {
	type upd struct {
		p   *ModePage
		val []byte
	}
	var updates []upd
	for off := 0; off < len(params); {
		if len(params)-off < 2 {
			return false, ErrParamListLength()
		}
		page, sub := params[off]&0x3f, byte(0)
		hdr, plen := 2, int(params[off+1])
		if params[off]&0x40 != 0 {
			if len(params)-off < 4 {
				return false, ErrParamListLength()
			}
			sub, hdr, plen = params[off+1], 4, int(binary.BigEndian.Uint16(params[off+2:]))
		}
		p := ps.find(page, sub)
		if p == nil {
			return false, ErrInvalidParam(base+off, 5).Wrap(fmt.Errorf("mode page %#02x/%#02x not supported", page, sub))
		}
		if plen != len(p.Current) {
			return false, ErrInvalidParam(base+off+hdr-1, -1)
		}
		if len(params)-off-hdr < plen {
			return false, ErrParamListLength()
		}
		val := params[off+hdr : off+hdr+plen]
		for i := range val {
			if (val[i]^p.Current[i])&^p.Changeable[i] != 0 {
				return false, ErrInvalidParam(base+off+hdr+i, -1)
			}
		}
		updates = append(updates, upd{p, val})
		off += hdr + plen
	}
	for _, u := range updates {
		for i := range u.val {
			n := u.p.Current[i]&^u.p.Changeable[i] | u.val[i]&u.p.Changeable[i]
			if n != u.p.Current[i] {
				changed = true
				u.p.Current[i] = n
			}
		}
	}
	return changed, nil
}

// ModeSenseHeader describes what precedes the pages in MODE SENSE data.
type ModeSenseHeader struct {
	// MediumType is the MEDIUM TYPE field.
	MediumType byte
	// DeviceSpecific is the DEVICE-SPECIFIC PARAMETER (for disks WP bit 7
	// and DPOFUA bit 4; for tapes WP, BUFFERED MODE and SPEED).
	DeviceSpecific byte
	// Blocks and BlockLen fill the block descriptor; NoDescriptor omits it
	// (as does DBD in the CDB).
	Blocks       uint64
	BlockLen     uint32
	NoDescriptor bool
	// Sequential selects the sequential-access short block descriptor
	// format (DENSITY CODE and a 24-bit number of blocks) used by tapes.
	Sequential bool
	// Density is the DENSITY CODE of a sequential-access descriptor.
	Density byte
}

// ModeSense builds the MODE SENSE(6) (ten false) or MODE SENSE(10) (ten
// true) response for cdb: header, block descriptor and selected pages. It
// checks the DBD, LLBAA, PC, page and subpage fields. PC saved is answered
// with current values (nothing is saved separately).
func ModeSense(c *CDB, ten bool, h ModeSenseHeader, pages ModePages) ([]byte, error) {
	dbd := c.Raw[1]&0x08 != 0 || h.NoDescriptor
	llbaa := ten && c.Raw[1]&0x10 != 0
	pc, page, sub := c.Raw[2]>>6, c.Raw[2]&0x3f, c.Raw[3]
	var out []byte
	var desc []byte
	if !dbd {
		if llbaa {
			desc = make([]byte, 16)
			binary.BigEndian.PutUint64(desc[0:], h.Blocks)
			binary.BigEndian.PutUint32(desc[12:], h.BlockLen)
		} else {
			desc = make([]byte, 8)
			n := h.Blocks
			if h.Sequential {
				desc[0] = h.Density
				n = min(n, 0xffffff)
				desc[1], desc[2], desc[3] = byte(n>>16), byte(n>>8), byte(n)
			} else {
				binary.BigEndian.PutUint32(desc[0:], uint32(min(n, 0xffffffff)))
			}
			desc[5], desc[6], desc[7] = byte(h.BlockLen>>16), byte(h.BlockLen>>8), byte(h.BlockLen)
		}
	}
	if ten {
		out = make([]byte, 8, 8+len(desc)+256)
		out[2], out[3] = h.MediumType, h.DeviceSpecific
		if llbaa && !dbd {
			out[4] = 0x01
		}
		binary.BigEndian.PutUint16(out[6:], uint16(len(desc)))
	} else {
		out = make([]byte, 4, 4+len(desc)+256)
		out[1], out[2], out[3] = h.MediumType, h.DeviceSpecific, byte(len(desc))
	}
	out = append(out, desc...)
	out, err := pages.Append(out, pc, page, sub)
	if err != nil {
		return nil, err
	}
	if ten {
		binary.BigEndian.PutUint16(out[0:], uint16(len(out)-2))
	} else {
		if len(out) > 256 {
			out = out[:256]
		}
		out[0] = byte(len(out) - 1)
	}
	return out, nil
}

// ModeSelectParams splits a MODE SELECT(6) or (10) parameter list into its
// block descriptors and pages, and returns the offset of the pages.
func ModeSelectParams(params []byte, ten bool) (desc []byte, pagesOff int, err error) {
	hdr := 4
	if ten {
		hdr = 8
	}
	if len(params) < hdr {
		return nil, 0, ErrParamListLength()
	}
	var dlen int
	if ten {
		dlen = int(binary.BigEndian.Uint16(params[6:]))
	} else {
		dlen = int(params[3])
	}
	if len(params) < hdr+dlen {
		return nil, 0, ErrParamListLength()
	}
	return params[hdr : hdr+dlen], hdr + dlen, nil
}
