package vtl

import (
	"context"
	"encoding/binary"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func (d *Drive) opTestUnitReady(context.Context, *scsi.Command, scsi.CDB) (int, error) {
	_, err := d.ready()
	return 0, err
}

func (d *Drive) opRequestSense(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	return scsi.RequestSense(d.ua, cmd, &c)
}

// opReadBlockLimits serves READ BLOCK LIMITS (SSC-3 7.6).
func (d *Drive) opReadBlockLimits(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	if c.Raw[1]&0x01 != 0 { // MLOI: maximum logical object identifier
		var b [20]byte
		b[3] = 16
		binary.BigEndian.PutUint64(b[12:], 1<<48-1)
		return scsi.Respond(cmd, b[:], len(b)), nil
	}
	var b [6]byte
	mx := d.lib.cfg.MaxBlockSize
	b[1], b[2], b[3] = byte(mx>>16), byte(mx>>8), byte(mx)
	binary.BigEndian.PutUint16(b[4:], 1)
	return scsi.Respond(cmd, b[:], len(b)), nil
}

// opRewind serves REWIND.
func (d *Drive) opRewind(ctx context.Context, _ *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	if err := d.commit(ctx, cr); err != nil {
		return 0, err
	}
	cr.pos = 0
	return 0, nil
}

// opLoadUnload serves LOAD UNLOAD (SSC-3 7.2): LOAD (re)loads and rewinds,
// unload commits and leaves the tape in the drive for the changer.
func (d *Drive) opLoadUnload(ctx context.Context, _ *scsi.Command, c scsi.CDB) (int, error) {
	load := c.Raw[4]&0x01 != 0
	if c.Raw[4]&0x04 != 0 && load { // EOT with LOAD
		return 0, scsi.ErrInvalidField(4, 2)
	}
	if d.cart == nil {
		return 0, errNoMedium()
	}
	if load {
		if d.cart.io == nil {
			if err := d.load(ctx, d.cart); err != nil {
				return 0, err
			}
			return 0, nil
		}
		if err := d.commit(ctx, d.cart); err != nil {
			return 0, err
		}
		d.cart.pos = 0
		return 0, nil
	}
	if len(d.prevent) > 0 {
		return 0, scsi.NewSense(scsi.SenseIllegalRequest, scsi.ASCMediumRemovalPrevented)
	}
	return 0, d.unload(ctx)
}

// opPreventAllow serves PREVENT ALLOW MEDIUM REMOVAL, per nexus.
func (d *Drive) opPreventAllow(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	if c.Raw[4]&0x01 != 0 {
		d.prevent[cmd.Nexus] = true
	} else {
		delete(d.prevent, cmd.Nexus)
	}
	return 0, nil
}

// resid24 returns the 24-bit TRANSFER LENGTH of a 6-byte READ/WRITE.
func resid24(c scsi.CDB) uint32 { return c.Uint24(2) }

// opWrite serves WRITE(6) in fixed and variable block modes.
func (d *Drive) opWrite(ctx context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	fixed := c.Raw[1]&0x01 != 0
	if c.Raw[1]&0x02 != 0 { // SILI is not defined for WRITE
		return 0, scsi.ErrInvalidField(1, 1)
	}
	n := resid24(c)
	size, count, err := d.transfer(fixed, n)
	if err != nil || count == 0 {
		return 0, err
	}
	if cr.readOnly {
		return 0, scsi.ErrWriteProtected()
	}
	t := cr.io
	if cr.worm && cr.pos < t.x.eod() {
		return 0, scsi.NewSense(scsi.SenseDataProtect, ascWORMOverwrite)
	}
	data := cmd.DataOut
	if uint64(len(data)) < uint64(size)*uint64(count) {
		return 0, scsi.ErrInvalidField(2, -1)
	}
	if t.writing() || cr.pos < t.x.eod() {
		t.prepareWrite(cr.pos)
		t.dropReadCache()
	}
	for i := uint32(0); i < count; i++ {
		if t.x.usedBytes()+uint64(size) > cr.capacity {
			se := scsi.NewSense(scsi.SenseVolumeOverflow, ascEndOfPartition)
			se.EOM = true
			if fixed {
				return 0, se.WithInfo(uint64(count - i))
			}
			return 0, se.WithInfo(uint64(n))
		}
		if err := t.writeRecord(ctx, data[:size]); err != nil {
			return 0, ioErr(scsi.ASCWriteError, err)
		}
		data = data[size:]
		cr.pos++
	}
	d.stats.written += uint64(size) * uint64(count)
	if err := t.up.failed(); err != nil {
		return 0, ioErr(scsi.ASCWriteError, err)
	}
	if t.x.usedBytes()+cr.ew >= cr.capacity {
		se := scsi.NewSense(scsi.SenseNoSense, ascEndOfPartition).WithInfo(0)
		se.EOM = true
		return 0, se
	}
	return 0, nil
}

// transfer checks a READ/WRITE transfer length and returns the record
// size and count.
func (d *Drive) transfer(fixed bool, n uint32) (size, count uint32, err error) {
	if fixed {
		if d.blockSize == 0 {
			return 0, 0, scsi.ErrInvalidField(1, 0)
		}
		return d.blockSize, n, nil
	}
	if n == 0 {
		return 0, 0, nil
	}
	if n > uint32(d.lib.cfg.MaxBlockSize) {
		return 0, 0, scsi.ErrInvalidField(2, -1)
	}
	return n, 1, nil
}

// opRead serves READ(6) (SSC-3 6.4): filemarks, end-of-data and records of
// another length than asked end the command with the FILEMARK, BLANK
// CHECK or ILI sense the standard defines, with the residue in
// INFORMATION.
func (d *Drive) opRead(ctx context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	fixed := c.Raw[1]&0x01 != 0
	sili := c.Raw[1]&0x02 != 0
	if fixed && sili {
		return 0, scsi.ErrInvalidField(1, 1)
	}
	n := resid24(c)
	size, count, err := d.transfer(fixed, n)
	if err != nil || count == 0 {
		return 0, err
	}
	t := cr.io
	if t.writing() || t.dirty {
		if err := d.commit(ctx, cr); err != nil {
			return 0, err
		}
	}
	out := cmd.DataIn
	got := 0
	eod := t.x.eod()
	for i := uint32(0); i < count; i++ {
		if cr.pos >= eod {
			se := scsi.NewSense(scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected)
			return got, se.WithInfo(uint64(count - i))
		}
		pc := t.x.seek(cr.pos)
		rec, fm, err := t.readObject(ctx, pc)
		if err != nil {
			return got, ioErr(scsi.ASCUnrecoveredReadError, err)
		}
		cr.pos++
		if fm {
			se := scsi.NewSense(scsi.SenseNoSense, scsi.ASCFilemarkDetected)
			se.Filemark = true
			if fixed {
				return got, se.WithInfo(uint64(count - i))
			}
			return got, se.WithInfo(uint64(n))
		}
		m := min(len(rec), int(size))
		if got < len(out) {
			copy(out[got:min(len(out), got+m)], rec[:m])
		}
		got += m
		d.stats.read += uint64(m)
		if uint32(len(rec)) != size {
			if !fixed && sili && uint32(len(rec)) < size {
				return got, nil
			}
			se := scsi.NewSense(scsi.SenseNoSense, scsi.ASCNoAdditionalSense)
			se.ILI = true
			if fixed {
				return got, se.WithInfo(uint64(count - i))
			}
			return got, se.WithInfo(uint64(int64(size) - int64(len(rec))))
		}
	}
	return got, nil
}

// opWriteFilemarks serves WRITE FILEMARKS(6); it is a durability point
// even with a count of zero or IMMED set. Setmarks are refused.
func (d *Drive) opWriteFilemarks(ctx context.Context, _ *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	if c.Raw[1]&0x02 != 0 { // WSMK
		return 0, scsi.ErrInvalidField(1, 1)
	}
	n := resid24(c)
	t := cr.io
	if n > 0 {
		if cr.readOnly {
			return 0, scsi.ErrWriteProtected()
		}
		if cr.worm && cr.pos < t.x.eod() {
			return 0, scsi.NewSense(scsi.SenseDataProtect, ascWORMOverwrite)
		}
		t.prepareWrite(cr.pos)
		t.dropReadCache()
		if err := t.writeFilemarks(n); err != nil {
			return 0, scsi.ErrInvalidField(2, -1).Wrap(err)
		}
		cr.pos += uint64(n)
	}
	if err := d.commit(ctx, cr); err != nil {
		return 0, err
	}
	return 0, nil
}

// opErase serves ERASE(6): everything from the current position on is
// removed (end-of-data moves here).
func (d *Drive) opErase(ctx context.Context, _ *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	if cr.readOnly {
		return 0, scsi.ErrWriteProtected()
	}
	t := cr.io
	if cr.worm && cr.pos < t.x.eod() {
		return 0, scsi.NewSense(scsi.SenseDataProtect, ascWORMOverwrite)
	}
	t.prepareWrite(cr.pos)
	t.dropReadCache()
	return 0, d.commit(ctx, cr)
}

// opSpace serves SPACE(6) and SPACE(16) over blocks, filemarks and to
// end-of-data, forward and backward, using the index only.
func (d *Drive) opSpace(ctx context.Context, _ *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	var code byte
	var count int64
	if c.Opcode == 0x11 {
		code = c.Raw[1] & 0x07
		count = int64(int32(c.Uint24(2)<<8) >> 8)
	} else {
		code = c.Raw[1] & 0x0f
		count = int64(c.Uint64(4))
	}
	if err := d.commit(ctx, cr); err != nil {
		return 0, err
	}
	x := cr.io.x
	eod := x.eod()
	switch code {
	case 0: // logical blocks
		return 0, spaceBlocks(cr, x, count)
	case 1: // filemarks
		return 0, spaceFilemarks(cr, x, count)
	case 3: // end-of-data
		cr.pos = eod
		return 0, nil
	}
	return 0, scsi.ErrInvalidField(1, 0)
}

func magnitude(n int64) uint64 {
	if n < 0 {
		return uint64(-n)
	}
	return uint64(n)
}

func spaceBlocks(cr *cartridge, x *tapeIndex, count int64) error {
	eod := x.eod()
	if count > 0 {
		target := cr.pos + uint64(count)
		if fm, ok := x.nextFM(cr.pos); ok && fm < target {
			done := fm - cr.pos
			cr.pos = fm + 1
			se := scsi.NewSense(scsi.SenseNoSense, scsi.ASCFilemarkDetected).WithInfo(uint64(count) - done)
			se.Filemark = true
			return se
		}
		if target > eod {
			done := eod - cr.pos
			cr.pos = eod
			return scsi.NewSense(scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected).WithInfo(uint64(count) - done)
		}
		cr.pos = target
		return nil
	}
	if count == 0 {
		return nil
	}
	m := magnitude(count)
	var floor uint64
	if fm, ok := x.prevFM(cr.pos); ok {
		floor = fm + 1
	}
	if cr.pos-floor < m {
		done := cr.pos - floor
		if floor > 0 {
			cr.pos = floor - 1 // on the BOP side of the filemark
			se := scsi.NewSense(scsi.SenseNoSense, scsi.ASCFilemarkDetected).WithInfo(m - done)
			se.Filemark = true
			return se
		}
		cr.pos = 0
		se := scsi.NewSense(scsi.SenseNoSense, scsi.ASCBeginningOfPartition).WithInfo(m - done)
		se.EOM = true
		return se
	}
	cr.pos -= m
	return nil
}

func spaceFilemarks(cr *cartridge, x *tapeIndex, count int64) error {
	if count > 0 {
		i := x.fmBefore(cr.pos) // index of the first filemark at or after pos
		m := uint64(count)
		if i+m > uint64(len(x.fms)) {
			done := uint64(len(x.fms)) - i
			cr.pos = x.eod()
			return scsi.NewSense(scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected).WithInfo(m - done)
		}
		cr.pos = x.fms[i+m-1] + 1
		return nil
	}
	if count == 0 {
		return nil
	}
	m := magnitude(count)
	i := x.fmBefore(cr.pos) // filemarks before pos
	if m > i {
		cr.pos = 0
		se := scsi.NewSense(scsi.SenseNoSense, scsi.ASCBeginningOfPartition).WithInfo(m - i)
		se.EOM = true
		return se
	}
	cr.pos = x.fms[i-m]
	return nil
}

// opLocate serves LOCATE(10) and LOCATE(16) to a logical object, a
// logical file (LOCATE(16) DEST_TYPE 1) or end-of-data (DEST_TYPE 3).
func (d *Drive) opLocate(ctx context.Context, _ *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	var dest byte
	var target uint64
	var cp bool
	var part byte
	if c.Opcode == 0x2b {
		cp, part = c.Raw[1]&0x02 != 0, c.Raw[8]
		target = uint64(c.Uint32(3))
	} else {
		dest = c.Raw[1] >> 3 & 0x07
		cp, part = c.Raw[1]&0x02 != 0, c.Raw[3]
		target = c.Uint64(4)
	}
	if cp && part != 0 {
		return 0, scsi.ErrInvalidField(1, 1)
	}
	if err := d.commit(ctx, cr); err != nil {
		return 0, err
	}
	x := cr.io.x
	switch dest {
	case 0:
	case 1: // logical file identifier
		switch {
		case target == 0:
		case target <= uint64(len(x.fms)):
			target = x.fms[target-1] + 1
		default:
			target = x.eod() + 1
		}
	case 3:
		target = x.eod()
	default:
		return 0, scsi.ErrInvalidField(1, 5)
	}
	if target > x.eod() {
		cr.pos = x.eod()
		return 0, scsi.NewSense(scsi.SenseBlankCheck, scsi.ASCEndOfDataDetected)
	}
	cr.pos = target
	return 0, nil
}

// opReadPosition serves READ POSITION short form (service actions 00h and
// 01h), long form (06h) and extended form (08h).
func (d *Drive) opReadPosition(ctx context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	cr, err := d.ready()
	if err != nil {
		return 0, err
	}
	x := cr.io.x
	pos := cr.pos
	var flags byte
	if pos == 0 {
		flags |= 0x80 // BOP
	}
	bpew := x.usedBytes()+cr.ew >= cr.capacity && pos >= x.eod()
	switch sa := c.Raw[1] & 0x1f; sa {
	case 0x00, 0x01:
		var b [20]byte
		if bpew {
			flags |= 0x01
		}
		b[0] = flags
		if pos > 0xffffffff {
			b[0] |= 0x04 // LOLU: position beyond the short form
		}
		binary.BigEndian.PutUint32(b[4:], uint32(pos))
		binary.BigEndian.PutUint32(b[8:], uint32(pos))
		return scsi.Respond(cmd, b[:], len(cmd.DataIn)), nil
	case 0x06:
		var b [32]byte
		if bpew {
			flags |= 0x01
		}
		b[0] = flags
		binary.BigEndian.PutUint64(b[8:], pos)
		binary.BigEndian.PutUint64(b[16:], x.fmBefore(pos))
		return scsi.Respond(cmd, b[:], len(cmd.DataIn)), nil
	case 0x08:
		var b [32]byte
		b[0] = flags
		binary.BigEndian.PutUint16(b[2:], 28)
		binary.BigEndian.PutUint64(b[8:], pos)
		binary.BigEndian.PutUint64(b[16:], pos)
		return scsi.Respond(cmd, b[:], int(c.Uint16(7))), nil
	}
	return 0, scsi.ErrInvalidField(1, 4)
}

func (d *Drive) opReportLUNs(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	return reportLUNs(cmd, &c)
}

func (d *Drive) opReportOpcodes(_ context.Context, cmd *scsi.Command, c scsi.CDB) (int, error) {
	if c.ServiceAction != 0x0c {
		return 0, scsi.ErrInvalidField(1, 4)
	}
	return scsi.ReportSupportedOpcodes(cmd, &c, driveCommands())
}

// reportLUNs answers REPORT LUNS with LUN 0 (the transport normally
// answers it for the whole target).
func reportLUNs(cmd *scsi.Command, c *scsi.CDB) (int, error) {
	alloc := int(c.Uint32(6))
	if alloc < 16 {
		return 0, scsi.ErrInvalidField(6, -1)
	}
	var b [16]byte
	n := scsi.ReportLUNsData([]uint64{cmd.LUN}, b[:])
	return scsi.Respond(cmd, b[:n], alloc), nil
}
