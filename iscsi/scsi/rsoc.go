package scsi

import (
	"context"
	"encoding/binary"
)

// opReportOpcodes serves MAINTENANCE IN / REPORT SUPPORTED OPERATION CODES
// (SPC-4 6.35) from the command table, with CDB usage data and, with RCTD,
// command timeouts descriptors.
func opReportOpcodes(d *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	return ReportSupportedOpcodes(cmd, &c, d.ops.infos)
}

// ReportSupportedOpcodes answers MAINTENANCE IN / REPORT SUPPORTED
// OPERATION CODES (SPC-4 6.35) for a logical unit whose commands are ops,
// sorted by opcode and service action: all commands (reporting options
// 000b) or one command (001b, 010b, 011b), with command timeouts
// descriptors when RCTD is set. It writes into cmd.DataIn honouring the
// allocation length.
func ReportSupportedOpcodes(cmd *Command, c *CDB, ops []CommandInfo) (int, error) {
	rctd := c.Raw[2]&0x80 != 0
	opts := c.Raw[2] & 0x07
	reqOp, reqSA := c.Raw[3], c.Uint16(4)
	alloc := int(c.Uint32(6))
	timeoutDesc := func(dst []byte, o *CommandInfo) []byte {
		var t [12]byte
		binary.BigEndian.PutUint16(t[0:], 10)
		binary.BigEndian.PutUint32(t[4:], o.timeout())
		binary.BigEndian.PutUint32(t[8:], o.timeout())
		return append(dst, t[:]...)
	}
	if opts == 0 {
		out := make([]byte, 4, 4+20*len(ops))
		for i := range ops {
			o := &ops[i]
			var desc [8]byte
			desc[0] = o.Opcode
			binary.BigEndian.PutUint16(desc[2:], o.ServiceAction)
			if o.HasServiceAction {
				desc[5] |= 0x01
			}
			if rctd {
				desc[5] |= 0x02
			}
			binary.BigEndian.PutUint16(desc[6:], uint16(o.cdbLen()))
			out = append(out, desc[:]...)
			if rctd {
				out = timeoutDesc(out, o)
			}
		}
		binary.BigEndian.PutUint32(out[0:], uint32(len(out)-4))
		return Respond(cmd, out, alloc), nil
	}
	hasSA := false
	var found *CommandInfo
	for i := range ops {
		o := &ops[i]
		if o.Opcode == reqOp {
			hasSA = hasSA || o.HasServiceAction
			if !o.HasServiceAction || o.ServiceAction == reqSA {
				found = o
			}
		}
	}
	switch opts {
	case 1:
		if hasSA {
			return 0, ErrInvalidField(2, 2)
		}
	case 2:
		if !hasSA && found != nil {
			return 0, ErrInvalidField(2, 2)
		}
	case 3:
	default:
		return 0, ErrInvalidField(2, 2)
	}
	out := make([]byte, 4, 4+32+12)
	if found == nil {
		out[1] = 0x01 // not supported
		return Respond(cmd, out, alloc), nil
	}
	out[1] = 0x03 // supported in conformance with a standard
	if rctd {
		out[1] |= 0x80
	}
	u := found.Usage()
	binary.BigEndian.PutUint16(out[2:], uint16(len(u)))
	out = append(out, u...)
	if rctd {
		out = timeoutDesc(out, found)
	}
	return Respond(cmd, out, alloc), nil
}

// opReportTMFs serves MAINTENANCE IN / REPORT SUPPORTED TASK MANAGEMENT
// FUNCTIONS (SPC-4 6.36): ABORT TASK, ABORT TASK SET, LOGICAL UNIT RESET
// and TARGET RESET.
func opReportTMFs(_ *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	alloc := int(c.Uint32(6))
	out := make([]byte, 4)
	if c.Raw[2]&0x80 != 0 { // REPD: extended format
		out = make([]byte, 16)
		out[3] = 0x0c
	}
	out[0] = 0x80 | 0x40 | 0x08 | 0x02 // ATS ATSS LURS TRS
	return Respond(cmd, out, alloc), nil
}

// opLogSense serves LOG SENSE with the Supported Log Pages page only.
func opLogSense(_ *Disk, _ context.Context, cmd *Command, c CDB) (int, error) {
	alloc := int(c.Uint16(7))
	if c.Raw[2]&0x3f != 0 || c.Raw[3] != 0 {
		return 0, ErrInvalidField(2, 5)
	}
	out := []byte{0x00, 0x00, 0x00, 0x01, 0x00}
	return Respond(cmd, out, alloc), nil
}
