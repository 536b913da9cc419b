package iscsi

import (
	"errors"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// Task management functions (RFC 7143 section 11.5.1).
const (
	tmfAbortTask       = 1
	tmfAbortTaskSet    = 2
	tmfClearACA        = 3
	tmfClearTaskSet    = 4
	tmfLUNReset        = 5
	tmfTargetWarmReset = 6
	tmfTargetColdReset = 7
	tmfTaskReassign    = 8
)

// Task management responses (RFC 7143 section 11.6.1).
const (
	tmfComplete       = 0
	tmfNoTask         = 1
	tmfNoLUN          = 2
	tmfNoReassign     = 4
	tmfNotSupported   = 5
	tmfFunctionReject = 255
)

// handleTMF runs a Task Management Function Request. Tasks still waiting
// for data are dropped at once; running tasks are marked aborted (their
// responses are suppressed) and the TMF response goes out once they are
// done.
func (s *session) handleTMF() error {
	c := s.c
	h := c.r.hdr
	if err := c.r.discardData(); err != nil {
		return err
	}
	if s.discovery {
		return s.reject(rejectProtocol)
	}
	if !s.acceptSN(h.immediate(), h.u32(24)) {
		return nil
	}
	if !h.immediate() {
		c.win.complete()
	}
	fn := h[1] & 0x7f
	lun := h.lun()
	itt := h.itt()
	def := s.target.def.Load()
	lu := def.LUNs[lun]
	var waits []*task
	var response byte = tmfComplete
	match := func(t *task) bool { return true }
	switch fn {
	case tmfAbortTask:
		rtt := h.u32(20)
		s.mu.Lock()
		t := s.tasks[rtt]
		s.mu.Unlock()
		if t == nil {
			response = tmfNoTask
			break
		}
		match = func(x *task) bool { return x == t }
		waits = s.abortTasks(match)
	case tmfAbortTaskSet, tmfClearTaskSet:
		match = func(t *task) bool { return t.lun == lun }
		waits = s.abortTasks(match)
	case tmfLUNReset:
		if lu == nil {
			response = tmfNoLUN
			break
		}
		match = func(t *task) bool { return t.lun == lun }
		waits = s.abortTasks(match)
		lu.Reset(scsi.ResetLogicalUnit, s.nexus)
	case tmfTargetWarmReset, tmfTargetColdReset:
		waits = s.abortTasks(match)
		kind := scsi.ResetTargetWarm
		if fn == tmfTargetColdReset {
			kind = scsi.ResetTargetCold
		}
		for _, u := range def.LUNs {
			u.Reset(kind, s.nexus)
		}
	case tmfTaskReassign:
		response = tmfNoReassign
	case tmfClearACA:
		response = tmfNotSupported
	default:
		response = tmfFunctionReject
	}
	if len(waits) == 0 {
		if err := s.sendTMFResponse(itt, response); err != nil {
			return err
		}
		return s.afterTMF(fn, response)
	}
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		s.mu.Lock()
		for _, t := range waits {
			for s.tasks[t.itt] == t {
				s.cond.Wait()
			}
		}
		s.mu.Unlock()
		if err := s.sendTMFResponse(itt, response); err != nil {
			s.c.abort(err)
			return
		}
		if fn == tmfTargetColdReset {
			s.coldReset()
		}
	}()
	return nil
}

// afterTMF does what follows the response of a TMF answered at once.
func (s *session) afterTMF(fn, response byte) error {
	if fn == tmfTargetColdReset && response == tmfComplete {
		s.coldReset()
		return errors.New("target cold reset")
	}
	return nil
}

// coldReset ends every session of the target (RFC 7143: after a TARGET
// COLD RESET the target drops all its connections).
func (s *session) coldReset() {
	s.srv.mu.Lock()
	var victims []*session
	for _, o := range s.srv.sessions {
		if o.target == s.target {
			victims = append(victims, o)
		}
	}
	s.srv.mu.Unlock()
	for _, o := range victims {
		o.close(errors.New("target cold reset"))
	}
}

// abortTasks marks the session's matching tasks aborted. Tasks waiting for
// data are freed now; running ones are returned so the caller can wait for
// them.
func (s *session) abortTasks(match func(*task) bool) []*task {
	s.mu.Lock()
	defer s.mu.Unlock()
	var running []*task
	for itt, t := range s.tasks {
		if !match(t) {
			continue
		}
		t.aborted = true
		if t.running {
			running = append(running, t)
			continue
		}
		delete(s.tasks, itt)
		s.releaseTask(t)
	}
	return running
}

// sendTMFResponse sends a Task Management Function Response.
func (s *session) sendTMFResponse(itt uint32, response byte) error {
	var o [1]outPDU
	o[0].hdr[0] = opTaskResp
	o[0].hdr[1] = 0x80
	o[0].hdr[2] = response
	o[0].hdr.setU32(16, itt)
	o[0].flags = pduStatSN | pduAdvance | pduWindow
	return s.c.w.send(o[:])
}
