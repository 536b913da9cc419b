package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
)

// Persistent reservation types (SPC-4 table 169).
const (
	PRWriteExclusive         byte = 0x1
	PRExclusiveAccess        byte = 0x3
	PRWriteExclusiveRegOnly  byte = 0x5
	PRExclusiveAccessRegOnly byte = 0x6
	PRWriteExclusiveAllReg   byte = 0x7
	PRExclusiveAccessAllReg  byte = 0x8
)

// PERSISTENT RESERVE OUT service actions.
const (
	prOutRegister            = 0x00
	prOutReserve             = 0x01
	prOutRelease             = 0x02
	prOutClear               = 0x03
	prOutPreempt             = 0x04
	prOutPreemptAbort        = 0x05
	prOutRegisterIgnore      = 0x06
	prOutRegisterMove        = 0x07
	prOutReplaceLost         = 0x08
	prOutParamListLength     = 24
	asrInvalidRelease    ASC = 0x2604 // INVALID RELEASE OF PERSISTENT RESERVATION
)

// PRRegistration is one registered I_T nexus in a PRState.
type PRRegistration struct {
	Key           uint64
	InitiatorName string
	ISID          [6]byte
	TargetName    string
	TPGT          uint16
	// AllTargetPorts records a registration made with ALL_TG_PT: it
	// applies to the initiator port through every target port.
	AllTargetPorts bool
}

// PRState is a snapshot of the persistent reservation state of a disk, as
// handed to PRStore and accepted back in DiskOptions.InitialPR.
type PRState struct {
	Generation    uint32
	APTPL         bool
	Registrations []PRRegistration
	// Reserved tells whether a reservation exists; Holder indexes the
	// registration holding it (for the all-registrants types, the one that
	// made it) and Type is its type.
	Reserved bool
	Holder   int
	Type     byte
}

// PRStore persists the persistent reservation state of a disk whose
// registrations were made with APTPL (activate persist through power
// loss). SavePR is called with the lock of the disk held after every change
// while APTPL is set, and once with APTPL false when it is cleared; it
// should be quick. An error fails the PERSISTENT RESERVE OUT command with a
// hardware error (the in-memory state has changed nevertheless).
type PRStore interface {
	SavePR(s PRState) error
}

type registration struct {
	key     uint64
	nexus   Nexus
	allTgPt bool
}

func (r *registration) matches(n Nexus) bool {
	if r.allTgPt {
		return r.nexus.InitiatorName == n.InitiatorName && r.nexus.ISID == n.ISID
	}
	return r.nexus == n
}

// prState is the persistent reservation state of a Disk, guarded by
// Disk.mu.
type prState struct {
	generation uint32
	aptpl      bool
	regs       []*registration
	holder     *registration // nil: not reserved
	typ        byte
}

func (p *prState) init() {}

func (p *prState) restore(s *PRState) {
	p.generation, p.aptpl = s.Generation, s.APTPL
	for _, r := range s.Registrations {
		p.regs = append(p.regs, &registration{
			key:     r.Key,
			nexus:   Nexus{InitiatorName: r.InitiatorName, ISID: r.ISID, TargetName: r.TargetName, TPGT: r.TPGT},
			allTgPt: r.AllTargetPorts,
		})
	}
	if s.Reserved && s.Holder >= 0 && s.Holder < len(p.regs) && validPRType(s.Type) {
		p.holder, p.typ = p.regs[s.Holder], s.Type
	}
}

func (p *prState) snapshot() PRState {
	s := PRState{Generation: p.generation, APTPL: p.aptpl, Holder: -1}
	for i, r := range p.regs {
		s.Registrations = append(s.Registrations, PRRegistration{
			Key: r.key, InitiatorName: r.nexus.InitiatorName, ISID: r.nexus.ISID,
			TargetName: r.nexus.TargetName, TPGT: r.nexus.TPGT, AllTargetPorts: r.allTgPt,
		})
		if r == p.holder {
			s.Reserved, s.Holder, s.Type = true, i, p.typ
		}
	}
	return s
}

func validPRType(t byte) bool {
	switch t {
	case PRWriteExclusive, PRExclusiveAccess, PRWriteExclusiveRegOnly,
		PRExclusiveAccessRegOnly, PRWriteExclusiveAllReg, PRExclusiveAccessAllReg:
		return true
	}
	return false
}

func allRegistrants(t byte) bool {
	return t == PRWriteExclusiveAllReg || t == PRExclusiveAccessAllReg
}

func (p *prState) find(n Nexus) *registration {
	for _, r := range p.regs {
		if r.matches(n) {
			return r
		}
	}
	return nil
}

// isHolder reports whether n holds the reservation.
func (p *prState) isHolder(n Nexus) bool {
	if p.holder == nil {
		return false
	}
	if allRegistrants(p.typ) {
		return p.find(n) != nil
	}
	return p.holder.matches(n)
}

// remove drops r; it releases a reservation r held (for the all-registrants
// types, when r was the last registrant). It reports whether a
// registrants-only reservation was released that way.
func (p *prState) remove(r *registration) (releasedRO bool) {
	for i, x := range p.regs {
		if x == r {
			p.regs = append(p.regs[:i], p.regs[i+1:]...)
			break
		}
	}
	if p.holder == nil {
		return false
	}
	if allRegistrants(p.typ) {
		if len(p.regs) == 0 {
			p.holder = nil
		} else if p.holder == r {
			p.holder = p.regs[0]
		}
		return false
	}
	if p.holder == r {
		p.holder = nil
		return p.typ == PRWriteExclusiveRegOnly || p.typ == PRExclusiveAccessRegOnly
	}
	return false
}

// conflicts reports whether a command of class acc from n conflicts with
// the persistent reservation.
func (p *prState) conflicts(n Nexus, acc access) bool {
	if p.holder == nil || acc == accAllowed || acc == accPR || p.isHolder(n) {
		return false
	}
	switch p.typ {
	case PRWriteExclusive:
		return acc == accWrite
	case PRExclusiveAccess:
		return true
	case PRWriteExclusiveRegOnly, PRWriteExclusiveAllReg:
		return acc == accWrite && p.find(n) == nil
	case PRExclusiveAccessRegOnly, PRExclusiveAccessAllReg:
		return p.find(n) == nil
	}
	return false
}

// uaRegistrants establishes code for the nexuses of the given registrations.
func (d *Disk) uaRegistrants(regs []*registration, code ASC) {
	for _, r := range regs {
		if r.allTgPt {
			r := r
			d.ua.EstablishAll(code, func(n Nexus) bool { return !r.matches(n) })
			continue
		}
		d.ua.Establish(r.nexus, code)
	}
}

// opPRIn serves PERSISTENT RESERVE IN (SPC-4 6.13).
func opPRIn(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	alloc := int(c.Uint16(7))
	d.mu.Lock()
	defer d.mu.Unlock()
	p := &d.pr
	var out []byte
	switch c.ServiceAction {
	case 0x00: // READ KEYS
		out = make([]byte, 8, 8+8*len(p.regs))
		binary.BigEndian.PutUint32(out[0:], p.generation)
		for _, r := range p.regs {
			out = binary.BigEndian.AppendUint64(out, r.key)
		}
		binary.BigEndian.PutUint32(out[4:], uint32(len(out)-8))
	case 0x01: // READ RESERVATION
		out = make([]byte, 8, 24)
		binary.BigEndian.PutUint32(out[0:], p.generation)
		if p.holder != nil {
			var desc [16]byte
			if !allRegistrants(p.typ) {
				binary.BigEndian.PutUint64(desc[0:], p.holder.key)
			}
			desc[13] = p.typ
			out = append(out, desc[:]...)
			binary.BigEndian.PutUint32(out[4:], 16)
		}
	case 0x02: // REPORT CAPABILITIES
		out = make([]byte, 8)
		binary.BigEndian.PutUint16(out[0:], 8)
		out[2] = 0x10 | 0x04 | 0x01 // CRH, ATP_C, PTPL_C
		out[3] = 0x80 | 0x10        // TMV, ALLOW COMMANDS 001b
		if p.aptpl {
			out[3] |= 0x01 // PTPL_A
		}
		out[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02 // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
		out[5] = 0x01                             // EX_AC_AR
	case 0x03: // READ FULL STATUS
		out = make([]byte, 8, 8+64*len(p.regs))
		binary.BigEndian.PutUint32(out[0:], p.generation)
		for _, r := range p.regs {
			tid := transportID(r)
			var desc [24]byte
			binary.BigEndian.PutUint64(desc[0:], r.key)
			if r.allTgPt {
				desc[12] |= 0x02
			}
			if p.isHolder(r.nexus) && (allRegistrants(p.typ) || p.holder == r) {
				desc[12] |= 0x01
				desc[13] = p.typ
			}
			binary.BigEndian.PutUint16(desc[18:], d.relPort(r.nexus))
			binary.BigEndian.PutUint32(desc[20:], uint32(len(tid)))
			out = append(out, desc[:]...)
			out = append(out, tid...)
		}
		binary.BigEndian.PutUint32(out[4:], uint32(len(out)-8))
	default:
		return 0, ErrInvalidField(1, 4)
	}
	return Respond(cmd, out, alloc), nil
}

// transportID builds the iSCSI TransportID (SPC-4 7.6.4.6, format 01b:
// initiator port name with ISID) of a registration.
func transportID(r *registration) []byte {
	name := r.nexus.InitiatorPortID()
	n := len(name) + 1
	n = (n + 3) &^ 3
	if n < 20 {
		n = 20
	}
	b := make([]byte, 4+n)
	b[0] = 0x40 | ProtocolISCSI
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[4:], name)
	return b
}

// opPROut serves PERSISTENT RESERVE OUT (SPC-4 6.14, 5.12).
func opPROut(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	sa := byte(c.ServiceAction)
	scope, typ := c.Raw[2]>>4, c.Raw[2]&0x0f
	plen := int(c.Uint32(5))
	switch sa {
	case prOutRegisterMove, prOutReplaceLost:
		return 0, ErrInvalidField(1, 4).Wrap(fmt.Errorf("PERSISTENT RESERVE OUT service action %#x not supported", sa))
	case prOutRegister, prOutReserve, prOutRelease, prOutClear, prOutPreempt, prOutPreemptAbort, prOutRegisterIgnore:
	default:
		return 0, ErrInvalidField(1, 4)
	}
	if plen != prOutParamListLength || len(cmd.DataOut) < plen {
		return 0, ErrParamListLength()
	}
	param := cmd.DataOut[:plen]
	key := binary.BigEndian.Uint64(param[0:])
	saKey := binary.BigEndian.Uint64(param[8:])
	specIPT, allTgPt, aptpl := param[20]&0x08 != 0, param[20]&0x04 != 0, param[20]&0x01 != 0
	if specIPT {
		return 0, ErrInvalidParam(20, 3)
	}
	switch sa {
	case prOutReserve, prOutRelease, prOutPreempt, prOutPreemptAbort:
		if scope != 0 {
			return 0, ErrInvalidField(2, 7)
		}
		if !validPRType(typ) {
			return 0, ErrInvalidField(2, 3)
		}
	}
	if allTgPt && sa != prOutRegister && sa != prOutRegisterIgnore {
		return 0, ErrInvalidParam(20, 2)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.syncResLocked()
	p := &d.pr
	me := p.find(cmd.Nexus)
	switch {
	case sa == prOutRegisterIgnore:
	case sa == prOutRegister && me == nil:
		if key != 0 {
			return 0, ErrReservationConflict
		}
	case me == nil || me.key != key:
		return 0, ErrReservationConflict
	}
	wasAPTPL := p.aptpl
	var err error
	switch sa {
	case prOutRegister, prOutRegisterIgnore:
		err = d.prRegister(cmd.Nexus, me, saKey, allTgPt, aptpl)
	case prOutReserve:
		err = d.prReserve(me, typ)
	case prOutRelease:
		err = d.prRelease(cmd.Nexus, me, typ)
	case prOutClear:
		others := make([]*registration, 0, len(p.regs))
		for _, r := range p.regs {
			if r != me {
				others = append(others, r)
			}
		}
		p.regs, p.holder = nil, nil
		p.generation++
		d.uaRegistrants(others, ASCReservationsPreempted)
	case prOutPreempt, prOutPreemptAbort:
		err = d.prPreempt(me, saKey, typ)
	}
	if err != nil {
		return 0, err
	}
	if (p.aptpl || wasAPTPL) && d.opts.PR != nil {
		if err := d.opts.PR.SavePR(p.snapshot()); err != nil {
			return 0, ErrHardware(fmt.Errorf("save persistent reservations: %w", err))
		}
	}
	return 0, nil
}

func (d *Disk) prRegister(n Nexus, me *registration, saKey uint64, allTgPt, aptpl bool) error {
	p := &d.pr
	switch {
	case me == nil && saKey == 0:
		return nil
	case me == nil:
		p.regs = append(p.regs, &registration{key: saKey, nexus: n, allTgPt: allTgPt})
	case saKey == 0:
		others := p.regsExcept(me)
		if p.remove(me) {
			d.uaRegistrants(others, ASCReservationsReleased)
		}
	default:
		me.key = saKey
	}
	p.aptpl = aptpl
	p.generation++
	return nil
}

func (p *prState) regsExcept(me *registration) []*registration {
	var out []*registration
	for _, r := range p.regs {
		if r != me {
			out = append(out, r)
		}
	}
	return out
}

func (d *Disk) prReserve(me *registration, typ byte) error {
	p := &d.pr
	if p.holder == nil {
		p.holder, p.typ = me, typ
		return nil
	}
	if p.isHolder(me.nexus) && p.typ == typ {
		return nil
	}
	return ErrReservationConflict
}

func (d *Disk) prRelease(n Nexus, me *registration, typ byte) error {
	p := &d.pr
	if p.holder == nil || !p.isHolder(n) {
		return nil
	}
	if p.typ != typ {
		return NewSense(SenseIllegalRequest, ASCInvalidRelease)
	}
	old := p.typ
	p.holder = nil
	if old != PRWriteExclusive && old != PRExclusiveAccess {
		d.uaRegistrants(p.regsExcept(me), ASCReservationsReleased)
	}
	return nil
}

func (d *Disk) prPreempt(me *registration, saKey uint64, typ byte) error {
	p := &d.pr
	removeKey := func(keep *registration) []*registration {
		var removed []*registration
		for _, r := range append([]*registration(nil), p.regs...) {
			if r.key == saKey && r != keep {
				removed = append(removed, r)
				p.remove(r)
			}
		}
		return removed
	}
	var removed []*registration
	switch {
	case p.holder == nil:
		if saKey == 0 {
			return ErrInvalidParam(8, -1)
		}
		removed = removeKey(nil)
		if len(removed) == 0 {
			return ErrReservationConflict
		}
	case allRegistrants(p.typ):
		if saKey == 0 {
			removed = p.regsExcept(me)
			p.regs = []*registration{me}
			p.holder, p.typ = me, typ
		} else {
			removed = removeKey(nil)
			if len(removed) == 0 {
				return ErrReservationConflict
			}
		}
	case saKey == p.holder.key:
		removed = removeKey(me)
		p.holder, p.typ = me, typ
	case saKey == 0:
		return ErrInvalidParam(8, -1)
	default:
		removed = removeKey(nil)
		if len(removed) == 0 {
			return ErrReservationConflict
		}
	}
	p.generation++
	d.uaRegistrants(removed, ASCRegistrationsPreempted)
	return nil
}

// PR returns a snapshot of the persistent reservation state.
func (d *Disk) PR() PRState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pr.snapshot()
}
