package nfs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Config configures a Server. Zero values select the documented defaults.
type Config struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// StateDir holds the persistent file-handle index (required).
	StateDir string
	// CacheDir holds cached file data and the dirty-data journal
	// (required). Dirty data survives restarts here.
	CacheDir string
	// CacheSize bounds the clean data kept in CacheDir; least recently
	// used clean files are evicted beyond it. Dirty data is never evicted
	// and may exceed it. Default 10 GiB.
	CacheSize int64
	// MetadataTTL is how long a lookup, attribute or directory listing is
	// trusted before it is revalidated against the store with HEAD or LIST,
	// so changes made directly in the bucket show up within it. Default 5 s.
	MetadataTTL time.Duration
	// SettleTime is how long a written file must stay idle before it is
	// uploaded when the client never sends COMMIT. Default 3 s.
	SettleTime time.Duration
	// PortmapAddr, when not empty, is where Serve starts a portmapper
	// (RFC 1833 version 2, TCP and UDP), normally ":111". Empty: none.
	PortmapAddr string
	// OnMount, when set, is called for every MNT request with the share,
	// the client and whether the mount was allowed (for the audit trail);
	// it must not block for long.
	OnMount func(MountEvent)
	// OnUpload, when set, is called (from an upload worker; it must not
	// block for long) after each file is uploaded.
	OnUpload func(UploadEvent)
	// UploadHold is the longest a file ready for upload waits while
	// clients keep the server busy (foreground first: see "Caching and
	// uploads" in the package documentation). Default 10 s; negative:
	// uploads never wait for clients.
	UploadHold time.Duration
	// UploadConcurrency is the number of files uploaded at once, and the
	// number of parts of one multipart upload sent at once. Default 8.
	UploadConcurrency int
	// PartSize is the multipart part size; files larger than it are
	// uploaded in parts. Default 16 MiB (rounded to whole MiB).
	PartSize int64
	// ReadAhead is how much is fetched beyond a cache miss. Default 8 MiB.
	ReadAhead int64
	// IdleTimeout closes a connection that sends no complete request for
	// this long (a slow client cannot hold a request open longer).
	// Default 5 min.
	IdleTimeout time.Duration
	// MaxConnections bounds concurrent client connections. Default 1024.
	MaxConnections int
}

// Squash selects how client identities are mapped.
type Squash int

// Squash modes.
const (
	// RootSquash maps uid 0 to the anonymous identity (the default).
	RootSquash Squash = iota
	// AllSquash maps every user to the anonymous identity.
	AllSquash
	// NoSquash trusts the client's identities.
	NoSquash
)

// Share is one export: a bucket (the Store) and optional key prefix served
// at the export path "/" + Name.
type Share struct {
	// Name names the share; clients mount "/Name". Letters, digits, '-',
	// '_' and '.'.
	Name string
	// Store holds the share's objects.
	Store objstore.Store
	// Prefix is prepended to every key (e.g. "team/"); may be empty.
	Prefix string
	// AllowedClients lists the client networks that may mount and use the
	// share (1 to 100 entries).
	AllowedClients []netip.Prefix
	// Squash selects identity mapping; AnonUID and AnonGID are the
	// anonymous identity (0 means 65534).
	Squash           Squash
	AnonUID, AnonGID uint32
	// ReadOnly refuses every change with NFS3ERR_ROFS.
	ReadOnly bool
}

// UploadEvent reports one file uploaded to the store.
type UploadEvent struct {
	Share string
	Path  string // path inside the share, without a leading slash
	Key   string // object key
	Size  int64
	ETag  string
	// Multipart tells whether the object was assembled from parts, and
	// CopiedBytes how many bytes were copied server-side from the previous
	// version instead of being sent.
	Multipart   bool
	CopiedBytes int64
	Time        time.Time
}

// MountEvent reports one MNT request.
type MountEvent struct {
	Share   string
	Client  netip.Addr
	Allowed bool
	Time    time.Time
}

// Session is one mount recorded by MNT and not yet undone by UMNT.
type Session struct {
	Share     string
	Client    netip.Addr
	MountedAt time.Time
}

// Server serves NFSv3, MOUNT v3 and (optionally) the portmapper for a set of
// shares. Create it with NewServer; it is safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	verf uint64 // write verifier, new at every start

	mu        sync.Mutex
	shares    map[string]*share
	byID      map[uint64]*share
	mounts    map[mountKey]time.Time
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	port      int // the NFS/MOUNT port, from the first listener
	pmapTCP   net.Listener
	pmapUDP   net.PacketConn
	closed    bool
	connSlots chan struct{}

	// bufs recycles record and read buffers (*[]byte of maxRecord bytes).
	bufs sync.Pool

	quit    chan struct{} // closed by Shutdown
	wg      sync.WaitGroup
	bg      sync.WaitGroup // background read-ahead
	cache   *cacheLRU
	uploads *uploader
}

type mountKey struct {
	share  string
	client netip.Addr
}

// NewServer validates cfg, applies defaults and starts the background
// upload workers. It does not listen: call Serve.
func NewServer(cfg Config) (*Server, error) {
	if cfg.StateDir == "" || cfg.CacheDir == "" {
		return nil, fmt.Errorf("nfs: StateDir and CacheDir are required")
	}
	for _, d := range []string{cfg.StateDir, cfg.CacheDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("nfs: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10 << 30
	}
	if cfg.MetadataTTL <= 0 {
		cfg.MetadataTTL = 5 * time.Second
	}
	if cfg.SettleTime <= 0 {
		cfg.SettleTime = 3 * time.Second
	}
	if cfg.UploadConcurrency <= 0 {
		cfg.UploadConcurrency = 8
	}
	if cfg.UploadHold == 0 {
		cfg.UploadHold = 10 * time.Second
	}
	if cfg.PartSize <= 0 {
		cfg.PartSize = 16 << 20
	}
	cfg.PartSize = max(objstore.MinPartSize+blockSize, (cfg.PartSize+blockSize-1)/blockSize*blockSize)
	if cfg.ReadAhead <= 0 {
		cfg.ReadAhead = 8 << 20
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 1024
	}
	var vb [8]byte
	_, _ = rand.Read(vb[:])
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "nfs"),
		shares:    map[string]*share{},
		byID:      map[uint64]*share{},
		mounts:    map[mountKey]time.Time{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
		connSlots: make(chan struct{}, cfg.MaxConnections),
		quit:      make(chan struct{}),
	}
	s.bufs.New = func() any {
		b := make([]byte, 0, maxRecord)
		return &b
	}
	for i, b := range vb {
		s.verf |= uint64(b) << (8 * i)
	}
	s.cache = newCacheLRU(cfg.CacheSize)
	s.uploads = newUploader(s)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.uploads.run(s.quit)
	}()
	return s, nil
}

// shareID derives the stable id (first half of every file handle) of a
// share from its name.
func shareID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() | 1
}

func validShareName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return n != "." && n != ".."
}

// AddShare starts serving sh at "/" + sh.Name. Dirty data left in the cache
// by an earlier run of the share is queued for upload.
func (s *Server) AddShare(sh Share) error {
	switch {
	case !validShareName(sh.Name):
		return fmt.Errorf("%w: bad name %q", ErrInvalidShare, sh.Name)
	case sh.Store == nil:
		return fmt.Errorf("%w: %s: no store", ErrInvalidShare, sh.Name)
	case len(sh.AllowedClients) < 1 || len(sh.AllowedClients) > 100:
		return fmt.Errorf("%w: %s: %d allowed client networks (1 to 100)", ErrInvalidShare, sh.Name, len(sh.AllowedClients))
	case sh.Squash < RootSquash || sh.Squash > NoSquash:
		return fmt.Errorf("%w: %s: bad squash mode %d", ErrInvalidShare, sh.Name, sh.Squash)
	}
	for _, p := range sh.AllowedClients {
		if !p.IsValid() {
			return fmt.Errorf("%w: %s: invalid client network", ErrInvalidShare, sh.Name)
		}
	}
	sh.Prefix = strings.TrimLeft(sh.Prefix, "/")
	if sh.Prefix != "" && !strings.HasSuffix(sh.Prefix, "/") {
		sh.Prefix += "/"
	}
	if sh.AnonUID == 0 {
		sh.AnonUID = 65534
	}
	if sh.AnonGID == 0 {
		sh.AnonGID = 65534
	}
	id := shareID(sh.Name)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if _, ok := s.shares[sh.Name]; ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrShareExists, sh.Name)
	}
	s.mu.Unlock()
	x, latest, err := newShare(s, sh, id)
	if err != nil {
		return err
	}
	x.recover(latest)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.shares[sh.Name]; ok || s.closed {
		x.close()
		return fmt.Errorf("%w: %s", ErrShareExists, sh.Name)
	}
	s.shares[sh.Name] = x
	s.byID[id] = x
	return nil
}

// RemoveShare stops serving a share and closes its handle index and
// journal. Clients that still use it get NFS3ERR_STALE. Files with changes
// not yet uploaded stay in the cache and are uploaded when the share is
// added again.
func (s *Server) RemoveShare(name string) error {
	s.mu.Lock()
	x, ok := s.shares[name]
	if ok {
		delete(s.shares, name)
		delete(s.byID, x.id)
		for k := range s.mounts {
			if k.share == name {
				delete(s.mounts, k)
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoShare, name)
	}
	x.removed.Store(true)
	return x.close()
}

// Refresh drops the cached metadata (and clean cached data) of path in the
// named share, and of everything below it when recursive, then reloads it
// from the store: the explicit counterpart of the metadata TTL.
func (s *Server) Refresh(ctx context.Context, shareName, path string, recursive bool) error {
	s.mu.Lock()
	x, ok := s.shares[shareName]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoShare, shareName)
	}
	return x.refresh(ctx, cleanPath(path), recursive)
}

// Sessions returns the current mounts, ordered by share and client.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.mounts))
	for k, t := range s.mounts {
		out = append(out, Session{Share: k.share, Client: k.client, MountedAt: t})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Share != out[j].Share {
			return out[i].Share < out[j].Share
		}
		return out[i].Client.Less(out[j].Client)
	})
	return out
}

// PortmapAddr returns the portmapper's TCP address, or nil when it is not
// running (tests configure "127.0.0.1:0" and ask here for the port).
func (s *Server) PortmapAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pmapTCP == nil {
		return nil
	}
	return s.pmapTCP.Addr()
}

// Serve accepts NFS and MOUNT connections on ln until Shutdown, and starts
// the portmapper on the first call when Config.PortmapAddr is set (the
// portmapper then reports ln's port for both programs). It returns
// ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	if s.port == 0 {
		if ta, ok := ln.Addr().(*net.TCPAddr); ok {
			s.port = ta.Port
		}
	}
	startPmap := s.cfg.PortmapAddr != "" && s.pmapTCP == nil
	s.mu.Unlock()
	if startPmap {
		if err := s.startPortmap(); err != nil {
			s.mu.Lock()
			delete(s.listeners, ln)
			s.mu.Unlock()
			return err
		}
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.listeners, ln)
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("nfs: accept: %w", err)
		}
		select {
		case s.connSlots <- struct{}{}:
		default:
			s.log.Warn("too many connections", "client", c.RemoteAddr())
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.connSlots
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() { <-s.connSlots }()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Shutdown stops accepting, closes every connection, waits for running
// requests, then keeps uploading dirty files until they are all uploaded or
// ctx ends; what is not uploaded stays in the cache for the next start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	if s.pmapTCP != nil {
		s.pmapTCP.Close()
	}
	if s.pmapUDP != nil {
		s.pmapUDP.Close()
	}
	shares := make([]*share, 0, len(s.shares))
	for _, x := range s.shares {
		shares = append(shares, x)
	}
	s.mu.Unlock()

	err := s.uploads.drain(ctx, shares)
	close(s.quit)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	<-done
	s.bg.Wait()
	for _, x := range shares {
		if cerr := x.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// lookupShareByID returns the share a file handle names.
func (s *Server) lookupShareByID(id uint64) *share {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

// lookupExport returns the share exported at dirpath ("/name").
func (s *Server) lookupExport(dirpath string) *share {
	name := strings.Trim(dirpath, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shares[name]
}

func (s *Server) shareDirs(id uint64) (state, cache string) {
	n := fmt.Sprintf("%016x", id)
	return filepath.Join(s.cfg.StateDir, n+".handles"), filepath.Join(s.cfg.CacheDir, n)
}
