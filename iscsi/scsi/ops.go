package scsi

import (
	"context"
	"sort"
)

// opHandler runs one command on a Disk.
type opHandler func(d *Disk, ctx context.Context, cmd *Command, c CDB) (int, error)

// access classifies a command for the persistent reservation conflict
// rules (SPC-4 table 42, SBC-3 table 13).
type access uint8

const (
	// accAllowed: allowed under every reservation type.
	accAllowed access = iota
	// accRead: allowed under Write Exclusive types, conflicts under
	// Exclusive Access types (reads, VERIFY, PRE-FETCH, ...).
	accRead
	// accWrite: conflicts under every type (writes, MODE SELECT, ...).
	accWrite
	// accPR: PERSISTENT RESERVE IN/OUT, which check keys themselves.
	accPR
)

// opInfo describes one supported command.
type opInfo struct {
	op    byte
	sa    uint16
	hasSA bool
	// cdbLen, flags and timeout become the CommandInfo fields of the same
	// names.
	cdbLen int
	flags  byte
	run    opHandler
	acc    access
	// spc2OK marks commands another nexus may run while a RESERVE(6)
	// reservation is held (SPC-2 5.5.1).
	spc2OK  bool
	timeout uint32
}

// CommandInfo describes one supported command to REPORT SUPPORTED
// OPERATION CODES (see ReportSupportedOpcodes).
type CommandInfo struct {
	Opcode           byte
	ServiceAction    uint16
	HasServiceAction bool
	// CDBLen is the CDB length; 0 means CDBLen(Opcode).
	CDBLen int
	// Flags is the CDB usage bit map of byte 1 (other bytes are reported
	// as fully used, the control byte as unused).
	Flags byte
	// Timeout is the nominal and recommended command timeout in seconds
	// (0: 30 s).
	Timeout uint32
}

func (ci *CommandInfo) cdbLen() int {
	if ci.CDBLen != 0 {
		return ci.CDBLen
	}
	return CDBLen(ci.Opcode)
}

func (ci *CommandInfo) timeout() uint32 {
	if ci.Timeout != 0 {
		return ci.Timeout
	}
	return 30
}

// Usage returns the CDB usage data of the command.
func (ci *CommandInfo) Usage() []byte {
	n := ci.cdbLen()
	u := make([]byte, n)
	for i := range u {
		u[i] = 0xff
	}
	u[0] = ci.Opcode
	u[1] = ci.Flags
	if ci.HasServiceAction {
		if ci.Opcode == 0x7f {
			u[8], u[9] = byte(ci.ServiceAction>>8), byte(ci.ServiceAction)
		} else {
			u[1] = ci.Flags&0xe0 | byte(ci.ServiceAction)
		}
	}
	u[n-1] = 0
	return u
}

// opTable indexes the supported commands.
type opTable struct {
	plain [256]*opInfo
	sa    map[uint32]*opInfo
	saOp  [256]bool
	// infos lists every command in opcode / service action order.
	infos []CommandInfo
}

func (t *opTable) lookup(op byte, sa uint16) *opInfo {
	if t.saOp[op] {
		return t.sa[uint32(op)<<16|uint32(sa)]
	}
	return t.plain[op]
}

func (t *opTable) hasSA(op byte) bool { return t.saOp[op] }

func newOpTable(list []opInfo) opTable {
	t := opTable{sa: make(map[uint32]*opInfo)}
	for i := range list {
		o := &list[i]
		if o.hasSA {
			t.saOp[o.op] = true
			t.sa[uint32(o.op)<<16|uint32(o.sa)] = o
		} else {
			t.plain[o.op] = o
		}
		t.infos = append(t.infos, CommandInfo{
			Opcode: o.op, ServiceAction: o.sa, HasServiceAction: o.hasSA,
			CDBLen: o.cdbLen, Flags: o.flags, Timeout: o.timeout,
		})
	}
	sort.Slice(t.infos, func(i, j int) bool {
		if t.infos[i].Opcode != t.infos[j].Opcode {
			return t.infos[i].Opcode < t.infos[j].Opcode
		}
		return t.infos[i].ServiceAction < t.infos[j].ServiceAction
	})
	return t
}

// diskOps lists the commands Disk supports; thin adds UNMAP.
func diskOps(thin bool) opTable {
	ops := []opInfo{
		{op: 0x00, run: opTestUnitReady, acc: accAllowed},
		{op: 0x03, run: opRequestSense, acc: accAllowed, spc2OK: true, flags: 0x01},
		{op: 0x08, run: opRead, acc: accRead},
		{op: 0x0a, run: opWrite, acc: accWrite},
		{op: 0x12, run: opInquiry, acc: accAllowed, spc2OK: true, flags: 0x01},
		{op: 0x15, run: opModeSelect, acc: accWrite, flags: 0x11},
		{op: 0x16, run: opReserve, acc: accWrite},
		{op: 0x17, run: opRelease, acc: accWrite, spc2OK: true},
		{op: 0x1a, run: opModeSense, acc: accWrite, flags: 0x08},
		{op: 0x1b, run: opStartStopUnit, acc: accWrite, flags: 0x01},
		{op: 0x1e, run: opPreventAllow, acc: accWrite},
		{op: 0x25, run: opReadCapacity10, acc: accAllowed},
		{op: 0x28, run: opRead, acc: accRead, flags: 0xf8},
		{op: 0x2a, run: opWrite, acc: accWrite, flags: 0xf8},
		{op: 0x2e, run: opWriteVerify, acc: accWrite, flags: 0xf2},
		{op: 0x2f, run: opVerify, acc: accRead, flags: 0xf6},
		{op: 0x34, run: opPrefetch, acc: accRead, flags: 0x02},
		{op: 0x35, run: opSyncCache, acc: accWrite, flags: 0x02},
		{op: 0x37, run: opReadDefectData, acc: accRead},
		{op: 0x41, run: opWriteSame, acc: accWrite, flags: 0xf8},
		{op: 0x4d, run: opLogSense, acc: accAllowed},
		{op: 0x55, run: opModeSelect, acc: accWrite, flags: 0x11},
		{op: 0x56, run: opReserve, acc: accWrite},
		{op: 0x57, run: opRelease, acc: accWrite, spc2OK: true},
		{op: 0x5a, run: opModeSense, acc: accWrite, flags: 0x18},
		{op: 0x5e, sa: 0x00, hasSA: true, run: opPRIn, acc: accPR},
		{op: 0x5e, sa: 0x01, hasSA: true, run: opPRIn, acc: accPR},
		{op: 0x5e, sa: 0x02, hasSA: true, run: opPRIn, acc: accPR},
		{op: 0x5e, sa: 0x03, hasSA: true, run: opPRIn, acc: accPR},
		{op: 0x5f, sa: 0x00, hasSA: true, run: opPROut, acc: accPR},
		{op: 0x5f, sa: 0x01, hasSA: true, run: opPROut, acc: accPR},
		{op: 0x5f, sa: 0x02, hasSA: true, run: opPROut, acc: accPR},
		{op: 0x5f, sa: 0x03, hasSA: true, run: opPROut, acc: accPR},
		{op: 0x5f, sa: 0x04, hasSA: true, run: opPROut, acc: accPR},
		{op: 0x5f, sa: 0x05, hasSA: true, run: opPROut, acc: accPR},
		{op: 0x5f, sa: 0x06, hasSA: true, run: opPROut, acc: accPR},
		{op: 0x88, run: opRead, acc: accRead, flags: 0xf8},
		{op: 0x89, run: opCompareAndWrite, acc: accWrite, flags: 0xf8},
		{op: 0x8a, run: opWrite, acc: accWrite, flags: 0xf8},
		{op: 0x8b, run: opOrWrite, acc: accWrite, flags: 0xf8},
		{op: 0x8e, run: opWriteVerify, acc: accWrite, flags: 0xf2},
		{op: 0x8f, run: opVerify, acc: accRead, flags: 0xf6},
		{op: 0x90, run: opPrefetch, acc: accRead, flags: 0x02},
		{op: 0x91, run: opSyncCache, acc: accWrite, flags: 0x02},
		{op: 0x93, run: opWriteSame, acc: accWrite, flags: 0xf9},
		{op: 0x9c, run: opWriteAtomic, acc: accWrite, flags: 0xf8},
		{op: 0x9e, sa: 0x10, hasSA: true, run: opReadCapacity16, acc: accAllowed},
		{op: 0x9e, sa: 0x12, hasSA: true, run: opGetLBAStatus, acc: accRead},
		{op: 0xa0, run: opReportLUNs, acc: accAllowed, spc2OK: true},
		{op: 0xa3, sa: 0x0c, hasSA: true, run: opReportOpcodes, acc: accAllowed, spc2OK: true},
		{op: 0xa3, sa: 0x0d, hasSA: true, run: opReportTMFs, acc: accAllowed, spc2OK: true},
		{op: 0xa8, run: opRead, acc: accRead, flags: 0xf8},
		{op: 0xaa, run: opWrite, acc: accWrite, flags: 0xf8},
		{op: 0xae, run: opWriteVerify, acc: accWrite, flags: 0xf2},
		{op: 0xaf, run: opVerify, acc: accRead, flags: 0xf6},
		{op: 0xb7, run: opReadDefectData, acc: accRead},
	}
	if thin {
		ops = append(ops, opInfo{op: 0x42, run: opUnmap, acc: accWrite, flags: 0x01})
	}
	return newOpTable(ops)
}
