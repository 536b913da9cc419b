package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// session is the full feature phase of a logged-in session.
type session struct {
	srv       *Server
	c         *conn
	tsih      uint16
	nexus     scsi.Nexus
	target    *targetEntry // nil for discovery sessions
	discovery bool
	p         params
	started   time.Time

	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	cond      sync.Cond // signalled when a task leaves tasks
	tasks     map[uint32]*task
	immediate int // immediate commands outstanding
	memUsed   int
	closed    bool

	inflight sync.WaitGroup
	// work feeds dispatched tasks to the workers.
	work        chan *task
	workers     int
	idleWorkers atomic.Int32
	workerWG    sync.WaitGroup
	taskPool    sync.Pool
	nextTTT     uint32

	// keep-alive state
	lastRecv   atomic.Int64
	pingTTT    atomic.Uint32
	pingSent   atomic.Int64
	logoutSent atomic.Bool
	stopRead   atomic.Bool
	stopPinger chan struct{}
	pingerDone chan struct{}
	// ended is closed when end has finished (nexus dropped, unregistered).
	ended      chan struct{}
	drainTimer *time.Timer

	// text response continuation
	textRest []byte
	textTTT  uint32

	commands   atomic.Uint64
	readBytes  atomic.Uint64
	writeBytes atomic.Uint64

	endOnce   sync.Once
	nexusOnce sync.Once
}

// newSession creates the session for a completed login, ending an older
// session of the same initiator port (session reinstatement).
func (srv *Server) newSession(c *conn, ls *loginState, p params) (*session, error) {
	s := &session{
		srv:       srv,
		c:         c,
		discovery: ls.discovery,
		target:    ls.entry,
		p:         p,
		started:   time.Now(),
		tasks:     make(map[uint32]*task),
		nexus: scsi.Nexus{
			InitiatorName: ls.initiator,
			ISID:          ls.isid,
			TargetName:    ls.target,
			TPGT:          srv.cfg.PortalGroupTag,
		},
		stopPinger: make(chan struct{}),
		ended:      make(chan struct{}),
		work:       make(chan *task, 2*srv.cfg.QueueDepth+maxR2T),
		pingerDone: make(chan struct{}),
	}
	if ls.def != nil {
		s.nexus.TargetName = ls.def.Name
	}
	s.cond.L = &s.mu
	s.ctx, s.cancel = context.WithCancel(srv.ctx)
	s.taskPool.New = func() any { return &task{} }

	// Reinstatement: the same initiator port logging in to the same target
	// replaces its old session.
	var old *session
	srv.mu.Lock()
	for _, o := range srv.sessions {
		if o.discovery == s.discovery && o.nexus.ISID == s.nexus.ISID &&
			strings.EqualFold(o.nexus.InitiatorName, s.nexus.InitiatorName) &&
			strings.EqualFold(o.nexus.TargetName, s.nexus.TargetName) {
			old = o
			break
		}
	}
	srv.mu.Unlock()
	if old != nil {
		c.log.Info("iscsi session reinstatement", "initiator", s.nexus.InitiatorName, "tsih", old.tsih)
		old.close(errors.New("session reinstated"))
		select {
		case <-old.ended:
		case <-time.After(srv.cfg.LoginTimeout):
			s.cancel()
			return nil, failLogin(statusTargetError, detailTargetError, "old session did not end")
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closing {
		s.cancel()
		return nil, failLogin(statusTargetError, 0x01, "server shutting down")
	}
	if len(srv.sessions) >= srv.cfg.MaxSessions {
		s.cancel()
		return nil, failLogin(statusTargetError, detailOutOfResources, "too many sessions")
	}
	for {
		srv.nextTSIH++
		if srv.nextTSIH == 0 {
			continue
		}
		if _, ok := srv.sessions[srv.nextTSIH]; !ok {
			break
		}
	}
	s.tsih = srv.nextTSIH
	srv.sessions[s.tsih] = s
	c.sessMu.Lock()
	c.sess = s
	c.sessMu.Unlock()
	s.lastRecv.Store(time.Now().UnixNano())
	go s.pinger()
	return s, nil
}

// info returns the session's metrics snapshot.
func (s *session) info() SessionInfo {
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	return SessionInfo{
		TSIH:       s.tsih,
		ISID:       s.nexus.ISID,
		Initiator:  s.nexus.InitiatorName,
		Target:     s.nexus.TargetName,
		RemoteAddr: s.c.remote,
		Discovery:  s.discovery,
		Started:    s.started,
		Commands:   s.commands.Load(),
		ReadBytes:  s.readBytes.Load(),
		WriteBytes: s.writeBytes.Load(),
		InFlight:   n,
	}
}

// close ends the session's connection; end does the cleanup.
func (s *session) close(cause error) {
	s.c.log.Debug("iscsi session closing", "tsih", s.tsih, "cause", cause)
	s.cancel()
	s.c.abort(cause)
}

// run is the full feature phase read loop. It returns when the
// connection ends.
func (s *session) run() error {
	c := s.c
	for {
		if s.stopRead.Load() {
			return ErrServerClosed
		}
		if err := c.r.readHeader(); err != nil {
			return err
		}
		s.lastRecv.Store(time.Now().UnixNano())
		var err error
		switch op := c.r.hdr.opcode(); op {
		case opNopOut:
			err = s.handleNop()
		case opSCSICmd:
			err = s.handleCommand()
		case opDataOut:
			err = s.handleDataOut()
		case opTaskMgmt:
			err = s.handleTMF()
		case opTextReq:
			err = s.handleText()
		case opLogoutReq:
			err = s.handleLogout()
		case opSNACK:
			err = s.rejectCurrent(rejectProtocol)
		default:
			err = s.rejectCurrent(rejectNotSupported)
		}
		if err != nil {
			return err
		}
	}
}

// end tears the session down: stops reading, lets or makes the commands in
// flight finish, tells the logical units the nexus is gone and unregisters
// the session.
func (s *session) end(cause error) {
	s.endOnce.Do(func() {
		clean := errors.Is(cause, errLogout) || s.c.draining.Load()
		if !clean {
			s.cancel()
		}
		close(s.stopPinger)
		s.mu.Lock()
		if s.drainTimer != nil {
			s.drainTimer.Stop()
		}
		s.closed = true
		for itt, t := range s.tasks {
			if !t.running {
				delete(s.tasks, itt)
				s.releaseTask(t)
			}
		}
		s.mu.Unlock()
		s.inflight.Wait()
		close(s.work)
		s.workerWG.Wait()
		s.cancel()
		s.c.close()
		s.loseNexus()
		<-s.pingerDone
		close(s.ended)
		if cause != nil && !clean && !errors.Is(cause, io.EOF) && !errors.Is(cause, net.ErrClosed) {
			s.c.log.Info("iscsi session ended", "tsih", s.tsih, "initiator", s.nexus.InitiatorName, "err", cause)
		} else {
			s.c.log.Debug("iscsi session ended", "tsih", s.tsih, "initiator", s.nexus.InitiatorName)
		}
	})
}

// loseNexus tells the logical units the I_T nexus is gone and unregisters
// the session. It runs once, before the logout response or at the end.
func (s *session) loseNexus() {
	s.nexusOnce.Do(func() {
		if s.target != nil {
			def := s.target.def.Load()
			for _, lu := range def.LUNs {
				lu.NexusLost(s.nexus)
			}
		}
		s.srv.mu.Lock()
		if s.srv.sessions[s.tsih] == s {
			delete(s.srv.sessions, s.tsih)
		}
		s.srv.mu.Unlock()
	})
}

// pinger sends NOP-In keep-alives on an idle connection and closes the
// connection when a ping goes unanswered.
func (s *session) pinger() {
	defer close(s.pingerDone)
	iv := s.srv.cfg.NopInterval
	if iv < 0 {
		<-s.stopPinger
		return
	}
	tick := time.NewTicker(min(iv/2+1, time.Second*5))
	defer tick.Stop()
	for {
		select {
		case <-s.stopPinger:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		if s.pingTTT.Load() != 0 {
			if now-s.pingSent.Load() > int64(iv) {
				s.c.log.Warn("iscsi NOP-In ping unanswered; closing connection", "tsih", s.tsih)
				s.close(errors.New("ping timeout"))
				return
			}
			continue
		}
		if now-s.lastRecv.Load() < int64(iv) {
			continue
		}
		ttt := uint32(now)&0x7fffffff | 1
		s.pingSent.Store(now)
		s.pingTTT.Store(ttt)
		var o [1]outPDU
		o[0].hdr[0] = opNopIn
		o[0].hdr[1] = 0x80
		o[0].hdr.setU32(16, reservedTag)
		o[0].hdr.setU32(20, ttt)
		o[0].flags = pduStatSN | pduWindow
		if err := s.c.w.send(o[:]); err != nil {
			return
		}
	}
}

// requestLogout asks the initiator to log out (Async Message, event 1) and
// stops reading after a grace period; commands in flight still complete.
func (s *session) requestLogout() {
	s.c.draining.Store(true)
	if !s.logoutSent.Swap(true) {
		var o [1]outPDU
		o[0].hdr[0] = opAsync
		o[0].hdr[1] = 0x80
		o[0].hdr.setU32(16, reservedTag)
		o[0].hdr[36] = 1 // target requests logout
		o[0].hdr.setU16(42, 2)
		o[0].flags = pduStatSN | pduAdvance | pduWindow
		_ = s.c.w.send(o[:])
	}
	s.mu.Lock()
	if s.drainTimer == nil && !s.closed {
		s.drainTimer = time.AfterFunc(3*time.Second, func() {
			s.stopRead.Store(true)
			_ = s.c.nc.SetReadDeadline(time.Unix(1, 0))
		})
	}
	s.mu.Unlock()
}

// rejectCurrent sends a Reject for the PDU just read and skips its data.
func (s *session) rejectCurrent(reason byte) error {
	c := s.c
	if err := c.r.discardData(); err != nil {
		return err
	}
	return s.reject(reason)
}

// reject sends a Reject PDU carrying the current header.
func (s *session) reject(reason byte) error {
	c := s.c
	var hdrCopy bhs
	hdrCopy = c.r.hdr
	o := &c.scratch[0]
	o.reset()
	o.hdr[0] = opReject
	o.hdr[1] = 0x80
	o.hdr[2] = reason
	o.hdr.setU32(16, reservedTag)
	o.data = hdrCopy[:]
	o.flags = pduStatSN | pduAdvance | pduWindow
	return c.w.send(c.scratch[:1])
}

// acceptSN applies the CmdSN rules to a command-numbered PDU. It returns
// false when the PDU must be dropped.
func (s *session) acceptSN(immediate bool, sn uint32) bool {
	if immediate {
		return true
	}
	if !s.c.win.accept(sn) {
		exp, maxSN := s.c.win.get()
		s.c.log.Debug("iscsi CmdSN outside window; dropped", "cmdsn", sn, "exp", exp, "max", maxSN)
		return false
	}
	return true
}

// handleNop answers a NOP-Out.
func (s *session) handleNop() error {
	c := s.c
	h := c.r.hdr
	n := h.dataLen()
	if h.itt() == reservedTag {
		// Answer to our ping, or a ping that wants no answer.
		if t := h.u32(20); t != reservedTag && t == s.pingTTT.Load() {
			s.pingTTT.Store(0)
		}
		return c.r.discardData()
	}
	if !s.acceptSN(h.immediate(), h.u32(24)) {
		return c.r.discardData()
	}
	if !h.immediate() {
		c.win.complete()
	}
	buf := s.srv.pool.get(n)
	defer s.srv.pool.put(buf)
	if err := c.r.readData(*buf); err != nil {
		return err
	}
	o := &c.scratch[0]
	o.reset()
	o.hdr[0] = opNopIn
	o.hdr[1] = 0x80
	copy(o.hdr[8:16], h[8:16])
	o.hdr.setU32(16, h.itt())
	o.hdr.setU32(20, reservedTag)
	o.data = (*buf)[:min(n, s.p.InitiatorMaxRecv)]
	o.flags = pduStatSN | pduAdvance | pduWindow
	return c.w.send(c.scratch[:1])
}

// handleLogout answers a Logout Request once the commands in flight are
// done and ends the read loop.
func (s *session) handleLogout() error {
	c := s.c
	h := c.r.hdr
	if err := c.r.discardData(); err != nil {
		return err
	}
	if !s.acceptSN(h.immediate(), h.u32(24)) {
		return nil
	}
	if !h.immediate() {
		c.win.complete()
	}
	reason := h[1] & 0x7f
	var response byte
	switch reason {
	case 0, 1:
		if reason == 1 && h.u16(20) != c.cidOf() {
			response = 1 // CID not found
		}
	case 2:
		response = 2 // recovery not supported
	default:
		return s.reject(rejectInvalidField)
	}
	if response == 0 {
		// Stop further commands, let the running ones answer first.
		s.mu.Lock()
		for itt, t := range s.tasks {
			if !t.running {
				delete(s.tasks, itt)
				s.releaseTask(t)
			}
		}
		s.mu.Unlock()
		s.inflight.Wait()
		// The nexus ends with the logout: the initiator may use another
		// session as soon as it has the response.
		s.loseNexus()
	}
	o := &c.scratch[0]
	o.reset()
	o.hdr[0] = opLogoutResp
	o.hdr[1] = 0x80
	o.hdr[2] = response
	o.hdr.setU32(16, h.itt())
	o.flags = pduStatSN | pduAdvance | pduWindow
	if err := c.w.send(c.scratch[:1]); err != nil {
		return err
	}
	if response != 0 {
		return nil
	}
	return errLogout
}

// cidOf returns the connection ID the login used.
func (c *conn) cidOf() uint16 { return c.cid }

// handleText answers a Text Request: SendTargets, with continuation for
// long answers. Other keys are answered as irrelevant in full feature
// phase.
func (s *session) handleText() error {
	c := s.c
	h := c.r.hdr
	n := h.dataLen()
	buf := s.srv.pool.get(n)
	defer s.srv.pool.put(buf)
	if err := c.r.readData(*buf); err != nil {
		return err
	}
	if !s.acceptSN(h.immediate(), h.u32(24)) {
		return nil
	}
	if !h.immediate() {
		c.win.complete()
	}
	if h[1]&0x40 != 0 {
		// Continued requests are not supported (the only request we
		// serve, SendTargets, is short).
		return s.reject(rejectNotSupported)
	}
	var body []byte
	if ttt := h.u32(20); ttt != reservedTag && ttt == s.textTTT && s.textRest != nil {
		body = s.textRest
	} else {
		kvs, err := parseText(*buf)
		if err != nil {
			return s.reject(rejectProtocol)
		}
		var resp []keyValue
		for _, kv := range kvs {
			if kv.Key == "SendTargets" {
				resp = append(resp, s.sendTargets(kv.Value)...)
				continue
			}
			resp = append(resp, keyValue{kv.Key, valIrrelevant})
		}
		body = encodeText(nil, resp)
	}
	s.textRest = nil
	ttt := reservedTag
	final := true
	if limit := s.p.InitiatorMaxRecv; len(body) > limit {
		s.textRest = body[limit:]
		body = body[:limit]
		s.nextTTT++
		s.textTTT = s.nextTTT&0x7fffffff | 0x40000000
		ttt = s.textTTT
		final = false
	}
	o := &c.scratch[0]
	o.reset()
	o.hdr[0] = opTextResp
	if final {
		o.hdr[1] = 0x80
	} else {
		o.hdr[1] = 0x40
	}
	copy(o.hdr[8:16], h[8:16])
	o.hdr.setU32(16, h.itt())
	o.hdr.setU32(20, ttt)
	o.data = body
	o.flags = pduStatSN | pduAdvance | pduWindow
	return c.w.send(c.scratch[:1])
}

// sendTargets builds the SendTargets answer: every target the initiator
// may log in to ("All", discovery sessions only), or the named target.
func (s *session) sendTargets(what string) []keyValue {
	var list []*Target
	for _, t := range s.srv.visibleTargets(s.nexus.InitiatorName) {
		switch {
		case what == "All" && s.discovery:
			list = append(list, t)
		case what == "" && !s.discovery && strings.EqualFold(t.Name, s.nexus.TargetName):
			list = append(list, t)
		case what != "" && what != "All" && strings.EqualFold(t.Name, what):
			list = append(list, t)
		}
	}
	portals := s.srv.cfg.Portals
	if len(portals) == 0 {
		portals = []string{s.c.nc.LocalAddr().String()}
	}
	tag := strconv.Itoa(int(s.srv.cfg.PortalGroupTag))
	var out []keyValue
	for _, t := range list {
		out = append(out, keyValue{"TargetName", t.Name})
		for _, p := range portals {
			out = append(out, keyValue{"TargetAddress", p + "," + tag})
		}
	}
	return out
}

// String describes the session for logs.
func (s *session) String() string {
	return fmt.Sprintf("tsih %d %s", s.tsih, s.nexus.InitiatorName)
}
