package scsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
)

// DiskOptions configures a Disk.
type DiskOptions struct {
	// BlockSize is the logical block size in bytes: 512 (the default when
	// zero) or 4096.
	BlockSize int
	// PhysicalBlockExp is the logical blocks per physical block exponent
	// reported by READ CAPACITY(16) (0: one logical block per physical).
	PhysicalBlockExp uint8
	// Vendor (default "SLUICE"), Product (default "VOLUME") and Revision
	// (default "0001") are the standard INQUIRY identification strings,
	// space padded to 8, 16 and 4 bytes.
	Vendor, Product, Revision string
	// Serial is the unit serial number (VPD page 80h); it defaults to the
	// hex form of ID.
	Serial string
	// ID is the 16-byte identifier behind the NAA IEEE Registered Extended
	// designator of VPD page 83h (see NAARegisteredExtended) and the default
	// serial number. It must be unique per volume and stable across
	// restarts: initiators (multipath, ESXi datastores) identify the
	// volume by it.
	ID [16]byte
	// RelativePortID, when set, is the relative target port identifier
	// reported in VPD page 83h and READ FULL STATUS for every nexus. When
	// zero, the target portal group tag of the nexus is used (an iSCSI
	// target port is a target name and a portal group), or 1 if that is 0.
	RelativePortID uint16
	// NAAOUI is the 24-bit IEEE company ID placed in the NAA designator
	// (default 0: no registered company ID).
	NAAOUI uint32
	// ReadOnly makes every medium-modifying command fail with DATA PROTECT /
	// WRITE PROTECTED.
	ReadOnly bool
	// MaxTransferBlocks is the MAXIMUM TRANSFER LENGTH in blocks (default
	// 1 MiB worth of blocks).
	MaxTransferBlocks uint32
	// MaxWriteSameBlocks is the MAXIMUM WRITE SAME LENGTH in blocks
	// (default 64 MiB worth of blocks, but at most 65535, the largest
	// count WRITE SAME(10) can carry).
	MaxWriteSameBlocks uint64
	// MaxCompareBlocks is the MAXIMUM COMPARE AND WRITE LENGTH (default
	// 255, the most the CDB can carry; never more than MaxTransferBlocks).
	MaxCompareBlocks uint8
	// MaxUnmapBlocks (default 64 MiB worth of blocks) and
	// MaxUnmapDescriptors (default 256) bound one UNMAP command.
	MaxUnmapBlocks      uint32
	MaxUnmapDescriptors uint32
	// UnmapGranularity is the OPTIMAL UNMAP GRANULARITY in blocks
	// (default one physical block).
	UnmapGranularity uint32
	// OptimalTransferBlock is the OPTIMAL TRANSFER LENGTH in blocks
	// (default 128 KiB worth).
	OptimalTransferBlock uint32
	// PR, when set, is told about every change of persistent reservation
	// state of a disk whose registrations are persistent (APTPL), so that the
	// daemon can store it; see PRStore.
	PR PRStore
	// InitialPR is persistent reservation state restored at start (from
	// what PR stored before).
	InitialPR *PRState
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// casStripes is the number of range-lock stripes that make COMPARE AND
// WRITE, ORWRITE and WRITE ATOMIC atomic with respect to other I/O.
const casStripes = 64

// stripeShift selects the region size that maps to one stripe: 2^20 bytes.
const stripeShift = 20

// Disk is an SBC-3 direct-access block device (a SCSI disk) backed by a
// BlockDevice. It implements LogicalUnit.
type Disk struct {
	dev      BlockDevice
	unmapper Unmapper
	mapper   MappingReporter
	opts     DiskOptions
	log      *slog.Logger

	bs      int  // logical block size
	bsShift uint // log2(bs)
	blocks  atomic.Uint64
	ops     opTable
	ua      *UnitAttentions
	stripes [casStripes]sync.RWMutex
	wce     atomic.Bool // caching mode page WCE
	swp     atomic.Bool // control mode page SWP
	// resActive mirrors reserve6 != nil || pr.holder != nil so that the
	// I/O path skips the reservation check without taking mu.
	resActive atomic.Bool

	mu       sync.Mutex // guards the fields below
	prevent  map[Nexus]bool
	mode     ModePages
	reserve6 *Nexus // SPC-2 RESERVE holder
	pr       prState
}

var _ LogicalUnit = (*Disk)(nil)

// NewDisk returns a disk backed by dev. The device size is rounded down to
// a whole number of blocks.
func NewDisk(dev BlockDevice, opts DiskOptions) (*Disk, error) {
	if dev == nil {
		return nil, errors.New("scsi: NewDisk: nil device")
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = 512
	}
	var shift uint
	switch opts.BlockSize {
	case 512:
		shift = 9
	case 4096:
		shift = 12
	default:
		return nil, fmt.Errorf("scsi: NewDisk: block size %d not supported (512 or 4096)", opts.BlockSize)
	}
	if opts.PhysicalBlockExp > 15 {
		return nil, fmt.Errorf("scsi: NewDisk: physical block exponent %d too large", opts.PhysicalBlockExp)
	}
	if opts.Vendor == "" {
		opts.Vendor = "SLUICE"
	}
	if opts.Product == "" {
		opts.Product = "VOLUME"
	}
	if opts.Revision == "" {
		opts.Revision = "0001"
	}
	if opts.Serial == "" {
		opts.Serial = fmt.Sprintf("%x", opts.ID[:])
	}
	if opts.MaxTransferBlocks == 0 {
		opts.MaxTransferBlocks = uint32(1 << 20 >> shift)
	}
	if opts.MaxWriteSameBlocks == 0 {
		opts.MaxWriteSameBlocks = min(uint64(64<<20)>>shift, 0xffff)
	}
	if opts.MaxCompareBlocks == 0 {
		opts.MaxCompareBlocks = 255
	}
	if opts.MaxUnmapBlocks == 0 {
		opts.MaxUnmapBlocks = uint32(64 << 20 >> shift)
	}
	if opts.MaxUnmapDescriptors == 0 {
		opts.MaxUnmapDescriptors = 256
	}
	if opts.UnmapGranularity == 0 {
		opts.UnmapGranularity = 1 << opts.PhysicalBlockExp
	}
	if opts.OptimalTransferBlock == 0 {
		opts.OptimalTransferBlock = uint32(128 << 10 >> shift)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Disk{
		dev:     dev,
		opts:    opts,
		log:     log,
		bs:      opts.BlockSize,
		bsShift: shift,
		ua:      NewUnitAttentions(),
		prevent: make(map[Nexus]bool),
	}
	d.unmapper, _ = dev.(Unmapper)
	d.mapper, _ = dev.(MappingReporter)
	d.blocks.Store(uint64(dev.Size()) >> shift)
	d.ops = diskOps(d.unmapper != nil)
	d.mode = diskModePages()
	d.syncModeLocked()
	d.pr.init()
	if opts.InitialPR != nil {
		d.pr.restore(opts.InitialPR)
	}
	d.syncResLocked()
	return d, nil
}

// BlockSize returns the logical block size in bytes.
func (d *Disk) BlockSize() int { return d.bs }

// Blocks returns the number of logical blocks.
func (d *Disk) Blocks() uint64 { return d.blocks.Load() }

// Resize updates the capacity to newSize bytes (rounded down to whole
// blocks), after the backing device was grown or shrunk, and establishes a
// CAPACITY DATA HAS CHANGED unit attention for every nexus.
func (d *Disk) Resize(newSize int64) {
	if newSize < 0 {
		newSize = 0
	}
	old := d.blocks.Swap(uint64(newSize) >> d.bsShift)
	if old != uint64(newSize)>>d.bsShift {
		d.ua.EstablishAll(ASCCapacityDataChanged, nil)
		d.log.Info("capacity changed", "old_blocks", old, "new_blocks", uint64(newSize)>>d.bsShift)
	}
}

// Reset implements LogicalUnit: it releases an SPC-2 reservation, clears
// PREVENT ALLOW MEDIUM REMOVAL state and establishes a reset unit attention
// for every nexus, by included (SAM-5: BUS DEVICE RESET FUNCTION OCCURRED
// for a logical unit reset, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
// for a target reset). Persistent reservations survive resets.
func (d *Disk) Reset(kind ResetKind, by Nexus) {
	d.mu.Lock()
	d.reserve6 = nil
	clear(d.prevent)
	d.syncResLocked()
	d.mu.Unlock()
	code := ASCBusDeviceResetOccurred
	if kind != ResetLogicalUnit {
		code = ASCPowerOnResetOccurred
	}
	d.ua.Establish(by, code)
	d.ua.EstablishAll(code, nil)
	d.log.Debug("reset", "kind", int(kind), "by", by.InitiatorPortID())
}

// NexusLost implements LogicalUnit: it drops the nexus' SPC-2 reservation,
// PREVENT state and pending unit attentions. Persistent reservations stay.
func (d *Disk) NexusLost(n Nexus) {
	d.mu.Lock()
	if d.reserve6 != nil && *d.reserve6 == n {
		d.reserve6 = nil
	}
	delete(d.prevent, n)
	d.syncResLocked()
	d.mu.Unlock()
	d.ua.Forget(n)
}

// Execute implements LogicalUnit. The returned data-in count never
// exceeds len(cmd.DataIn): data beyond the initiator's buffer (or beyond
// the allocation length) is not transferred. READ fills cmd.DataIn and WRITE
// passes cmd.DataOut to the device without copying or allocating.
func (d *Disk) Execute(ctx context.Context, cmd *Command) (int, error) {
	c, err := DecodeCDB(cmd.CDB)
	if err != nil {
		if len(cmd.CDB) > 0 && cmd.CDB[0] == 0x03 {
			// REQUEST SENSE is never failed for a pending condition.
			return 0, err
		}
		if ua, ok := d.pendingUA(cmd, 0xff); ok {
			return 0, ua
		}
		return 0, err
	}
	info := d.ops.lookup(c.Opcode, c.ServiceAction)
	if ua, ok := d.pendingUA(cmd, c.Opcode); ok {
		return 0, ua
	}
	if info == nil {
		if d.ops.hasSA(c.Opcode) {
			return 0, ErrInvalidField(1, 4)
		}
		return 0, ErrInvalidOpcode()
	}
	if c.NACA() {
		return 0, ErrInvalidField(len(c.Raw)-1, 2)
	}
	if err := d.checkReservation(cmd.Nexus, info, &c); err != nil {
		return 0, err
	}
	n, err := info.run(d, ctx, cmd, c)
	if err != nil {
		var se *SenseError
		var st StatusError
		if !errors.As(err, &se) && !errors.As(err, &st) {
			d.log.Warn("command failed", "op", fmt.Sprintf("%#02x", c.Opcode), "err", err)
		}
	}
	if n > len(cmd.DataIn) {
		n = len(cmd.DataIn)
	}
	return n, err
}

// pendingUA reports the unit attention to return instead of running a
// command with opcode op: INQUIRY, REPORT LUNS and REQUEST SENSE are
// neither blocked nor clear the condition (REQUEST SENSE reports it itself).
func (d *Disk) pendingUA(cmd *Command, op byte) (*SenseError, bool) {
	switch op {
	case 0x12, 0xa0, 0x03:
		d.ua.Peek(cmd.Nexus) // register the nexus
		return nil, false
	}
	code, ok := d.ua.Next(cmd.Nexus)
	if !ok {
		return nil, false
	}
	return ErrUnitAttention(code), true
}

// stripeMask returns the set of range-lock stripes covering [off, off+n)
// bytes. Reads and ordinary writes hold them shared; COMPARE AND WRITE,
// ORWRITE and WRITE ATOMIC hold them exclusive, so those are atomic with
// respect to every other read and write. Stripes are always taken in
// ascending index order (lockStripes), which rules out deadlocks.
func (d *Disk) stripeMask(off, n int64) uint64 {
	if n <= 0 {
		return 0
	}
	first, last := off>>stripeShift, (off+n-1)>>stripeShift
	if last-first >= casStripes-1 {
		return ^uint64(0)
	}
	var m uint64
	for r := first; r <= last; r++ {
		m |= 1 << (uint64(r) % casStripes)
	}
	return m
}

// lockStripes takes the stripes in m, shared or exclusive.
func (d *Disk) lockStripes(m uint64, excl bool) {
	for i := 0; i < casStripes; i++ {
		if m&(1<<i) == 0 {
			continue
		}
		if excl {
			d.stripes[i].Lock()
		} else {
			d.stripes[i].RLock()
		}
	}
}

// unlockStripes releases what lockStripes took.
func (d *Disk) unlockStripes(m uint64, excl bool) {
	for i := casStripes - 1; i >= 0; i-- {
		if m&(1<<i) == 0 {
			continue
		}
		if excl {
			d.stripes[i].Unlock()
		} else {
			d.stripes[i].RUnlock()
		}
	}
}

// checkRange validates an LBA range against the capacity.
func (d *Disk) checkRange(lba uint64, n uint64) error {
	blocks := d.blocks.Load()
	if lba > blocks || n > blocks-lba {
		return ErrLBAOutOfRange()
	}
	return nil
}

// writable fails with DATA PROTECT when the disk is read-only.
func (d *Disk) writable() error {
	if d.opts.ReadOnly {
		return ErrWriteProtected()
	}
	if d.swp.Load() {
		return ErrWriteProtected()
	}
	return nil
}

// ioErr classifies a BlockDevice error: context cancellation becomes
// ABORTED COMMAND, sense errors pass through, anything else is a medium
// error of the given code.
func ioErr(code ASC, err error) error {
	var se *SenseError
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ErrAborted(ASCNoAdditionalSense, err)
	}
	return ErrMediumError(code, err)
}

// relPort returns the relative target port identifier for n.
func (d *Disk) relPort(n Nexus) uint16 {
	switch {
	case d.opts.RelativePortID != 0:
		return d.opts.RelativePortID
	case n.TPGT != 0:
		return n.TPGT
	}
	return 1
}
