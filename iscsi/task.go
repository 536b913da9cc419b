package iscsi

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// maxR2T bounds MaxOutstandingR2T (the array in task).
const maxR2T = 16

// r2tState tracks one outstanding R2T of a task.
type r2tState struct {
	ttt      uint32
	offset   int
	length   int
	received int
	dataSN   uint32
}

// task is one SCSI command from its arrival to its response. Tasks are
// pooled per session; everything the data path needs is kept in the task
// so a steady stream of commands allocates nothing.
type task struct {
	s         *session
	itt       uint32
	immediate bool
	lun       uint64
	lu        scsi.LogicalUnit
	read      bool
	write     bool
	attr      byte
	edtl      int
	buf       *[]byte
	mem       int
	cdb       [16 + maxAHSLen]byte
	cdbLen    int
	// preset is an error to answer with instead of executing.
	preset error

	// write data state, touched only by the reader goroutine until the
	// task runs
	received    int
	unsolEnd    int
	unsolDataSN uint32
	unsolOpen   bool
	r2tNext     int
	r2tSN       uint32
	r2ts        [maxR2T]r2tState
	nr2t        int

	running    bool
	aborted    bool
	responding bool

	cmd  scsi.Command
	pdus []outPDU
	// senseBuf holds the sense length prefix and sense data.
	senseBuf [2 + 252]byte
}

// releaseTask gives back a task's window slot, buffer and the task itself.
// Callers hold s.mu; the task must not be running.
func (s *session) releaseTask(t *task) {
	if !t.immediate {
		s.c.win.complete()
	}
	s.freeTask(t)
}

// freeTask returns a task's buffer and the task to their pools. Callers
// hold s.mu.
func (s *session) freeTask(t *task) {
	if t.buf != nil {
		s.srv.pool.put(t.buf)
		t.buf = nil
	}
	s.memUsed -= t.mem
	t.mem = 0
	if t.immediate {
		s.immediate--
	}
	t.lu = nil
	t.preset = nil
	t.cmd = scsi.Command{}
	for i := range t.pdus {
		t.pdus[i].data = nil
	}
	s.taskPool.Put(t)
}

// handleCommand receives a SCSI Command PDU (with its immediate data).
func (s *session) handleCommand() error {
	c := s.c
	h := &c.r.hdr
	n := h.dataLen()
	if s.discovery {
		return s.rejectCurrent(rejectProtocol)
	}
	imm := h.immediate()
	if !s.acceptSN(imm, h.u32(24)) {
		return c.r.discardData()
	}
	itt := h.itt()
	flags := h[1]
	read, write := flags&0x40 != 0, flags&0x20 != 0
	edtl := int(h.u32(20))
	bad := itt == reservedTag ||
		(n > 0 && (!write || n > edtl || !s.p.ImmediateData || n > s.p.FirstBurstLength))
	s.mu.Lock()
	_, dup := s.tasks[itt]
	tooMany := imm && s.immediate >= s.srv.cfg.QueueDepth
	s.mu.Unlock()
	if bad || dup || tooMany {
		if !imm {
			c.win.complete()
		}
		reason := rejectInvalidField
		switch {
		case dup:
			reason = rejectTaskInProgress
		case tooMany:
			reason = rejectImmediate
		}
		return s.rejectCurrent(reason)
	}
	t := s.taskPool.Get().(*task)
	t.s = s
	t.itt = itt
	t.immediate = imm
	t.lun = h.lun()
	t.read, t.write = read, write
	t.attr = flags & 7
	t.edtl = edtl
	t.received, t.unsolEnd, t.unsolDataSN, t.unsolOpen = 0, 0, 0, false
	t.r2tNext, t.r2tSN, t.nr2t = 0, 0, 0
	t.running, t.aborted, t.responding = false, false, false
	t.cdbLen = copy(t.cdb[:], h[32:48])
	if err := t.parseAHS(c.r.ahs); err != nil {
		t.preset = err
	}
	if s.target != nil {
		t.lu = s.target.def.Load().LUNs[t.lun]
	}
	s.mu.Lock()
	if imm {
		s.immediate++
	}
	switch {
	case t.preset != nil:
	case read && write:
		t.preset = scsi.ErrInvalidField(1, -1)
	case edtl > s.srv.cfg.MaxTransferLength:
		t.preset = scsi.ErrInvalidField(0, -1)
	case s.memUsed+edtl > s.srv.cfg.SessionMemory:
		t.preset = scsi.ErrTaskSetFull
	}
	if t.preset == nil && edtl > 0 && (read || write) {
		t.buf = s.srv.pool.get(edtl)
		t.mem = edtl
		s.memUsed += edtl
	}
	s.tasks[itt] = t
	s.mu.Unlock()
	s.commands.Add(1)

	if t.preset != nil || !write || edtl == 0 {
		if err := c.r.discardData(); err != nil {
			return err
		}
		s.dispatch(t)
		return nil
	}
	buf := (*t.buf)[:edtl]
	if err := c.r.readData(buf[:n]); err != nil {
		return err
	}
	t.received = n
	if !s.p.InitialR2T && flags&0x80 == 0 {
		// Unsolicited Data-Out PDUs follow, up to FirstBurstLength.
		t.unsolEnd = min(s.p.FirstBurstLength, edtl)
		t.unsolOpen = t.received < t.unsolEnd
	}
	t.r2tNext = t.received
	return s.continueWrite(t)
}

// parseAHS collects an extended CDB from the AHS.
func (t *task) parseAHS(ahs []byte) error {
	for len(ahs) >= 4 {
		l := int(binary.BigEndian.Uint16(ahs))
		typ := ahs[2]
		total := pad4(3 + l)
		if l == 0 || total > len(ahs) {
			return scsi.ErrInvalidField(0, -1)
		}
		if typ == 1 { // extended CDB
			t.cdbLen += copy(t.cdb[t.cdbLen:], ahs[4:3+l])
		}
		ahs = ahs[total:]
	}
	return nil
}

// continueWrite sends R2Ts for missing write data or dispatches the task
// once all of it is in.
func (s *session) continueWrite(t *task) error {
	if t.received >= t.edtl {
		s.dispatch(t)
		return nil
	}
	if t.unsolOpen {
		return nil
	}
	pdus := t.pdus[:0]
	for t.nr2t < s.p.MaxOutstandingR2T && t.nr2t < maxR2T && t.r2tNext < t.edtl {
		length := min(s.p.MaxBurstLength, t.edtl-t.r2tNext)
		s.nextTTT++
		ttt := s.nextTTT & 0x3fffffff
		t.r2ts[t.nr2t] = r2tState{ttt: ttt, offset: t.r2tNext, length: length}
		t.nr2t++
		pdus = append(pdus, outPDU{})
		o := &pdus[len(pdus)-1]
		o.hdr[0] = opR2T
		o.hdr[1] = 0x80
		o.hdr.setLUN(t.lun)
		o.hdr.setU32(16, t.itt)
		o.hdr.setU32(20, ttt)
		o.hdr.setU32(36, t.r2tSN)
		o.hdr.setU32(40, uint32(t.r2tNext))
		o.hdr.setU32(44, uint32(length))
		o.flags = pduStatSN | pduWindow
		t.r2tSN++
		t.r2tNext += length
	}
	t.pdus = pdus
	if len(pdus) == 0 {
		return nil
	}
	return s.c.w.send(pdus)
}

// handleDataOut receives a Data-Out PDU straight into its task's buffer.
func (s *session) handleDataOut() error {
	c := s.c
	h := &c.r.hdr
	n := h.dataLen()
	s.mu.Lock()
	t := s.tasks[h.itt()]
	s.mu.Unlock()
	if t == nil || t.running || t.preset != nil {
		// Data for a task that is gone (aborted, refused) or unknown.
		return c.r.discardData()
	}
	ttt := h.u32(20)
	off := int(h.u32(40))
	dsn := h.u32(36)
	var r *r2tState
	ri := -1
	if ttt == reservedTag {
		if !t.unsolOpen || dsn != t.unsolDataSN || off != t.received || off+n > t.unsolEnd {
			return s.failData(t, fmt.Errorf("%w: bad unsolicited Data-Out (itt %#x off %d len %d datasn %d)", errProtocol, t.itt, off, n, dsn))
		}
	} else {
		for i := range t.r2ts[:t.nr2t] {
			if t.r2ts[i].ttt == ttt {
				ri = i
				break
			}
		}
		if ri < 0 {
			return s.failData(t, fmt.Errorf("%w: Data-Out with unknown TTT %#x", errProtocol, ttt))
		}
		r = &t.r2ts[ri]
		if dsn != r.dataSN || off != r.offset+r.received || r.received+n > r.length {
			return s.failData(t, fmt.Errorf("%w: bad Data-Out (itt %#x off %d len %d datasn %d, want off %d datasn %d)",
				errProtocol, t.itt, off, n, dsn, r.offset+r.received, r.dataSN))
		}
	}
	if err := c.r.readData((*t.buf)[off : off+n]); err != nil {
		return err
	}
	t.received += n
	if r == nil {
		t.unsolDataSN++
		if h.final() || t.received >= t.unsolEnd {
			t.unsolOpen = false
			t.r2tNext = t.received
		}
		return s.continueWrite(t)
	}
	r.received += n
	r.dataSN++
	if r.received == r.length {
		if !h.final() {
			return fmt.Errorf("%w: burst complete without F bit", errProtocol)
		}
		// Retire the R2T.
		copy(t.r2ts[ri:t.nr2t], t.r2ts[ri+1:t.nr2t])
		t.nr2t--
		return s.continueWrite(t)
	} else if h.final() {
		return s.failTask(t, fmt.Errorf("%w: F bit before the end of the burst", errProtocol))
	}
	return nil
}

// failData drops the data segment of a Data-Out that breaks the sequence
// rules and fails its task; the connection carries on.
func (s *session) failData(t *task, cause error) error {
	if err := s.c.r.discardData(); err != nil {
		return err
	}
	return s.failTask(t, cause)
}

// failTask ends a task that is still receiving data with CHECK CONDITION,
// ABORTED COMMAND / DATA PHASE ERROR. Later Data-Out PDUs for it are
// discarded.
func (s *session) failTask(t *task, cause error) error {
	s.c.log.Debug("iscsi task failed", "itt", t.itt, "err", cause)
	t.preset = scsi.NewSense(scsi.SenseAbortedCommand, ascDataPhaseError).Wrap(cause)
	s.dispatch(t)
	return nil
}

// ascDataPhaseError is DATA PHASE ERROR (4Bh/00h).
const ascDataPhaseError scsi.ASC = 0x4b00

// dispatch starts a task whose data is complete. Tasks run on the
// session's workers, started on demand and kept until the session ends, so
// a steady stream of commands starts no goroutines. Only the reader
// goroutine dispatches.
func (s *session) dispatch(t *task) {
	s.mu.Lock()
	t.running = true
	s.mu.Unlock()
	s.inflight.Add(1)
	if s.idleWorkers.Load() == 0 && s.workers < cap(s.work) {
		s.workers++
		s.workerWG.Add(1)
		go s.worker()
	}
	s.work <- t
}

// worker runs dispatched tasks until the session ends.
func (s *session) worker() {
	defer s.workerWG.Done()
	for {
		s.idleWorkers.Add(1)
		t, ok := <-s.work
		s.idleWorkers.Add(-1)
		if !ok {
			return
		}
		s.execute(t)
	}
}

// execute runs a task on its logical unit and sends the response.
func (s *session) execute(t *task) {
	defer s.inflight.Done()
	defer func() {
		// A panicking logical unit fails its command, not the server.
		if v := recover(); v != nil && !t.responding {
			s.c.log.Error("iscsi logical unit panicked", "lun", t.lun, "panic", fmt.Sprint(v))
			s.respond(t, 0, fmt.Errorf("iscsi: logical unit panicked: %v", v))
		}
	}()
	cmd := &t.cmd
	cmd.Nexus = s.nexus
	cmd.LUN = t.lun
	cmd.CDB = t.cdb[:t.cdbLen]
	cmd.Tag = t.itt
	cmd.Attr = t.attr
	cmd.DataIn, cmd.DataOut = nil, nil
	if t.buf != nil {
		if t.read {
			cmd.DataIn = (*t.buf)[:t.edtl]
		} else {
			cmd.DataOut = (*t.buf)[:t.edtl]
		}
	}
	var n int
	err := t.preset
	if err == nil {
		n, err = s.executeOn(t, cmd)
	}
	s.respond(t, n, err)
}

// executeOn calls the logical unit, intercepting REPORT LUNS and routing
// unknown LUNs to scsi.NoSuchLU.
func (s *session) executeOn(t *task, cmd *scsi.Command) (int, error) {
	if t.cdbLen > 0 && t.cdb[0] == 0xa0 { // REPORT LUNS
		return s.reportLUNs(cmd)
	}
	lu := t.lu
	if lu == nil {
		lu = scsi.NoSuchLU{}
	}
	return lu.Execute(s.ctx, cmd)
}

// reportLUNs answers REPORT LUNS for the session's target.
func (s *session) reportLUNs(cmd *scsi.Command) (int, error) {
	c, err := scsi.DecodeCDB(cmd.CDB)
	if err != nil {
		return 0, err
	}
	alloc := int(c.Uint32(6))
	if alloc < 16 {
		return 0, scsi.ErrInvalidField(6, -1)
	}
	switch sel := c.Raw[2]; sel {
	case 0, 1, 2, 0x10, 0x11, 0x12:
	default:
		return 0, scsi.ErrInvalidField(2, -1)
	}
	var luns []uint64
	if s.target != nil {
		for l := range s.target.def.Load().LUNs {
			luns = append(luns, l)
		}
	}
	slices.Sort(luns)
	buf := make([]byte, 8+8*len(luns))
	m := scsi.ReportLUNsData(luns, buf)
	return copy(cmd.DataIn[:min(len(cmd.DataIn), alloc)], buf[:m]), nil
}
