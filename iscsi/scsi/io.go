package scsi

import (
	"bytes"
	"context"
	"fmt"
)

// Block-command flag bits in CDB byte 1.
const (
	flagFUA    = 0x08
	flagDPO    = 0x10
	flagBytChk = 0x02 // VERIFY / WRITE AND VERIFY (BYTCHK field low bit)
)

// rwParams extracts LBA and transfer length of a READ/WRITE/VERIFY family
// CDB, applying the 6-byte rules (21-bit LBA, length 0 means 256).
func rwParams(c *CDB) (lba uint64, n uint32) {
	if len(c.Raw) == 6 {
		n = c.Length
		if n == 0 {
			n = 256
		}
		return c.LBA, n
	}
	return c.LBA, c.Length
}

// protectField fails when the RDPROTECT/WRPROTECT/VRPROTECT field (bits
// 7-5 of byte 1) is set: the disk has no protection information.
func protectField(c *CDB) error {
	if len(c.Raw) > 6 && c.Raw[1]&0xe0 != 0 {
		return ErrInvalidField(1, 7)
	}
	return nil
}

// checkXfer validates a transfer of n blocks at lba against the capacity
// and the maximum transfer length.
func (d *Disk) checkXfer(lba uint64, n uint32) error {
	if err := d.checkRange(lba, uint64(n)); err != nil {
		return err
	}
	if n > d.opts.MaxTransferBlocks {
		return ErrInvalidField(0, -1).Wrap(fmt.Errorf("transfer of %d blocks exceeds maximum %d", n, d.opts.MaxTransferBlocks))
	}
	return nil
}

// opRead serves READ(6/10/12/16): it reads straight into cmd.DataIn. When
// the initiator's buffer is shorter than the CDB asks for, only what fits is
// transferred (the transport reports the residual).
func opRead(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	if err := protectField(&c); err != nil {
		return 0, err
	}
	lba, n := rwParams(&c)
	if err := d.checkXfer(lba, n); err != nil {
		return 0, err
	}
	want := int64(n) << d.bsShift
	if int64(len(cmd.DataIn)) < want {
		want = int64(len(cmd.DataIn))
	}
	// Shared stripe locks keep reads from seeing half of a COMPARE AND
	// WRITE, ORWRITE or WRITE ATOMIC.
	off := int64(lba) << d.bsShift
	m := d.stripeMask(off, want)
	d.lockStripes(m, false)
	defer d.unlockStripes(m, false)
	return d.readInto(ctx, cmd.DataIn[:want], off)
}

// readInto reads len(p) bytes at off; a partial trailing block goes
// through a bounce buffer so that the device only sees whole blocks.
func (d *Disk) readInto(ctx context.Context, p []byte, off int64) (int, error) {
	whole := len(p) &^ (d.bs - 1)
	if whole > 0 {
		if err := d.dev.ReadAt(ctx, p[:whole], off); err != nil {
			return 0, ioErr(ASCUnrecoveredReadError, err)
		}
	}
	if rest := len(p) - whole; rest > 0 {
		buf := make([]byte, d.bs)
		if err := d.dev.ReadAt(ctx, buf, off+int64(whole)); err != nil {
			return 0, ioErr(ASCUnrecoveredReadError, err)
		}
		copy(p[whole:], buf)
	}
	return len(p), nil
}

// writeFrom writes p at off, taking the shared stripe locks so that COMPARE
// AND WRITE stays atomic. A partial trailing block is merged with the
// existing data (read-modify-write) under exclusive locks, so that two such
// writes cannot lose each other's bytes.
func (d *Disk) writeFrom(ctx context.Context, p []byte, off int64, fua bool) error {
	excl := len(p)&(d.bs-1) != 0
	m := d.stripeMask(off, int64(len(p)))
	d.lockStripes(m, excl)
	defer d.unlockStripes(m, excl)
	return d.writeLocked(ctx, p, off, fua)
}

// writeLocked writes p at off; the caller holds the stripe locks.
func (d *Disk) writeLocked(ctx context.Context, p []byte, off int64, fua bool) error {
	whole := len(p) &^ (d.bs - 1)
	if whole > 0 {
		if err := d.dev.WriteAt(ctx, p[:whole], off, fua); err != nil {
			return ioErr(ASCWriteError, err)
		}
	}
	if rest := len(p) - whole; rest > 0 {
		buf := make([]byte, d.bs)
		if err := d.dev.ReadAt(ctx, buf, off+int64(whole)); err != nil {
			return ioErr(ASCUnrecoveredReadError, err)
		}
		copy(buf, p[whole:])
		if err := d.dev.WriteAt(ctx, buf, off+int64(whole), fua); err != nil {
			return ioErr(ASCWriteError, err)
		}
	}
	return nil
}

// opWrite serves WRITE(6/10/12/16): cmd.DataOut goes straight to the
// device. When the initiator sent less data than the CDB describes, only
// the data sent is written (SAM/FCP overflow rule: data beyond the
// expected transfer length is neither requested nor transferred).
func opWrite(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	if err := protectField(&c); err != nil {
		return 0, err
	}
	lba, n := rwParams(&c)
	if err := d.checkXfer(lba, n); err != nil {
		return 0, err
	}
	if err := d.writable(); err != nil {
		return 0, err
	}
	want := int64(n) << d.bsShift
	p := cmd.DataOut
	if int64(len(p)) > want {
		p = p[:want]
	}
	fua := len(c.Raw) > 6 && c.Flags&flagFUA != 0 || !d.wce.Load()
	return 0, d.writeFrom(ctx, p, int64(lba)<<d.bsShift, fua)
}

// opVerify serves VERIFY(10/12/16). BYTCHK 00b checks the medium is
// readable; 01b compares with the data-out buffer; 11b compares every block
// with the single block sent.
func opVerify(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	if err := protectField(&c); err != nil {
		return 0, err
	}
	lba, n := rwParams(&c)
	bytchk := (c.Flags >> 1) & 3
	if bytchk == 2 {
		return 0, ErrInvalidField(1, 2)
	}
	if err := d.checkXfer(lba, n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return 0, d.verify(ctx, cmd.DataOut, lba, n, bytchk)
}

// verify compares n blocks at lba with data (bytchk 1: data holds n blocks;
// 3: data holds one block repeated), or only reads them (bytchk 0).
func (d *Disk) verify(ctx context.Context, data []byte, lba uint64, n uint32, bytchk byte) error {
	need := int64(n) << d.bsShift
	if bytchk == 3 {
		need = int64(d.bs)
	}
	if bytchk != 0 && int64(len(data)) < need {
		return ErrParamListLength().Wrap(fmt.Errorf("verify: %d bytes of data, need %d", len(data), need))
	}
	const chunk = 256 << 10
	bufLen := int64(chunk)
	if need := int64(n) << d.bsShift; need < bufLen {
		bufLen = need
	}
	buf := make([]byte, bufLen)
	off := int64(lba) << d.bsShift
	total := int64(n) << d.bsShift
	for done := int64(0); done < total; {
		k := min(bufLen, total-done)
		if err := d.dev.ReadAt(ctx, buf[:k], off+done); err != nil {
			return ioErr(ASCUnrecoveredReadError, err)
		}
		switch bytchk {
		case 1:
			if i := firstDiff(buf[:k], data[done:done+k]); i >= 0 {
				return ErrMiscompare(uint64(done) + uint64(i))
			}
		case 3:
			for b := int64(0); b < k; b += int64(d.bs) {
				if i := firstDiff(buf[b:b+int64(d.bs)], data[:d.bs]); i >= 0 {
					return ErrMiscompare(uint64(done+b) + uint64(i))
				}
			}
		}
		done += k
	}
	return nil
}

// firstDiff returns the index of the first byte where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// opWriteVerify serves WRITE AND VERIFY(10/12/16): the data is written and,
// with BYTCHK, read back and compared.
func opWriteVerify(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error) {
	if err := protectField(&c); err != nil {
		return 0, err
	}
	lba, n := rwParams(&c)
	if err := d.checkXfer(lba, n); err != nil {
		return 0, err
	}
	if err := d.writable(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	want := int64(n) << d.bsShift
	p := cmd.DataOut
	if int64(len(p)) > want {
		p = p[:want]
	}
	off := int64(lba) << d.bsShift
	if err := d.writeFrom(ctx, p, off, true); err != nil {
		return 0, err
	}
	if c.Flags&flagBytChk != 0 && len(p) >= d.bs {
		blocks := uint32(len(p) >> d.bsShift)
		return 0, d.verify(ctx, p, lba, blocks, 1)
	}
	return 0, nil
}

// opSyncCache serves SYNCHRONIZE CACHE(10/16). With IMMED the flush still
// completes before status: the transport has no way to report it later,
// and a flush is cheap enough.
func opSyncCache(d *Disk, ctx context.Context, _ *Command, c CDB) (int, error) {
	if err := d.checkRange(c.LBA, uint64(c.Length)); err != nil {
		return 0, err
	}
	if err := d.dev.Flush(ctx); err != nil {
		return 0, ioErr(ASCWriteError, err)
	}
	return 0, nil
}

// opPrefetch serves PRE-FETCH(10/16): the range is checked; there is no
// cache to fill, so GOOD is returned (CONDITION MET would promise the
// blocks fit in a cache).
func opPrefetch(d *Disk, _ context.Context, _ *Command, c CDB) (int, error) {
	if err := d.checkRange(c.LBA, uint64(c.Length)); err != nil {
		return 0, err
	}
	return 0, nil
}
