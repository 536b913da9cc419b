// Package control is Sluice's control plane: the REST API under /v1, token
// authentication, and the Prometheus /metrics endpoint. It sees the rest of
// the appliance only through the small interfaces in Config, which package
// appliance implements.
//
// Every handler returns an error; writeError is the single place where an
// error becomes an HTTP status and a {"error":{"code","message"}} body.
// Request bodies are decoded strictly: unknown fields, trailing data and
// bodies over 1 MiB are refused with 400 or 413.
package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/state"
)

// StoreProber reports whether the object store answers.
type StoreProber interface {
	// Probe returns nil when the store answered a request.
	Probe(ctx context.Context) error
	// Describe returns the store's kind, endpoint and bucket.
	Describe() (kind, endpoint, bucket string)
}

// BandwidthLimiter reads and changes the object-store bandwidth limits.
type BandwidthLimiter interface {
	Limits() (upBps, downBps int64)
	SetLimits(upBps, downBps int64)
}

// Config wires the control plane to the appliance.
type Config struct {
	// Version is reported by health and gateway info.
	Version string
	// Logger receives request logs; nil discards.
	Logger *slog.Logger
	// State holds tokens.
	State *state.DB
	// Store is probed for health.
	Store StoreProber
	// Bandwidth is the object-store limiter.
	Bandwidth BandwidthLimiter
	// Gatherer serves /metrics; nil serves an empty registry.
	Gatherer prometheus.Gatherer
	// Gateway fills GET /v1/gateway (addresses, data dir).
	Gateway api.Gateway
	// OnBandwidthChange, when set, persists a new limit.
	OnBandwidthChange func(api.Bandwidth) error
	// Volumes, when set, serves /v1/volumes.
	Volumes Volumes
}

// Server is the control plane's HTTP server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	mux     *http.ServeMux
	routes  map[string]map[string]handlerFunc // path pattern -> method -> handler
	http    *http.Server

	healthMu sync.Mutex
	health   api.StoreHealth
}

// handlerFunc is an HTTP handler that returns its error for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// maxBody bounds request bodies.
const maxBody = 1 << 20

// healthCacheFor is how long a store probe result is reused.
const healthCacheFor = 5 * time.Second

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, started: time.Now().UTC(), mux: http.NewServeMux(), routes: map[string]map[string]handlerFunc{}}
	s.route("GET /v1/health", s.getHealth)
	s.route("GET /v1/gateway", s.getGateway)
	s.route("GET /v1/gateway/bandwidth", s.getBandwidth)
	s.route("PUT /v1/gateway/bandwidth", s.putBandwidth)
	s.volumeRoutes()
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slogPrinter{s.log}}))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errNotFound)
	})
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s
}

// route registers a handler for "METHOD /path" (Go ServeMux path
// patterns). A known path with another method gets a JSON 405.
func (s *Server) route(pattern string, h handlerFunc) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("control: route pattern needs a method: " + pattern)
	}
	methods, seen := s.routes[path]
	if !seen {
		methods = map[string]handlerFunc{}
		s.routes[path] = methods
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			h, ok := methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				h, ok = methods[http.MethodGet]
			}
			if !ok {
				allow := make([]string, 0, len(methods))
				for m := range methods {
					allow = append(allow, m)
				}
				w.Header().Set("Allow", strings.Join(allow, ", "))
				s.writeError(w, r, Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s", r.Method, r.URL.Path))
				return
			}
			if err := h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	methods[method] = h
}

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyToken
)

// requestID returns the id given to the request.
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(keyRequestID).(string)
	return id
}

// Handler returns the full handler chain: request id, logging, panic
// recovery, authentication, routes.
func (s *Server) Handler() http.Handler {
	return s.withRequestID(s.withRecover(s.withAuth(s.mux)))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), keyRequestID, id))
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		next.ServeHTTP(sw, r)
		s.log.Debug("api request", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", sw.status, "remote", r.RemoteAddr, "duration", time.Since(start))
	})
}

func (s *Server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("api handler panic", "request_id", requestID(r), "panic", v, "stack", string(debug.Stack()))
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// withAuth requires a valid bearer token on every /v1 path but health.
func (s *Server) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/v1/health" {
			next.ServeHTTP(w, r)
			return
		}
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			s.writeError(w, r, errUnauthorized)
			return
		}
		rec, err := Authenticate(s.cfg.State, strings.TrimSpace(tok))
		if err != nil {
			s.log.Warn("api authentication failed", "request_id", requestID(r), "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token"`)
			s.writeError(w, r, errUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyToken, rec)))
	})
}

// writeError renders err as {"error":{...}} with its status. It is the only
// place errors reach the wire.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	if ae.Status >= 500 {
		s.log.Error("api request failed", "request_id", requestID(r), "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, ae.Status, api.Error{Error: api.ErrorDetail{Code: ae.Code, Message: ae.Message, RequestID: requestID(r)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeJSON decodes a request body strictly into v.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "content type %q: want application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Errorf(http.StatusRequestEntityTooLarge, "payload_too_large", "request body over %d bytes", maxBody)
		}
		if errors.Is(err, io.EOF) {
			return BadRequest(errors.New("empty request body"))
		}
		return BadRequest(fmt.Errorf("malformed JSON body: %w", err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest(errors.New("malformed JSON body: data after the JSON value"))
	}
	return nil
}

func (s *Server) storeHealth(ctx context.Context) api.StoreHealth {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if time.Since(s.health.CheckedAt) < healthCacheFor {
		return s.health
	}
	h := api.StoreHealth{CheckedAt: time.Now().UTC()}
	if s.cfg.Store == nil {
		h.Kind = "none"
		s.health = h
		return h
	}
	h.Kind, h.Endpoint, h.Bucket = s.cfg.Store.Describe()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.cfg.Store.Probe(pctx); err != nil {
		h.Error = err.Error()
	} else {
		h.Reachable = true
	}
	s.health = h
	return h
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) error {
	h := api.Health{
		Status:        "ok",
		Version:       s.cfg.Version,
		Started:       s.started,
		UptimeSeconds: time.Since(s.started).Seconds(),
		ObjectStore:   s.storeHealth(r.Context()),
	}
	if !h.ObjectStore.Reachable {
		h.Status = "degraded"
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) bandwidth() api.Bandwidth {
	if s.cfg.Bandwidth == nil {
		return api.Bandwidth{}
	}
	up, down := s.cfg.Bandwidth.Limits()
	return api.Bandwidth{UploadBytesPerSec: up, DownloadBytesPerSec: down}
}

func (s *Server) getGateway(w http.ResponseWriter, r *http.Request) error {
	g := s.cfg.Gateway
	g.Version, g.Started, g.Bandwidth = s.cfg.Version, s.started, s.bandwidth()
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) getBandwidth(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.bandwidth())
	return nil
}

func (s *Server) putBandwidth(w http.ResponseWriter, r *http.Request) error {
	var b api.Bandwidth
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if b.UploadBytesPerSec < 0 || b.DownloadBytesPerSec < 0 {
		return BadRequest(errors.New("bandwidth limits must be 0 (unlimited) or positive"))
	}
	if s.cfg.Bandwidth == nil {
		return Errorf(http.StatusServiceUnavailable, "unavailable", "no object store bandwidth limiter")
	}
	if s.cfg.OnBandwidthChange != nil {
		if err := s.cfg.OnBandwidthChange(b); err != nil {
			return err
		}
	}
	s.cfg.Bandwidth.SetLimits(b.UploadBytesPerSec, b.DownloadBytesPerSec)
	writeJSON(w, http.StatusOK, s.bandwidth())
	return nil
}

// Serve serves the API on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

// slogPrinter adapts a slog.Logger to promhttp's error logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error("metrics", "err", fmt.Sprint(v...)) }
