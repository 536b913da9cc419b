package vtl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// changerIdentity returns the INQUIRY vendor, product and revision of a
// changer model.
func changerIdentity(model string) ([3]string, bool) {
	switch model {
	case ModelAWS:
		return [3]string{"AWS", "Gateway-VTL", "0100"}, true
	case ModelSTK:
		return [3]string{"STK", "L700", "0105"}, true
	case ModelIBM:
		return [3]string{"IBM", "03584L32", "0402"}, true
	}
	return [3]string{}, false
}

// Changer is the SMC-3 media changer of a Library. It implements
// scsi.LogicalUnit.
type Changer struct {
	lib    *Library
	id     [3]string
	serial string
	log    *slog.Logger
	ua     *scsi.UnitAttentions
	mode   scsi.ModePages
}

var _ scsi.LogicalUnit = (*Changer)(nil)

func newChanger(l *Library) *Changer {
	id, _ := changerIdentity(l.cfg.ChangerModel)
	c := &Changer{lib: l, id: id, serial: l.serialBase() + "00", log: l.log.With("device", "changer"), ua: scsi.NewUnitAttentions()}
	c.mode = c.modePages()
	return c
}

// Serial returns the changer's serial number.
func (c *Changer) Serial() string { return c.serial }

// Reset implements scsi.LogicalUnit.
func (c *Changer) Reset(kind scsi.ResetKind, by scsi.Nexus) {
	code := scsi.ASCBusDeviceResetOccurred
	if kind != scsi.ResetLogicalUnit {
		code = scsi.ASCPowerOnResetOccurred
	}
	c.ua.EstablishAll(code, func(n scsi.Nexus) bool { return n == by })
}

// NexusLost implements scsi.LogicalUnit.
func (c *Changer) NexusLost(n scsi.Nexus) { c.ua.Forget(n) }

func (c *Changer) modePages() scsi.ModePages {
	cfg := &c.lib.cfg
	ea := make([]byte, 18)
	binary.BigEndian.PutUint16(ea[0:], addrTransport)
	binary.BigEndian.PutUint16(ea[2:], 1)
	binary.BigEndian.PutUint16(ea[4:], addrSlot)
	binary.BigEndian.PutUint16(ea[6:], uint16(cfg.Slots))
	binary.BigEndian.PutUint16(ea[8:], addrIE)
	binary.BigEndian.PutUint16(ea[10:], uint16(cfg.IESlots))
	binary.BigEndian.PutUint16(ea[12:], addrDrive)
	binary.BigEndian.PutUint16(ea[14:], uint16(cfg.Drives))
	geo := make([]byte, 2)
	caps := make([]byte, 18)
	caps[0] = 0x0e // StorDT StorI/E StorST
	// Moves from MT, ST, I/E and DT to ST, I/E and DT.
	caps[2], caps[3], caps[4], caps[5] = 0x0e, 0x0e, 0x0e, 0x0e
	zero := func(n int) []byte { return make([]byte, n) }
	pg := func(code byte, b []byte) scsi.ModePage {
		return scsi.ModePage{Page: code, Current: b, Default: append([]byte(nil), b...), Changeable: zero(len(b))}
	}
	return scsi.ModePages{pg(0x1d, ea), pg(0x1e, geo), pg(0x1f, caps)}
}

// Execute implements scsi.LogicalUnit.
func (c *Changer) Execute(ctx context.Context, cmd *scsi.Command) (int, error) {
	cdb, err := scsi.DecodeCDB(cmd.CDB)
	if err != nil {
		return 0, err
	}
	switch cdb.Opcode {
	case 0x12, 0xa0, 0x03:
		c.ua.Peek(cmd.Nexus)
	default:
		if code, ok := c.ua.Next(cmd.Nexus); ok {
			return 0, scsi.ErrUnitAttention(code)
		}
	}
	if cdb.NACA() {
		return 0, scsi.ErrInvalidField(len(cdb.Raw)-1, 2)
	}
	var n int
	switch cdb.Opcode {
	case 0x00, 0x07, 0x16, 0x17, 0x56, 0x57: // TUR, INITIALIZE ELEMENT STATUS, RESERVE/RELEASE
		if cdb.Opcode == 0x00 || cdb.Opcode == 0x07 {
			err = c.checkOpen()
		}
	case 0x03:
		n, err = scsi.RequestSense(c.ua, cmd, &cdb)
	case 0x12:
		q := scsi.Inquiry{
			DeviceType: scsi.TypeMediumChanger, Removable: true, Version: 6, HiSup: true,
			Vendor: c.id[0], Product: c.id[1], Revision: c.id[2],
			Versions: []uint16{scsi.VersionSAM5, scsi.VersionISCSI, scsi.VersionSPC4, scsi.VersionSMC3},
		}
		n, err = inquiry(cmd, &cdb, &q, c.serial)
	case 0x1a, 0x5a:
		n, err = c.modeSense(cmd, &cdb)
	case 0x15, 0x55:
		err = c.modeSelect(cmd, &cdb)
	case 0x1e:
		if cdb.Raw[4]&0x03 > 1 {
			err = scsi.ErrInvalidField(4, 1)
		}
	case 0x2b: // POSITION TO ELEMENT
		err = c.checkElements(cdb.Uint16(2), cdb.Uint16(4))
	case 0x37: // INITIALIZE ELEMENT STATUS WITH RANGE
		if cdb.Raw[1]&0x01 != 0 {
			err = c.checkElements(cdb.Uint16(2))
		}
	case 0x4d:
		n, err = c.logSense(cmd, &cdb)
	case 0xa0:
		n, err = reportLUNs(cmd, &cdb)
	case 0xa3:
		if cdb.ServiceAction != 0x0c {
			return 0, scsi.ErrInvalidField(1, 4)
		}
		n, err = scsi.ReportSupportedOpcodes(cmd, &cdb, changerCommands())
	case 0xa5:
		err = c.moveMedium(ctx, &cdb)
	case 0xa6:
		err = c.exchangeMedium(ctx, &cdb)
	case 0xb8:
		n, err = c.readElementStatus(cmd, &cdb)
	default:
		return 0, scsi.ErrInvalidOpcode()
	}
	if err != nil {
		var se *scsi.SenseError
		if !errors.As(err, &se) {
			c.log.Warn("command failed", "op", fmt.Sprintf("%#02x", cdb.Opcode), "err", err)
			err = scsi.ErrHardware(err)
		}
	}
	return min(n, len(cmd.DataIn)), err
}

func changerCommands() []scsi.CommandInfo {
	var out []scsi.CommandInfo
	for _, o := range []byte{0x00, 0x03, 0x07, 0x12, 0x15, 0x16, 0x17, 0x1a, 0x1e, 0x2b, 0x37, 0x4d, 0x55, 0x56, 0x57, 0x5a, 0xa0} {
		out = append(out, scsi.CommandInfo{Opcode: o, Flags: 0xff})
	}
	out = append(out, scsi.CommandInfo{Opcode: 0xa3, ServiceAction: 0x0c, HasServiceAction: true})
	for _, o := range []byte{0xa5, 0xa6, 0xb8} {
		out = append(out, scsi.CommandInfo{Opcode: o, Flags: 0xff, Timeout: 600})
	}
	return out
}

func (c *Changer) checkOpen() error {
	c.lib.mu.Lock()
	defer c.lib.mu.Unlock()
	if c.lib.closed {
		return scsi.ErrNotReady(scsi.ASCNotReadyCauseNotReportable)
	}
	return nil
}

// checkElements fails with INVALID ELEMENT ADDRESS unless every address
// names an element (0 is accepted for the default transport).
func (c *Changer) checkElements(addrs ...uint16) error {
	for i, a := range addrs {
		if a == 0 && i == 0 {
			continue
		}
		if k, _ := c.lib.elementKind(a); k == elemNone {
			return errInvalidElement()
		}
	}
	return nil
}

func (c *Changer) modeSense(cmd *scsi.Command, cdb *scsi.CDB) (int, error) {
	ten := cdb.Opcode == 0x5a
	c.lib.mu.Lock()
	out, err := scsi.ModeSense(cdb, ten, scsi.ModeSenseHeader{NoDescriptor: true}, c.mode)
	c.lib.mu.Unlock()
	if err != nil {
		return 0, err
	}
	alloc := int(cdb.Raw[4])
	if ten {
		alloc = int(cdb.Uint16(7))
	}
	return scsi.Respond(cmd, out, alloc), nil
}

func (c *Changer) modeSelect(cmd *scsi.Command, cdb *scsi.CDB) error {
	ten := cdb.Opcode == 0x55
	plen := int(cdb.Raw[4])
	if ten {
		plen = int(cdb.Uint16(7))
	}
	if plen == 0 {
		return nil
	}
	if len(cmd.DataOut) < plen {
		return scsi.ErrParamListLength()
	}
	_, off, err := scsi.ModeSelectParams(cmd.DataOut[:plen], ten)
	if err != nil {
		return err
	}
	c.lib.mu.Lock()
	defer c.lib.mu.Unlock()
	_, err = c.mode.Select(cmd.DataOut[off:plen], off)
	return err
}

func (c *Changer) logSense(cmd *scsi.Command, cdb *scsi.CDB) (int, error) {
	alloc := int(cdb.Uint16(7))
	switch cdb.Raw[2] & 0x3f {
	case 0x00:
		return scsi.Respond(cmd, []byte{0, 0, 0, 2, 0x00, 0x2e}, alloc), nil
	case 0x2e:
		out := []byte{0x2e, 0, 0, 0}
		for code := uint16(1); code <= 0x40; code++ {
			out = logParam(out, code, 1, 0)
		}
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)-4))
		return scsi.Respond(cmd, out, alloc), nil
	}
	return 0, scsi.ErrInvalidField(2, 5)
}

// moveMedium serves MOVE MEDIUM: moving a tape into a drive loads it;
// moving it out of a drive unloads it (committing what was written).
func (c *Changer) moveMedium(ctx context.Context, cdb *scsi.CDB) error {
	if cdb.Raw[10]&0x01 != 0 { // INVERT
		return scsi.ErrInvalidField(10, 0)
	}
	mt, src, dst := cdb.Uint16(2), cdb.Uint16(4), cdb.Uint16(6)
	if err := c.checkElements(mt, src, dst); err != nil {
		return err
	}
	l := c.lib
	ejected, err := func() (string, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return "", scsi.ErrNotReady(scsi.ASCNotReadyCauseNotReportable)
		}
		if err := l.moveLocked(ctx, src, dst); err != nil {
			return "", err
		}
		if err := l.autoCreateLocked(ctx); err != nil {
			l.log.Warn("automatic tape creation failed", "err", err)
		}
		if err := l.saveLocked(ctx); err != nil {
			return "", scsi.ErrHardware(err)
		}
		if k, _ := l.elementKind(dst); k == elemIE && src != dst {
			return l.occupantsLocked()[dst].Barcode, nil
		}
		return "", nil
	}()
	if err == nil && ejected != "" && l.cfg.OnEject != nil {
		l.cfg.OnEject(ejected)
	}
	return err
}

// moveLocked moves the tape at src to dst.
func (l *Library) moveLocked(ctx context.Context, src, dst uint16) error {
	sk, si := l.elementKind(src)
	dk, di := l.elementKind(dst)
	if sk == elemTransport || dk == elemTransport {
		return errInvalidElement()
	}
	occ := l.occupantsLocked()
	t := occ[src]
	if t == nil {
		return scsi.NewSense(scsi.SenseIllegalRequest, ascSourceEmpty)
	}
	if src == dst {
		return nil
	}
	if occ[dst] != nil {
		return scsi.NewSense(scsi.SenseIllegalRequest, ascDestinationFull)
	}
	if sk == elemDrive {
		if _, err := l.drives[si].remove(ctx); err != nil {
			return err
		}
		l.mergeUsageLocked()
	}
	if dk == elemDrive {
		if err := l.drives[di].insert(ctx, l.cartridge(t)); err != nil {
			t.Element = src
			if sk == elemDrive { // put it back where it was
				_ = l.drives[si].insert(ctx, l.cartridge(t))
			}
			return err
		}
	}
	if dk == elemDrive && sk != elemDrive {
		t.Source = src
	}
	t.Element = dst
	return nil
}

// exchangeMedium serves EXCHANGE MEDIUM: source to first destination,
// first destination's tape to the second destination.
func (c *Changer) exchangeMedium(ctx context.Context, cdb *scsi.CDB) error {
	if cdb.Raw[10]&0x03 != 0 {
		return scsi.ErrInvalidField(10, 0)
	}
	src, d1, d2 := cdb.Uint16(4), cdb.Uint16(6), cdb.Uint16(8)
	if err := c.checkElements(cdb.Uint16(2), src, d1, d2); err != nil {
		return err
	}
	l := c.lib
	l.mu.Lock()
	defer l.mu.Unlock()
	occ := l.occupantsLocked()
	if occ[src] == nil || occ[d1] == nil {
		return scsi.NewSense(scsi.SenseIllegalRequest, ascSourceEmpty)
	}
	if d2 != src && occ[d2] != nil {
		return scsi.NewSense(scsi.SenseIllegalRequest, ascDestinationFull)
	}
	// Park the first destination's tape in the second destination (or in
	// a free slot when it is the source), then move.
	park := d2
	if d2 == src {
		a, ok := l.freeLocked(elemSlot)
		if !ok {
			return scsi.NewSense(scsi.SenseIllegalRequest, ascDestinationFull)
		}
		park = a
	}
	if err := l.moveLocked(ctx, d1, park); err != nil {
		return err
	}
	if err := l.moveLocked(ctx, src, d1); err != nil {
		return err
	}
	if park != d2 {
		if err := l.moveLocked(ctx, park, d2); err != nil {
			return err
		}
	}
	if err := l.saveLocked(ctx); err != nil {
		return scsi.ErrHardware(err)
	}
	return nil
}
