package iscsi

import (
	"encoding/binary"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// Residual flags in the SCSI Response and final Data-In PDU.
const (
	flagOverflow  byte = 0x04
	flagUnderflow byte = 0x02
)

// blockSizer is implemented by block logical units (scsi.Disk); it lets the
// target work out the SCSI transfer length of READ and WRITE commands for
// residual counts.
type blockSizer interface {
	BlockSize() int
}

// transferLength returns the number of bytes a READ, WRITE or WRITE AND
// VERIFY CDB transfers, when the unit's block size is known.
func transferLength(lu scsi.LogicalUnit, cdb []byte) (int, bool) {
	bsz, ok := lu.(blockSizer)
	if !ok || len(cdb) == 0 {
		return 0, false
	}
	var blocks int
	switch cdb[0] {
	case 0x08, 0x0a: // READ(6), WRITE(6)
		if len(cdb) < 6 {
			return 0, false
		}
		blocks = int(cdb[4])
		if blocks == 0 {
			blocks = 256
		}
	case 0x28, 0x2a, 0x2e: // READ(10), WRITE(10), WRITE AND VERIFY(10)
		if len(cdb) < 10 {
			return 0, false
		}
		blocks = int(binary.BigEndian.Uint16(cdb[7:]))
	case 0xa8, 0xaa, 0xae: // (12)
		if len(cdb) < 12 {
			return 0, false
		}
		blocks = int(binary.BigEndian.Uint32(cdb[6:]))
	case 0x88, 0x8a, 0x8e: // (16)
		if len(cdb) < 16 {
			return 0, false
		}
		blocks = int(binary.BigEndian.Uint32(cdb[10:]))
	default:
		return 0, false
	}
	return blocks * bsz.BlockSize(), true
}

// respond sends a task's data and status (unless it was aborted) and
// frees the task.
func (s *session) respond(t *task, n int, err error) {
	t.responding = true
	s.mu.Lock()
	delete(s.tasks, t.itt)
	aborted := t.aborted
	s.cond.Broadcast()
	s.mu.Unlock()
	if !t.immediate {
		s.c.win.complete()
	}
	if !aborted {
		if err := s.sendResponse(t, n, err); err != nil {
			s.c.log.Debug("iscsi response not sent", "itt", t.itt, "err", err)
			s.c.abort(err)
		}
	}
	s.mu.Lock()
	s.freeTask(t)
	s.mu.Unlock()
}

// sendResponse builds the Data-In PDUs (status collapsed into the last one
// when there is no sense data) and the SCSI Response.
func (s *session) sendResponse(t *task, n int, err error) error {
	status, sense := scsi.Status(err)
	var sent int
	if t.read && t.buf != nil && n > 0 {
		sent = min(n, t.edtl)
	}
	var rflags byte
	var resid int
	if want, ok := transferLength(t.lu, t.cdb[:t.cdbLen]); ok && (t.read || t.write) && t.preset == nil {
		switch {
		case want > t.edtl:
			rflags, resid = flagOverflow, want-t.edtl
		case t.read && sent < t.edtl:
			rflags, resid = flagUnderflow, t.edtl-sent
		case !t.read && want < t.edtl:
			rflags, resid = flagUnderflow, t.edtl-want
		}
	} else if t.read {
		switch {
		case n > t.edtl:
			rflags, resid = flagOverflow, n-t.edtl
		case sent < t.edtl:
			rflags, resid = flagUnderflow, t.edtl-sent
		}
	} else if !t.write && t.edtl > 0 {
		rflags, resid = flagUnderflow, t.edtl
	}
	if t.read {
		s.readBytes.Add(uint64(sent))
	} else if t.write && status == scsi.StatusGood {
		s.writeBytes.Add(uint64(t.edtl))
	}
	collapse := sent > 0 && len(sense) == 0
	pdus := t.pdus[:0]
	maxSeg := max(s.p.InitiatorMaxRecv, 512)
	burst := max(s.p.MaxBurstLength, 512)
	var dataSN uint32
	var data []byte
	if t.buf != nil {
		data = (*t.buf)[:sent]
	}
	for off := 0; off < sent; {
		burstEnd := (off/burst + 1) * burst
		seg := min(maxSeg, sent-off, burstEnd-off)
		pdus = append(pdus, outPDU{})
		o := &pdus[len(pdus)-1]
		o.hdr[0] = opDataIn
		last := off+seg == sent
		if last || off+seg == burstEnd {
			o.hdr[1] = 0x80
		}
		o.hdr.setLUN(t.lun)
		o.hdr.setU32(16, t.itt)
		o.hdr.setU32(20, reservedTag)
		o.hdr.setU32(36, dataSN)
		o.hdr.setU32(40, uint32(off))
		o.data = data[off : off+seg]
		o.flags = pduWindow
		if last && collapse {
			o.hdr[1] |= 0x01 | rflags
			o.hdr[3] = status
			o.hdr.setU32(44, uint32(resid))
			o.flags |= pduStatSN | pduAdvance
		}
		dataSN++
		off += seg
	}
	if !collapse {
		pdus = append(pdus, outPDU{})
		o := &pdus[len(pdus)-1]
		o.hdr[0] = opSCSIResp
		o.hdr[1] = 0x80 | rflags
		o.hdr[3] = status
		o.hdr.setU32(16, t.itt)
		if t.read {
			o.hdr.setU32(36, dataSN)
		} else {
			o.hdr.setU32(36, t.r2tSN)
		}
		o.hdr.setU32(44, uint32(resid))
		if len(sense) > 0 {
			l := copy(t.senseBuf[2:], sense)
			binary.BigEndian.PutUint16(t.senseBuf[:2], uint16(l))
			o.data = t.senseBuf[:2+l]
		}
		o.flags = pduStatSN | pduAdvance | pduWindow
	}
	t.pdus = pdus
	return s.c.w.send(pdus)
}
