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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/control/monitor"
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
	// Snapshots, when set, serves snapshots, schedules and GC.
	Snapshots Snapshots
	// Shares, when set, serves /v1/shares.
	Shares Shares
	// Settings, when set, serves the bandwidth schedule.
	Settings GatewaySettings
	// Tapes, when set, serves the tape library.
	Tapes Tapes
	// Audit, when set, records every API call and serves /v1/audit.
	Audit *audit.Log
	// AuditBucket, when set, is the bucket copy of the trail, for
	// verification.
	AuditBucket audit.Source
	// Metrics, when set, serves /v1/metrics from the in-process history.
	Metrics *monitor.Ring
	// Alarms, when set (with Metrics), serves /v1/alarms; rules are kept
	// in State.
	Alarms *monitor.Alarms
}

// Server is the control plane's HTTP server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	mux     *http.ServeMux
	routes  map[string]map[string]routeInfo // path pattern -> method -> route
	http    *http.Server
	authRL  *failLimiter
	idem    *idempotency

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
	s := &Server{cfg: cfg, log: cfg.Logger, started: time.Now().UTC(), mux: http.NewServeMux(), routes: map[string]map[string]routeInfo{}, authRL: newFailLimiter(), idem: newIdempotency()}
	s.route("GET /v1/health", "GetHealth", RoleNone, s.getHealth)
	s.route("GET /v1/openapi.json", "GetOpenAPI", RoleReadOnly, s.getOpenAPI)
	s.route("GET /v1/gateway", "GetGateway", RoleReadOnly, s.getGateway)
	s.route("GET /v1/gateway/bandwidth", "GetBandwidth", RoleReadOnly, s.getBandwidth)
	s.route("PUT /v1/gateway/bandwidth", "UpdateBandwidth", RoleOperator, s.putBandwidth)
	s.gatewayRoutes()
	s.volumeRoutes()
	s.snapshotRoutes()
	s.shareRoutes()
	s.tapeRoutes()
	s.tokenRoutes()
	s.auditRoutes()
	s.monitorRoutes()
	if err := s.loadAlarms(); err != nil {
		s.log.Error("loading alarm rules", "err", err)
	}
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
