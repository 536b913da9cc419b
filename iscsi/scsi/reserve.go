package scsi

import "context"

// checkReservation applies the reservation conflict rules to a command
// from n: an SPC-2 RESERVE held by another nexus blocks everything but a
// few commands (SPC-2 5.5.1), and a persistent reservation blocks according
// to its type and the command's access class (SPC-4 5.12.1).
func (d *Disk) checkReservation(n Nexus, o *opInfo, c *CDB) error {
	if !d.resActive.Load() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reserve6 != nil && *d.reserve6 != n && !o.spc2OK {
		return ErrReservationConflict
	}
	if d.pr.holder == nil {
		return nil
	}
	acc := o.acc
	switch c.Opcode {
	case 0x1b: // START STOP UNIT: allowed when starting with no power condition
		if c.Raw[4]&0x01 != 0 && c.Raw[4]&0xf0 == 0 {
			acc = accAllowed
		}
	case 0x1e: // PREVENT ALLOW MEDIUM REMOVAL: allowed when allowing
		if c.Raw[4]&0x03 == 0 {
			acc = accAllowed
		}
	}
	if d.pr.conflicts(n, acc) {
		return ErrReservationConflict
	}
	return nil
}

// opReserve serves RESERVE(6) and RESERVE(10): an SPC-2 reservation of the
// whole logical unit for the nexus. It conflicts with persistent
// reservations and registrations.
func opReserve(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	if c.Opcode == 0x56 && c.Raw[1]&0x12 != 0 { // 3RDPTY, LONGID
		return 0, ErrInvalidField(1, 4)
	}
	if c.Opcode == 0x16 && c.Raw[1]&0x01 != 0 { // extent reservations
		return 0, ErrInvalidField(1, 0)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.syncResLocked()
	if d.pr.holder != nil || len(d.pr.regs) > 0 {
		return 0, ErrReservationConflict
	}
	if d.reserve6 != nil && *d.reserve6 != cmd.Nexus {
		return 0, ErrReservationConflict
	}
	n := cmd.Nexus
	d.reserve6 = &n
	return 0, nil
}

// opRelease serves RELEASE(6) and RELEASE(10). Releasing a reservation held
// by another nexus, or none, succeeds without effect.
func opRelease(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	if c.Opcode == 0x57 && c.Raw[1]&0x12 != 0 {
		return 0, ErrInvalidField(1, 4)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.syncResLocked()
	if d.pr.holder != nil || len(d.pr.regs) > 0 {
		return 0, ErrReservationConflict
	}
	if d.reserve6 != nil && *d.reserve6 == cmd.Nexus {
		d.reserve6 = nil
	}
	return 0, nil
}

// syncResLocked refreshes resActive; d.mu must be held.
func (d *Disk) syncResLocked() {
	d.resActive.Store(d.reserve6 != nil || d.pr.holder != nil)
}
