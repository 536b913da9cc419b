package iscsi

import "sync/atomic"

// cmdWindow is a session's command window: ExpCmdSN and MaxCmdSN packed in
// one word so they always change together. A non-immediate command moves
// ExpCmdSN on when it arrives; MaxCmdSN moves on when a command completes,
// so at most depth commands are ever outstanding.
type cmdWindow struct {
	v atomic.Uint64
}

func pack(exp, maxSN uint32) uint64 { return uint64(exp)<<32 | uint64(maxSN) }

// init opens the window at exp with room for depth commands.
func (w *cmdWindow) init(exp uint32, depth int) {
	w.v.Store(pack(exp, exp+uint32(depth)-1))
}

// get returns ExpCmdSN and MaxCmdSN.
func (w *cmdWindow) get() (exp, maxSN uint32) {
	v := w.v.Load()
	return uint32(v >> 32), uint32(v)
}

// serialLE reports a <= b in RFC 1982 serial number arithmetic.
func serialLE(a, b uint32) bool { return int32(b-a) >= 0 }

// accept checks the CmdSN of a non-immediate command. A command outside
// [ExpCmdSN, MaxCmdSN] is refused (the caller drops it silently, RFC 7143
// section 4.2.2.1). CmdSNs skipped over by a command inside the window are
// treated as used and their slots given back, since with one connection per
// session they can never arrive.
func (w *cmdWindow) accept(sn uint32) bool {
	for {
		old := w.v.Load()
		exp, maxSN := uint32(old>>32), uint32(old)
		if !serialLE(exp, sn) || !serialLE(sn, maxSN) {
			return false
		}
		skipped := sn - exp
		if w.v.CompareAndSwap(old, pack(sn+1, maxSN+skipped)) {
			return true
		}
	}
}

// complete gives back the slot of a finished non-immediate command.
func (w *cmdWindow) complete() {
	for {
		old := w.v.Load()
		exp, maxSN := uint32(old>>32), uint32(old)
		if w.v.CompareAndSwap(old, pack(exp, maxSN+1)) {
			return
		}
	}
}
