package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// Target is one iSCSI target served by a Server.
type Target struct {
	// Name is the target's iSCSI name (iqn., eui. or naa. form).
	Name string
	// Alias is the human-readable TargetAlias sent at login (optional).
	Alias string
	// LUNs maps logical unit numbers to the units that serve them.
	LUNs map[uint64]scsi.LogicalUnit
	// CHAP, when set, requires CHAP authentication for normal sessions.
	CHAP *CHAPConfig
	// AllowedInitiators lists the initiator names that may log in; empty
	// allows any initiator. Targets an initiator may not log in to are not
	// listed to it by SendTargets.
	AllowedInitiators []string
}

// allows reports whether the initiator may log in to the target.
func (t *Target) allows(initiator string) bool {
	if len(t.AllowedInitiators) == 0 {
		return true
	}
	for _, a := range t.AllowedInitiators {
		if strings.EqualFold(a, initiator) {
			return true
		}
	}
	return false
}

// validate checks a target definition and returns a private copy.
func (t Target) validate() (*Target, error) {
	if !validName(t.Name) {
		return nil, fmt.Errorf("%w: bad iSCSI name %q", ErrInvalidTarget, t.Name)
	}
	c := t
	c.LUNs = make(map[uint64]scsi.LogicalUnit, len(t.LUNs))
	for n, lu := range t.LUNs {
		if lu == nil {
			return nil, fmt.Errorf("%w: LUN %d has no logical unit", ErrInvalidTarget, n)
		}
		if n > 0x3fff {
			return nil, fmt.Errorf("%w: LUN %d above 16383", ErrInvalidTarget, n)
		}
		c.LUNs[n] = lu
	}
	if t.CHAP != nil {
		ch := *t.CHAP
		if err := ch.validate(); err != nil {
			return nil, err
		}
		c.CHAP = &ch
	}
	c.AllowedInitiators = slices.Clone(t.AllowedInitiators)
	return &c, nil
}

// validName checks the form of an iSCSI name (RFC 7143 section 4.2.7).
func validName(n string) bool {
	if len(n) < 5 || len(n) > 223 {
		return false
	}
	l := strings.ToLower(n)
	if !strings.HasPrefix(l, "iqn.") && !strings.HasPrefix(l, "eui.") && !strings.HasPrefix(l, "naa.") {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c == 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// LoginEvent describes one login attempt for the audit trail. It never
// carries secrets.
type LoginEvent struct {
	Time        time.Time
	Initiator   string
	Target      string
	RemoteAddr  string
	ISID        [6]byte
	SessionType string // "Normal" or "Discovery"
	Success     bool
	// StatusClass and StatusDetail are the login response status
	// (RFC 7143 section 11.13.5).
	StatusClass  byte
	StatusDetail byte
	// Reason explains a failure.
	Reason string
}

// SessionInfo describes a live session, for metrics and the control API.
type SessionInfo struct {
	TSIH       uint16
	ISID       [6]byte
	Initiator  string
	Target     string
	RemoteAddr string
	Discovery  bool
	Started    time.Time
	Commands   uint64
	ReadBytes  uint64
	WriteBytes uint64
	InFlight   int
}

// Config configures a Server. The zero value works.
type Config struct {
	// Logger receives connection and login logs; nil discards them.
	Logger *slog.Logger
	// QueueDepth is the number of commands each session may have
	// outstanding (the CmdSN window). Default 128, at most 1024.
	QueueDepth int
	// NopInterval is how long a connection may be idle before the target
	// sends a NOP-In ping; an unanswered ping closes the connection after
	// another NopInterval. Default 30s; negative disables pings.
	NopInterval time.Duration
	// LoginTimeout bounds the whole login phase. Default 15s.
	LoginTimeout time.Duration
	// IOTimeout bounds how long a started PDU may take to arrive or to be
	// written. Default 60s.
	IOTimeout time.Duration
	// MaxSessions bounds the number of sessions (0: 1024).
	MaxSessions int
	// MaxLogins bounds the connections still in the login phase; further
	// connections are closed at once (0: 256). With LoginTimeout it limits
	// what a login flood can hold.
	MaxLogins int
	// SessionMemory bounds the command buffers a session may hold at once;
	// commands beyond it get TASK SET FULL. Default 256 MiB.
	SessionMemory int
	// MaxTransferLength bounds one command's data transfer. Default 64 MiB
	// (libiscsi's tests move 32 MiB in one command).
	MaxTransferLength int
	// PortalGroupTag is the target portal group tag. Default 1.
	PortalGroupTag uint16
	// Portals are the addresses ("host:port") SendTargets returns; empty
	// returns the address the discovery connection arrived on.
	Portals []string
	// DiscoveryCHAP, when set, requires CHAP for discovery sessions.
	DiscoveryCHAP *CHAPConfig
	// OnLogin is called for every login attempt (audit trail).
	OnLogin func(LoginEvent)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.QueueDepth <= 0 {
		c.QueueDepth = 128
	}
	c.QueueDepth = min(c.QueueDepth, 1024)
	if c.NopInterval == 0 {
		c.NopInterval = 30 * time.Second
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = 15 * time.Second
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = 60 * time.Second
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 1024
	}
	if c.MaxLogins <= 0 {
		c.MaxLogins = 256
	}
	if c.SessionMemory <= 0 {
		c.SessionMemory = 256 << 20
	}
	if c.MaxTransferLength <= 0 {
		c.MaxTransferLength = 64 << 20
	}
	if c.PortalGroupTag == 0 {
		c.PortalGroupTag = 1
	}
}

// targetEntry is a served target; SetTarget swaps its definition.
type targetEntry struct {
	def atomic.Pointer[Target]
}

// Server is an iSCSI target server. Create it with NewServer.
type Server struct {
	cfg    Config
	log    *slog.Logger
	pool   bufPool
	limits targetLimits

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	loggingIn atomic.Int32

	mu        sync.Mutex
	targets   map[string]*targetEntry // by lower-case name
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	sessions  map[uint16]*session
	nextTSIH  uint16
	closing   bool
	connWG    sync.WaitGroup
}

// NewServer returns a Server with no targets.
func NewServer(cfg Config) *Server {
	cfg.setDefaults()
	cfg.Portals = slices.Clone(cfg.Portals)
	if cfg.DiscoveryCHAP != nil {
		c := *cfg.DiscoveryCHAP
		cfg.DiscoveryCHAP = &c
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		limits:    defaultLimits(),
		ctx:       ctx,
		cancel:    cancel,
		targets:   make(map[string]*targetEntry),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		sessions:  make(map[uint16]*session),
	}
}

// AddTarget starts serving a target.
func (s *Server) AddTarget(t Target) error {
	def, err := t.validate()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(def.Name)
	if _, ok := s.targets[key]; ok {
		return fmt.Errorf("%w: %s", ErrTargetExists, def.Name)
	}
	e := &targetEntry{}
	e.def.Store(def)
	s.targets[key] = e
	return nil
}

// SetTarget replaces the definition (LUNs, alias, CHAP, allowed initiators)
// of a served target. Sessions already logged in keep running with the new
// LUN set; authentication and ACL changes apply to new logins.
func (s *Server) SetTarget(t Target) error {
	def, err := t.validate()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.targets[strings.ToLower(def.Name)]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoSuchTarget, def.Name)
	}
	e.def.Store(def)
	return nil
}

// RemoveTarget stops serving a target and closes its sessions.
func (s *Server) RemoveTarget(name string) error {
	s.mu.Lock()
	key := strings.ToLower(name)
	e, ok := s.targets[key]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoSuchTarget, name)
	}
	delete(s.targets, key)
	var victims []*session
	for _, ss := range s.sessions {
		if ss.target == e {
			victims = append(victims, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range victims {
		ss.close(errors.New("target removed"))
	}
	return nil
}

// lookupTarget returns the entry for a target name.
func (s *Server) lookupTarget(name string) *targetEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targets[strings.ToLower(name)]
}

// visibleTargets returns the targets an initiator may log in to, sorted by
// name.
func (s *Server) visibleTargets(initiator string) []*Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Target
	for _, e := range s.targets {
		if d := e.def.Load(); d.allows(initiator) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *Target) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Serve accepts connections on ln until Shutdown or Close; it then returns
// ErrServerClosed. Other accept errors are returned as they are.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("iscsi: accept: %w", err)
		}
		backoff = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// connDone unregisters a finished connection.
func (s *Server) connDone(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

// Shutdown stops accepting connections, asks every session to log out,
// ends the sessions once their commands in flight are done, and waits for
// all connections to finish. When ctx ends first, the remaining connections
// are closed at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return fmt.Errorf("iscsi: shutdown: %w", ctx.Err())
	}
}

// Close stops accepting and closes every connection at once, cancelling
// commands in flight, and waits for the connection goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.abort(ErrServerClosed)
	}
	s.connWG.Wait()
	return nil
}

// Sessions returns a snapshot of the live sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	out := make([]SessionInfo, 0, len(list))
	for _, ss := range list {
		out = append(out, ss.info())
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return int(a.TSIH) - int(b.TSIH) })
	return out
}

// audit reports a login attempt to the configured hook and the log.
func (s *Server) audit(ev LoginEvent) {
	ev.Time = time.Now()
	if ev.Success {
		s.log.Info("iscsi login", "initiator", ev.Initiator, "target", ev.Target,
			"remote", ev.RemoteAddr, "type", ev.SessionType)
	} else {
		s.log.Warn("iscsi login failed", "initiator", ev.Initiator, "target", ev.Target,
			"remote", ev.RemoteAddr, "type", ev.SessionType,
			"status", fmt.Sprintf("0x%02x%02x", ev.StatusClass, ev.StatusDetail), "reason", ev.Reason)
	}
	if s.cfg.OnLogin != nil {
		s.cfg.OnLogin(ev)
	}
}
