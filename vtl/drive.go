package vtl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// Identity of the emulated tape drive (IBM LTO-5, as AWS Tape Gateway).
const (
	driveVendor   = "IBM"
	driveProduct  = "ULT3580-TD5"
	driveRevision = "D8D5"
	// densityLTO5 is the LTO-5 density code.
	densityLTO5 = 0x58
	// versionSSC3 is the SSC-3 version descriptor.
	versionSSC3 uint16 = 0x0500
)

// Drive is an SSC-3 sequential-access device (a tape drive) of a Library.
// It implements scsi.LogicalUnit. Commands are serialized: a tape is one
// stream.
type Drive struct {
	lib    *Library
	num    int // 1-based drive number
	serial string
	log    *slog.Logger
	ua     *scsi.UnitAttentions

	mu        sync.Mutex
	cart      *cartridge // tape in the drive, nil when empty
	mode      scsi.ModePages
	blockSize uint32 // 0: variable-block mode
	prevent   map[scsi.Nexus]bool
	stats     driveStats
}

// driveStats are the counters of the LOG SENSE usage pages.
type driveStats struct {
	written, read, compWritten uint64
}

// cartridge is a tape inside a drive.
type cartridge struct {
	barcode  string
	readOnly bool
	worm     bool
	capacity uint64
	ew       uint64 // early-warning zone size
	store    objstore.Store
	prefix   string
	// io is nil while the tape is unloaded (ejected but still in the
	// drive).
	io  *tapeIO
	pos uint64
}

var _ scsi.LogicalUnit = (*Drive)(nil)

func newDrive(l *Library, num int) *Drive {
	d := &Drive{
		lib:     l,
		num:     num,
		serial:  fmt.Sprintf("%s%02d", l.serialBase(), num),
		log:     l.log.With("drive", num),
		ua:      scsi.NewUnitAttentions(),
		prevent: make(map[scsi.Nexus]bool),
	}
	d.mode = driveModePages()
	return d
}

// Serial returns the drive's serial number (VPD page 80h, DVCID).
func (d *Drive) Serial() string { return d.serial }

// Number returns the drive's 1-based number.
func (d *Drive) Number() int { return d.num }

// Reset implements scsi.LogicalUnit.
func (d *Drive) Reset(kind scsi.ResetKind, by scsi.Nexus) {
	d.mu.Lock()
	clear(d.prevent)
	d.mu.Unlock()
	code := scsi.ASCBusDeviceResetOccurred
	if kind != scsi.ResetLogicalUnit {
		code = scsi.ASCPowerOnResetOccurred
	}
	d.ua.EstablishAll(code, func(n scsi.Nexus) bool { return n == by })
}

// NexusLost implements scsi.LogicalUnit.
func (d *Drive) NexusLost(n scsi.Nexus) {
	d.mu.Lock()
	delete(d.prevent, n)
	d.mu.Unlock()
	d.ua.Forget(n)
}

type driveOp func(d *Drive, ctx context.Context, cmd *scsi.Command, c scsi.CDB) (int, error)

// driveOps is the drive's command table, built per call to stay free of
// package-level state; it is cheap (an array of function values).
func driveOps(op byte) (driveOp, bool) {
	switch op {
	case 0x00:
		return (*Drive).opTestUnitReady, true
	case 0x01:
		return (*Drive).opRewind, true
	case 0x03:
		return (*Drive).opRequestSense, true
	case 0x05:
		return (*Drive).opReadBlockLimits, true
	case 0x08:
		return (*Drive).opRead, true
	case 0x0a:
		return (*Drive).opWrite, true
	case 0x10:
		return (*Drive).opWriteFilemarks, true
	case 0x11, 0x91:
		return (*Drive).opSpace, true
	case 0x12:
		return (*Drive).opInquiry, true
	case 0x15, 0x55:
		return (*Drive).opModeSelect, true
	case 0x16, 0x17, 0x56, 0x57: // RESERVE / RELEASE: single-initiator use
		return func(*Drive, context.Context, *scsi.Command, scsi.CDB) (int, error) { return 0, nil }, true
	case 0x19:
		return (*Drive).opErase, true
	case 0x1a, 0x5a:
		return (*Drive).opModeSense, true
	case 0x1b:
		return (*Drive).opLoadUnload, true
	case 0x1e:
		return (*Drive).opPreventAllow, true
	case 0x2b, 0x92:
		return (*Drive).opLocate, true
	case 0x34:
		return (*Drive).opReadPosition, true
	case 0x44:
		return (*Drive).opReportDensity, true
	case 0x4c:
		return (*Drive).opLogSelect, true
	case 0x4d:
		return (*Drive).opLogSense, true
	case 0xa0:
		return (*Drive).opReportLUNs, true
	case 0xa3:
		return (*Drive).opReportOpcodes, true
	}
	return nil, false
}

// driveCommands lists the drive's commands for REPORT SUPPORTED OPERATION
// CODES.
func driveCommands() []scsi.CommandInfo {
	ops := []byte{0x00, 0x01, 0x03, 0x05, 0x08, 0x0a, 0x10, 0x11, 0x12, 0x15, 0x16, 0x17, 0x19, 0x1a, 0x1b, 0x1e,
		0x2b, 0x34, 0x44, 0x4c, 0x4d, 0x55, 0x56, 0x57, 0x5a, 0x91, 0x92, 0xa0}
	out := make([]scsi.CommandInfo, 0, len(ops)+1)
	for _, o := range ops {
		ci := scsi.CommandInfo{Opcode: o, Flags: 0xff}
		switch o {
		case 0x01, 0x10, 0x19, 0x1b, 0x2b, 0x92, 0x11, 0x91:
			ci.Timeout = 3600
		}
		out = append(out, ci)
	}
	out = append(out, scsi.CommandInfo{Opcode: 0xa3, ServiceAction: 0x0c, HasServiceAction: true})
	return out
}

// Execute implements scsi.LogicalUnit.
func (d *Drive) Execute(ctx context.Context, cmd *scsi.Command) (int, error) {
	c, err := scsi.DecodeCDB(cmd.CDB)
	if err != nil {
		return 0, err
	}
	switch c.Opcode {
	case 0x12, 0xa0, 0x03:
		d.ua.Peek(cmd.Nexus)
	default:
		if code, ok := d.ua.Next(cmd.Nexus); ok {
			return 0, scsi.ErrUnitAttention(code)
		}
	}
	run, ok := driveOps(c.Opcode)
	if !ok {
		return 0, scsi.ErrInvalidOpcode()
	}
	if c.NACA() {
		return 0, scsi.ErrInvalidField(len(c.Raw)-1, 2)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, err := run(d, ctx, cmd, c)
	if err != nil {
		var se *scsi.SenseError
		if !errors.As(err, &se) {
			d.log.Warn("command failed", "op", fmt.Sprintf("%#02x", c.Opcode), "err", err)
		}
	}
	return min(n, len(cmd.DataIn)), err
}

// ready returns the loaded cartridge or the NOT READY error.
func (d *Drive) ready() (*cartridge, error) {
	if d.cart == nil {
		return nil, errNoMedium()
	}
	if d.cart.io == nil {
		return nil, scsi.ErrNotReady(scsi.ASCNotReadyInitCmdRequired)
	}
	return d.cart, nil
}

// ioErr classifies a storage failure as a SCSI error.
func ioErr(code scsi.ASC, err error) error {
	var se *scsi.SenseError
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return scsi.ErrAborted(scsi.ASCNoAdditionalSense, err)
	}
	return scsi.ErrMediumError(code, err)
}

// commit makes the cartridge's writes durable (see the package
// documentation).
func (d *Drive) commit(ctx context.Context, cr *cartridge) error {
	if err := cr.io.commit(ctx); err != nil {
		return ioErr(scsi.ASCWriteError, err)
	}
	return nil
}

// insert puts a tape into the drive and loads it (the changer moved it
// here). Called by the library with its lock held.
func (d *Drive) insert(ctx context.Context, cr *cartridge) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cart != nil {
		return scsi.NewSense(scsi.SenseIllegalRequest, ascDestinationFull)
	}
	if err := d.load(ctx, cr); err != nil {
		return err
	}
	d.cart = cr
	d.ua.EstablishAll(scsi.ASCNotReadyToReadyChange, nil)
	return nil
}

// load opens the tape's index.
func (d *Drive) load(ctx context.Context, cr *cartridge) error {
	t, err := openTape(ctx, cr.store, d.lib.codec, cr.prefix, d.lib.cfg.SegmentSize, d.lib.cfg.UploadConcurrency, d.lib.cfg.ReadAhead, d.lib.cfg.chunkSegs, !cr.readOnly, d.lib.failpoint)
	if err != nil {
		return ioErr(scsi.ASCUnrecoveredReadError, err).(*scsi.SenseError)
	}
	cr.io, cr.pos = t, 0
	return nil
}

// unload commits and closes the tape; it stays in the drive.
func (d *Drive) unload(ctx context.Context) error {
	cr := d.cart
	if cr == nil || cr.io == nil {
		return nil
	}
	err := cr.io.close(ctx, true)
	d.lib.noteUsage(cr.barcode, cr.io.x.usedBytes())
	cr.io = nil
	if err != nil {
		return ioErr(scsi.ASCWriteError, err)
	}
	return nil
}

// remove takes the tape out (the changer moves it away). Called by the
// library with its lock held.
func (d *Drive) remove(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cart == nil {
		return "", scsi.NewSense(scsi.SenseIllegalRequest, ascSourceEmpty)
	}
	if len(d.prevent) > 0 {
		return "", scsi.NewSense(scsi.SenseIllegalRequest, scsi.ASCMediumRemovalPrevented)
	}
	if err := d.unload(ctx); err != nil {
		return "", err
	}
	bc := d.cart.barcode
	d.cart = nil
	return bc, nil
}

// shutdown unloads the tape at library close.
func (d *Drive) shutdown(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unload(ctx)
}

// Loaded returns the barcode of the tape in the drive ("" when empty).
func (d *Drive) Loaded() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cart == nil {
		return ""
	}
	return d.cart.barcode
}
