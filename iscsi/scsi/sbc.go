package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
)

// opCompareAndWrite serves COMPARE AND WRITE (SBC-3 5.2). The data-out
// buffer holds the verify data followed by the write data; both must be
// exactly NUMBER OF LOGICAL BLOCKS long. The compare and the write happen
// under the exclusive stripe locks of the range, so no other write can slip
// in between.
func opCompareAndWrite(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	if err := protectField(&c); err != nil {
		return 0, err
	}
	n := uint32(c.Raw[13])
	if n > d.maxCompare() {
		return 0, ErrInvalidField(13, -1)
	}
	if err := d.checkRange(c.LBA, uint64(n)); err != nil {
		return 0, err
	}
	if err := d.writable(); err != nil {
		return 0, err
	}
	// The data-out buffer must be exactly the verify and write data, also
	// for zero blocks: a mismatch means the initiator and the CDB disagree
	// (an 8-bit NUMBER OF LOGICAL BLOCKS of 256 wraps to 0, for one).
	size := int(n) << d.bsShift
	if len(cmd.DataOut) != 2*size {
		return 0, ErrInvalidField(13, -1).Wrap(fmt.Errorf("compare and write: %d bytes of data for %d blocks", len(cmd.DataOut), n))
	}
	if n == 0 {
		return 0, nil
	}
	off := int64(c.LBA) << d.bsShift
	m := d.stripeMask(off, int64(size))
	d.lockStripes(m, true)
	defer d.unlockStripes(m, true)
	cur := make([]byte, size)
	if err := d.dev.ReadAt(ctx, cur, off); err != nil {
		return 0, ioErr(ASCUnrecoveredReadError, err)
	}
	if i := firstDiff(cur, cmd.DataOut[:size]); i >= 0 {
		return 0, ErrMiscompare(uint64(i))
	}
	fua := c.Flags&flagFUA != 0 || !d.wce.Load()
	return 0, d.writeLocked(ctx, cmd.DataOut[size:], off, fua)
}

func (d *Disk) maxCompare() uint32 {
	return min(uint32(d.opts.MaxCompareBlocks), d.opts.MaxTransferBlocks)
}

// opOrWrite serves ORWRITE(16) with ORPROTECT 0: each block is replaced by
// the bitwise OR of its contents and the data sent, atomically with respect
// to other writes.
func opOrWrite(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	p, off, unlock, err := d.lockWriteRange(cmd, &c, c.LBA, c.Length)
	if err != nil || unlock == nil {
		return 0, err
	}
	defer unlock()
	buf := make([]byte, (len(p)+d.bs-1)&^(d.bs-1))
	if err := d.dev.ReadAt(ctx, buf, off); err != nil {
		return 0, ioErr(ASCUnrecoveredReadError, err)
	}
	for i := range p {
		buf[i] |= p[i]
	}
	fua := c.Flags&flagFUA != 0 || !d.wce.Load()
	return 0, d.writeLocked(ctx, buf, off, fua)
}

// lockWriteRange checks a write-type command of n blocks at lba (protection
// field, range, write protection), cuts the data-out buffer to the CDB's
// length and takes the exclusive stripe locks of the range. It returns the
// data, its byte offset and the unlock function; a nil unlock with a nil
// error means there is nothing to write.
func (d *Disk) lockWriteRange(cmd *Command, c *CDB, lba uint64, n uint32) ([]byte, int64, func(), error) {
	if err := protectField(c); err != nil {
		return nil, 0, nil, err
	}
	if err := d.checkXfer(lba, n); err != nil {
		return nil, 0, nil, err
	}
	if err := d.writable(); err != nil {
		return nil, 0, nil, err
	}
	size := int64(n) << d.bsShift
	p := cmd.DataOut
	if int64(len(p)) > size {
		p = p[:size]
	}
	if len(p) == 0 {
		return nil, 0, nil, nil
	}
	off := int64(lba) << d.bsShift
	m := d.stripeMask(off, int64(len(p)))
	d.lockStripes(m, true)
	return p, off, func() { d.unlockStripes(m, true) }, nil
}

// opWriteAtomic serves WRITE ATOMIC(16) (SBC-4): a write that other
// commands see either completely or not at all. It runs under the exclusive
// stripe locks of its range, which every read and write of the disk
// respects.
func opWriteAtomic(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	p, off, unlock, err := d.lockWriteRange(cmd, &c, c.LBA, uint32(c.Uint16(12)))
	if err != nil || unlock == nil {
		return 0, err
	}
	defer unlock()
	fua := c.Flags&flagFUA != 0 || !d.wce.Load()
	return 0, d.writeLocked(ctx, p, off, fua)
}

// opWriteSame serves WRITE SAME(10/16) (SBC-3 5.41-5.43). A NUMBER OF
// LOGICAL BLOCKS of zero means "to the end of the medium". With UNMAP on a
// thin-provisioned disk (the device implements Unmapper) the range is
// deallocated whatever the data block holds, and reads back as zeros
// (LBPRZ), as initiators and libiscsi's conformance suite expect; without
// an Unmapper the block is written. NDOB (16 only) means a block of zeros
// without a data-out buffer.
func opWriteSame(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	if err := protectField(&c); err != nil {
		return 0, err
	}
	flags := c.Flags
	anchor, unmap := flags&0x10 != 0, flags&0x08 != 0
	ndob := len(c.Raw) == 16 && flags&0x01 != 0
	if flags&0x06 != 0 { // obsolete PBDATA/LBDATA
		return 0, ErrInvalidField(1, 1)
	}
	if anchor {
		// Anchored LBAs are not supported (ANC_SUP is zero).
		return 0, ErrInvalidField(1, 4)
	}
	if len(c.Raw) == 10 && flags&0x01 != 0 {
		return 0, ErrInvalidField(1, 0)
	}
	lba, n := c.LBA, uint64(c.Length)
	blocks := d.blocks.Load()
	if lba > blocks {
		return 0, ErrLBAOutOfRange()
	}
	if n == 0 {
		n = blocks - lba
	}
	if err := d.checkRange(lba, n); err != nil {
		return 0, err
	}
	if n > d.opts.MaxWriteSameBlocks {
		return 0, ErrInvalidField(0, -1).Wrap(fmt.Errorf("write same of %d blocks exceeds maximum %d", n, d.opts.MaxWriteSameBlocks))
	}
	if err := d.writable(); err != nil {
		return 0, err
	}
	var block []byte
	if ndob {
		block = make([]byte, d.bs)
	} else {
		if len(cmd.DataOut) != d.bs {
			return 0, ErrInvalidField(0, -1).Wrap(fmt.Errorf("write same: %d bytes of data, want one %d-byte block", len(cmd.DataOut), d.bs))
		}
		block = cmd.DataOut
	}
	if n == 0 {
		return 0, nil
	}
	off, size := int64(lba)<<d.bsShift, int64(n)<<d.bsShift
	if unmap && d.unmapper != nil {
		return 0, d.unmapRange(ctx, off, size)
	}
	return 0, d.writeRepeated(ctx, block, off, size)
}

// writeRepeated writes block over [off, off+size) in chunks of up to 1 MiB.
func (d *Disk) writeRepeated(ctx context.Context, block []byte, off, size int64) error {
	chunk := min(size, 1<<20)
	buf := make([]byte, chunk)
	for i := int64(0); i < chunk; i += int64(len(block)) {
		copy(buf[i:], block)
	}
	fua := !d.wce.Load()
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return ErrAborted(ASCNoAdditionalSense, err)
		}
		k := min(chunk, size-done)
		if err := d.writeFrom(ctx, buf[:k], off+done, fua); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// unmapRange deallocates [off, off+size) under the shared stripe locks.
func (d *Disk) unmapRange(ctx context.Context, off, size int64) error {
	m := d.stripeMask(off, size)
	d.lockStripes(m, false)
	defer d.unlockStripes(m, false)
	if err := d.unmapper.Unmap(ctx, off, size); err != nil {
		return ioErr(ASCWriteError, err)
	}
	return nil
}

// opUnmap serves UNMAP (SBC-3 5.28): the parameter list holds 16-byte
// block descriptors; all are validated before any is applied.
func opUnmap(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	if d.unmapper == nil {
		return 0, ErrInvalidOpcode()
	}
	if c.Raw[1]&0x01 != 0 { // ANCHOR
		return 0, ErrInvalidField(1, 0)
	}
	plen := int(c.Uint16(7))
	if plen == 0 {
		return 0, nil
	}
	if err := d.writable(); err != nil {
		return 0, err
	}
	if plen < 8 || len(cmd.DataOut) < plen {
		return 0, ErrParamListLength()
	}
	p := cmd.DataOut[:plen]
	dataLen := int(binary.BigEndian.Uint16(p[0:]))
	descLen := int(binary.BigEndian.Uint16(p[2:]))
	if dataLen != 0 && dataLen+2 > plen || descLen+8 > plen {
		return 0, ErrParamListLength()
	}
	if descLen%16 != 0 {
		return 0, ErrInvalidParam(2, -1)
	}
	nd := descLen / 16
	if uint32(nd) > d.opts.MaxUnmapDescriptors {
		return 0, ErrInvalidParam(2, -1)
	}
	blocks := d.blocks.Load()
	for i := 0; i < nd; i++ {
		desc := p[8+16*i:]
		lba, n := binary.BigEndian.Uint64(desc[0:]), uint64(binary.BigEndian.Uint32(desc[8:]))
		if lba > blocks || n > blocks-lba {
			return 0, ErrLBAOutOfRange()
		}
		if n > uint64(d.opts.MaxUnmapBlocks) {
			return 0, ErrInvalidParam(8+16*i+8, -1)
		}
	}
	for i := 0; i < nd; i++ {
		desc := p[8+16*i:]
		lba, n := binary.BigEndian.Uint64(desc[0:]), uint64(binary.BigEndian.Uint32(desc[8:]))
		if n == 0 {
			continue
		}
		if err := d.unmapRange(ctx, int64(lba)<<d.bsShift, int64(n)<<d.bsShift); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// maxLBAStatusDescriptors bounds one GET LBA STATUS response.
const maxLBAStatusDescriptors = 64

// opGetLBAStatus serves SERVICE ACTION IN(16) / GET LBA STATUS (SBC-3
// 5.5). Without a MappingReporter every block is reported mapped.
func opGetLBAStatus(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	lba := c.LBA
	alloc := int(c.Uint32(10))
	blocks := d.blocks.Load()
	if lba >= blocks {
		return 0, ErrLBAOutOfRange()
	}
	if alloc == 0 {
		return 0, nil
	}
	room := max(1, min(maxLBAStatusDescriptors, (alloc-8)/16))
	out := make([]byte, 8, 8+16*room)
	for k := 0; k < room && lba < blocks; k++ {
		mapped, run := true, blocks-lba
		if d.mapper != nil {
			m, r, err := d.mapper.Mapped(ctx, int64(lba)<<d.bsShift)
			if err != nil {
				return 0, ioErr(ASCUnrecoveredReadError, err)
			}
			mapped, run = m, uint64(r)>>d.bsShift
			if run == 0 {
				run = 1
			}
		}
		run = min(run, blocks-lba, 0xffffffff)
		var desc [16]byte
		binary.BigEndian.PutUint64(desc[0:], lba)
		binary.BigEndian.PutUint32(desc[8:], uint32(run))
		if !mapped {
			desc[12] = 1 // deallocated
		}
		out = append(out, desc[:]...)
		lba += run
	}
	binary.BigEndian.PutUint32(out[0:], uint32(len(out)-4))
	return Respond(cmd, out, alloc), nil
}

// opReadDefectData serves READ DEFECT DATA(10/12) with an empty list in
// the requested format.
func opReadDefectData(_ *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	if c.Opcode == 0x37 {
		alloc := int(c.Uint16(7))
		out := []byte{0, c.Raw[2] & 0x1f, 0, 0}
		return Respond(cmd, out, alloc), nil
	}
	alloc := int(c.Uint32(6))
	out := []byte{0, c.Raw[1] & 0x1f, 0, 0, 0, 0, 0, 0}
	return Respond(cmd, out, alloc), nil
}
