package iscsi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loginMaxData is the data segment limit during login (RFC 7143 section
// 13.12: MaxRecvDataSegmentLength defaults to 8192 until negotiated).
const loginMaxData = 8192

// conn is one TCP connection: the login phase, then the full feature phase
// of its session (Sluice allows one connection per session).
type conn struct {
	srv    *Server
	cid    uint16
	nc     net.Conn
	log    *slog.Logger
	remote string
	r      *pduReader
	w      *pduWriter
	win    cmdWindow

	// sess is set when the login completes.
	sessMu sync.Mutex
	sess   *session

	closeOnce sync.Once
	draining  atomic.Bool
	// scratch PDUs for responses sent from the reader goroutine.
	scratch [8]outPDU
}

func newConn(s *Server, nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	c := &conn{
		srv:    s,
		nc:     nc,
		remote: nc.RemoteAddr().String(),
	}
	c.log = s.log.With("remote", c.remote)
	c.r = newPDUReader(nc, loginMaxData)
	c.r.ioTimeout = s.cfg.IOTimeout
	c.w = newPDUWriter(nc, s.cfg.IOTimeout, c.win.get)
	return c
}

// serve runs the connection to its end.
func (c *conn) serve() {
	defer c.srv.connDone(c)
	defer func() {
		// A bug triggered by one peer must not take the server down.
		if v := recover(); v != nil {
			c.log.Error("iscsi connection panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			c.close()
		}
	}()
	if c.srv.loggingIn.Add(1) > int32(c.srv.cfg.MaxLogins) {
		c.srv.loggingIn.Add(-1)
		c.log.Warn("iscsi too many connections logging in; closing")
		c.close()
		return
	}
	sess, err := c.login()
	c.srv.loggingIn.Add(-1)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.log.Debug("iscsi login ended", "err", err)
		}
		c.close()
		return
	}
	err = c.runSafely(sess)
	sess.end(err)
	c.close()
}

// runSafely runs the session's read loop, turning a panic into an error
// so the session is still torn down properly.
func (c *conn) runSafely(s *session) (err error) {
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("iscsi connection panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("iscsi: panic: %v", v)
		}
	}()
	return s.run()
}

// close closes the socket once.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.w.mu.Lock()
		c.w.closed = true
		c.w.mu.Unlock()
		_ = c.nc.Close()
	})
}

// abort ends the connection at once.
func (c *conn) abort(_ error) {
	_ = c.nc.Close()
}

// shutdown asks the initiator to log out and stops the connection once
// its commands are done. Connections still logging in are closed.
func (c *conn) shutdown() {
	c.sessMu.Lock()
	s := c.sess
	c.sessMu.Unlock()
	if s == nil {
		c.abort(ErrServerClosed)
		return
	}
	s.requestLogout()
}

// loginFailure is a login ended with a status class and detail.
type loginFailure struct {
	class, detail byte
	reason        string
}

func (f *loginFailure) Error() string {
	return fmt.Sprintf("login failed (0x%02x%02x): %s", f.class, f.detail, f.reason)
}

func failLogin(class, detail byte, format string, args ...any) *loginFailure {
	return &loginFailure{class, detail, fmt.Sprintf(format, args...)}
}

// Login status classes and details (RFC 7143 section 11.13.5).
const (
	statusInitiatorError = 0x02
	statusTargetError    = 0x03

	detailMisc             = 0x00
	detailAuthFailed       = 0x01
	detailForbidden        = 0x02
	detailNotFound         = 0x03
	detailRemoved          = 0x04
	detailBadVersion       = 0x05
	detailTooManyConns     = 0x06
	detailMissingParam     = 0x07
	detailCantInclude      = 0x08
	detailBadSessionType   = 0x09
	detailNoSession        = 0x0a
	detailInvalidDuringLog = 0x0b

	detailTargetError    = 0x00
	detailOutOfResources = 0x02
)

// Login stages.
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// loginState is the state of one login phase.
type loginState struct {
	isid       [6]byte
	itt        uint32
	cid        uint16
	first      bool
	initiator  string
	target     string
	discovery  bool
	entry      *targetEntry
	def        *Target
	chapCfg    *CHAPConfig
	chap       *chapServer
	authMethod string
	authDone   bool
	neg        *negotiator
	sentTPGT   bool
	stage      int
	text       []byte
}

// login runs the login phase and returns the new session.
func (c *conn) login() (*session, error) {
	srv := c.srv
	deadline := time.Now().Add(srv.cfg.LoginTimeout)
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("iscsi: set deadline: %w", err)
	}
	c.r.deadline = deadline
	ls := &loginState{first: true, neg: newNegotiator(srv.limits)}
	ev := LoginEvent{RemoteAddr: c.remote, SessionType: "Normal"}
	for {
		if err := c.r.readHeader(); err != nil {
			return nil, err
		}
		h := &c.r.hdr
		n := h.dataLen()
		if h.opcode() != opLoginReq {
			_ = c.r.discardData()
			f := failLogin(statusInitiatorError, detailInvalidDuringLog, "opcode 0x%02x during login", h.opcode())
			c.auditFailure(&ev, ls, f)
			c.sendLoginFailure(ls, f)
			return nil, f
		}
		if len(ls.text)+n > maxTextLen {
			f := failLogin(statusInitiatorError, detailMisc, "login text too long")
			c.auditFailure(&ev, ls, f)
			c.sendLoginFailure(ls, f)
			return nil, f
		}
		start := len(ls.text)
		ls.text = slices.Grow(ls.text, n)[:start+n]
		if err := c.r.readData(ls.text[start:]); err != nil {
			return nil, err
		}
		resp, done, err := c.loginStep(ls, &ev)
		if err != nil {
			var f *loginFailure
			if errors.As(err, &f) {
				c.auditFailure(&ev, ls, f)
				c.sendLoginFailure(ls, f)
			}
			return nil, err
		}
		if done {
			c.r.deadline = time.Time{}
			return resp, nil
		}
	}
}

func (c *conn) auditFailure(ev *LoginEvent, ls *loginState, f *loginFailure) {
	ev.Initiator, ev.Target, ev.ISID = ls.initiator, ls.target, ls.isid
	if ls.discovery {
		ev.SessionType = "Discovery"
	}
	ev.Success = false
	ev.StatusClass, ev.StatusDetail, ev.Reason = f.class, f.detail, f.reason
	c.srv.audit(*ev)
}

// loginStep handles one complete login request (continuations gathered).
// It returns the session when the login has entered full feature phase.
func (c *conn) loginStep(ls *loginState, ev *LoginEvent) (*session, bool, error) {
	h := c.r.hdr
	srv := c.srv
	transit := h[1]&0x80 != 0
	cont := h[1]&0x40 != 0
	csg := int(h[1]>>2) & 3
	nsg := int(h[1]) & 3
	ls.itt = h.itt()
	if ls.first {
		copy(ls.isid[:], h[8:14])
		ls.cid = h.u16(20)
		c.cid = ls.cid
		c.win.init(h.u32(24), srv.cfg.QueueDepth)
		c.w.statSN = h.u32(28)
		if h[3] > 0 { // Version-min above ours (0x00)
			return nil, false, failLogin(statusInitiatorError, detailBadVersion, "unsupported version %d", h[3])
		}
	} else if !slices.Equal(ls.isid[:], h[8:14]) {
		return nil, false, failLogin(statusInitiatorError, detailMisc, "ISID changed during login")
	}
	if cont {
		if transit {
			return nil, false, failLogin(statusInitiatorError, detailMisc, "T and C both set")
		}
		// More text follows: acknowledge with an empty response.
		return nil, false, c.sendLogin(ls, false, csg, nsg, 0, nil)
	}
	kvs, err := parseText(ls.text)
	ls.text = ls.text[:0]
	if err != nil {
		return nil, false, failLogin(statusInitiatorError, detailMisc, "%v", err)
	}
	var resp []keyValue
	keys := make(map[string]string, len(kvs))
	var op []keyValue
	for _, kv := range kvs {
		switch {
		case kv.Key == "InitiatorName", kv.Key == "TargetName", kv.Key == "SessionType",
			kv.Key == "AuthMethod", strings.HasPrefix(kv.Key, "CHAP_"):
			keys[kv.Key] = kv.Value
		default:
			op = append(op, kv)
		}
	}
	if ls.first {
		if err := c.firstLogin(ls, keys, h.u16(14)); err != nil {
			return nil, false, err
		}
		ev.Initiator, ev.Target, ev.ISID = ls.initiator, ls.target, ls.isid
		if ls.discovery {
			ev.SessionType = "Discovery"
		}
		ls.first = false
		ls.stage = csg
	}
	if csg != ls.stage && !(csg > ls.stage) {
		return nil, false, failLogin(statusInitiatorError, detailMisc, "login stage went back from %d to %d", ls.stage, csg)
	}
	ls.stage = csg
	switch csg {
	case stageSecurity:
		r, err := c.securityStep(ls, keys)
		if err != nil {
			return nil, false, err
		}
		resp = append(resp, r...)
		if ls.chapCfg == nil && ls.authMethod == "" {
			ls.authDone = true
		}
		if transit && !ls.authDone {
			transit = false
		}
	case stageOperational:
		if !ls.authDone {
			if ls.chapCfg != nil {
				return nil, false, failLogin(statusInitiatorError, detailAuthFailed, "authentication required but the initiator skipped it")
			}
			ls.authDone = true
		}
		if ls.authMethod != "" || len(keys) > 0 {
			// Security keys outside the security stage.
			for k := range keys {
				if k == "AuthMethod" || strings.HasPrefix(k, "CHAP_") {
					return nil, false, failLogin(statusInitiatorError, detailMisc, "%s outside the security stage", k)
				}
			}
		}
	default:
		return nil, false, failLogin(statusInitiatorError, detailMisc, "bad current stage %d", csg)
	}
	resp = append(resp, ls.neg.negotiate(op)...)
	if transit {
		if nsg <= csg || nsg == 2 {
			return nil, false, failLogin(statusInitiatorError, detailMisc, "bad next stage %d", nsg)
		}
		if nsg == stageFullFeature {
			ls.neg.declare(&resp)
		}
	}
	if !ls.discovery && !ls.sentTPGT {
		ls.sentTPGT = true
		resp = append(resp, keyValue{"TargetPortalGroupTag", fmt.Sprint(srv.cfg.PortalGroupTag)})
		if ls.def.Alias != "" {
			resp = append(resp, keyValue{"TargetAlias", ls.def.Alias})
		}
	}
	if !transit || nsg != stageFullFeature {
		if transit {
			ls.stage = nsg
		}
		return nil, false, c.sendLogin(ls, transit, csg, nsg, 0, encodeText(nil, resp))
	}
	// Enter the full feature phase.
	p := ls.neg.finish()
	s, err := srv.newSession(c, ls, p)
	if err != nil {
		return nil, false, err
	}
	if err := c.sendLogin(ls, true, csg, nsg, s.tsih, encodeText(nil, resp)); err != nil {
		s.end(err)
		return nil, false, err
	}
	c.w.setDigests(p.HeaderDigest, p.DataDigest)
	c.r.headerDigest, c.r.dataDigest = p.HeaderDigest, p.DataDigest
	c.r.maxData = p.TargetMaxRecv
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		s.end(err)
		return nil, false, fmt.Errorf("iscsi: clear deadline: %w", err)
	}
	ev.Success = true
	srv.audit(*ev)
	return s, true, nil
}

// firstLogin checks the names and session type in the first login request.
func (c *conn) firstLogin(ls *loginState, keys map[string]string, tsih uint16) error {
	srv := c.srv
	ls.initiator = keys["InitiatorName"]
	ls.target = keys["TargetName"]
	if ls.initiator == "" {
		return failLogin(statusInitiatorError, detailMissingParam, "InitiatorName missing")
	}
	if !validName(ls.initiator) {
		return failLogin(statusInitiatorError, detailMisc, "bad InitiatorName %q", ls.initiator)
	}
	switch keys["SessionType"] {
	case "", "Normal":
	case "Discovery":
		ls.discovery = true
	default:
		return failLogin(statusInitiatorError, detailBadSessionType, "SessionType %q", keys["SessionType"])
	}
	if tsih != 0 {
		return failLogin(statusInitiatorError, detailNoSession, "adding connections to a session is not supported (TSIH %d)", tsih)
	}
	if ls.discovery {
		ls.chapCfg = srv.cfg.DiscoveryCHAP
		return nil
	}
	if ls.target == "" {
		return failLogin(statusInitiatorError, detailMissingParam, "TargetName missing")
	}
	ls.entry = srv.lookupTarget(ls.target)
	if ls.entry == nil {
		return failLogin(statusInitiatorError, detailNotFound, "no target %q", ls.target)
	}
	ls.def = ls.entry.def.Load()
	if !ls.def.allows(ls.initiator) {
		return failLogin(statusInitiatorError, detailForbidden, "initiator %q not allowed", ls.initiator)
	}
	ls.chapCfg = ls.def.CHAP
	return nil
}

// securityStep handles AuthMethod and the CHAP exchange.
func (c *conn) securityStep(ls *loginState, keys map[string]string) ([]keyValue, error) {
	var resp []keyValue
	if am, ok := keys["AuthMethod"]; ok && ls.authMethod == "" {
		offered := strings.Split(am, ",")
		switch {
		case ls.chapCfg != nil && slices.Contains(offered, "CHAP"):
			ls.authMethod = "CHAP"
			ls.chap = &chapServer{cfg: *ls.chapCfg}
		case ls.chapCfg != nil:
			return nil, failLogin(statusInitiatorError, detailAuthFailed, "CHAP required, initiator offered %q", am)
		case slices.Contains(offered, "None"):
			ls.authMethod = "None"
			ls.authDone = true
		default:
			return nil, failLogin(statusInitiatorError, detailAuthFailed, "target has no credentials, initiator offered only %q", am)
		}
		resp = append(resp, keyValue{"AuthMethod", ls.authMethod})
	}
	if ls.chapCfg != nil && ls.authMethod == "" {
		return nil, failLogin(statusInitiatorError, detailAuthFailed, "CHAP required, initiator sent no AuthMethod")
	}
	if ls.chap != nil && !ls.authDone {
		r, done, err := ls.chap.step(keys)
		if err != nil {
			if errors.Is(err, errAuth) {
				return nil, failLogin(statusInitiatorError, detailAuthFailed, "%v", err)
			}
			return nil, failLogin(statusTargetError, detailTargetError, "%v", err)
		}
		resp = append(resp, r...)
		ls.authDone = done
	}
	return resp, nil
}

// sendLogin sends a login response.
func (c *conn) sendLogin(ls *loginState, transit bool, csg, nsg int, tsih uint16, data []byte) error {
	o := &c.scratch[0]
	o.reset()
	o.hdr[0] = opLoginResp
	if transit {
		o.hdr[1] = 0x80 | byte(csg)<<2 | byte(nsg)
	} else {
		o.hdr[1] = byte(csg) << 2
	}
	copy(o.hdr[8:14], ls.isid[:])
	o.hdr.setU16(14, tsih)
	o.hdr.setU32(16, ls.itt)
	o.data = data
	o.flags = pduStatSN | pduAdvance | pduWindow
	return c.w.send(c.scratch[:1])
}

// sendLoginFailure sends a login response with an error status.
func (c *conn) sendLoginFailure(ls *loginState, f *loginFailure) {
	o := &c.scratch[0]
	o.reset()
	o.hdr[0] = opLoginResp
	o.hdr[1] = byte(ls.stage) << 2
	copy(o.hdr[8:14], ls.isid[:])
	o.hdr.setU32(16, ls.itt)
	o.hdr[36] = f.class
	o.hdr[37] = f.detail
	o.flags = pduStatSN | pduAdvance | pduWindow
	_ = c.w.send(c.scratch[:1])
}
