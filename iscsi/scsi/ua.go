package scsi

import "sync"

// maxPendingUA bounds the unit attention conditions queued for one nexus;
// when full, the oldest conditions are kept (SAM-5 allows a logical unit to
// report fewer conditions than occurred).
const maxPendingUA = 8

// UnitAttentions keeps the pending unit attention conditions of one logical
// unit, per I_T nexus (SAM-5 5.14). The first time a nexus is seen it gets
// a POWER ON, RESET, OR BUS DEVICE RESET OCCURRED condition. It is safe for
// concurrent use; the zero value is not usable, call NewUnitAttentions.
type UnitAttentions struct {
	mu      sync.RWMutex
	pending map[Nexus][]ASC
}

// NewUnitAttentions returns an empty unit attention queue.
func NewUnitAttentions() *UnitAttentions {
	return &UnitAttentions{pending: make(map[Nexus][]ASC)}
}

// seenLocked registers n on first sight with a power-on condition.
func (u *UnitAttentions) seenLocked(n Nexus) []ASC {
	q, ok := u.pending[n]
	if !ok {
		q = append(make([]ASC, 0, maxPendingUA), ASCPowerOnResetOccurred)
		u.pending[n] = q
	}
	return q
}

// Peek reports the oldest pending condition for n without clearing it.
func (u *UnitAttentions) Peek(n Nexus) (ASC, bool) {
	u.mu.RLock()
	q, ok := u.pending[n]
	u.mu.RUnlock()
	if ok && len(q) == 0 {
		return 0, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	q = u.seenLocked(n)
	if len(q) == 0 {
		return 0, false
	}
	return q[0], true
}

// Next removes and returns the oldest pending condition for n.
func (u *UnitAttentions) Next(n Nexus) (ASC, bool) {
	// Fast path for the common case, a known nexus with nothing pending:
	// only a shared lock.
	u.mu.RLock()
	q, ok := u.pending[n]
	u.mu.RUnlock()
	if ok && len(q) == 0 {
		return 0, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	q = u.seenLocked(n)
	if len(q) == 0 {
		return 0, false
	}
	c := q[0]
	copy(q, q[1:])
	u.pending[n] = q[:len(q)-1]
	return c, true
}

// Pending reports whether n has a pending condition. A nexus seen for the
// first time has one (power on).
func (u *UnitAttentions) Pending(n Nexus) bool {
	_, ok := u.Peek(n)
	return ok
}

func (u *UnitAttentions) addLocked(n Nexus, code ASC) {
	q := u.pending[n]
	for _, c := range q {
		if c == code {
			return
		}
	}
	if len(q) >= maxPendingUA {
		return
	}
	u.pending[n] = append(q, code)
}

// Establish queues code for n. A nexus not seen before gets the power-on
// condition first.
func (u *UnitAttentions) Establish(n Nexus, code ASC) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seenLocked(n)
	u.addLocked(n, code)
}

// EstablishAll queues code for every known nexus except the ones for which
// skip returns true (skip may be nil).
func (u *UnitAttentions) EstablishAll(code ASC, skip func(Nexus) bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for n := range u.pending {
		if skip != nil && skip(n) {
			continue
		}
		u.addLocked(n, code)
	}
}

// Forget drops n and its pending conditions; the next command from n is
// treated as coming from a new nexus.
func (u *UnitAttentions) Forget(n Nexus) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.pending, n)
}
