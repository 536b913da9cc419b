package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicegw/sluice/control/audit"
)

// RoleNone marks routes that need no token (health).
const RoleNone = ""

// roleRank orders roles by what they may do.
func roleRank(role string) int {
	switch role {
	case RoleReadOnly:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// routeInfo is one registered route.
type routeInfo struct {
	Method  string
	Path    string
	Name    string
	MinRole string
	h       handlerFunc
}

// reqInfo travels with a request through the middleware: the route and the
// caller, for authorisation and the audit record.
type reqInfo struct {
	id       string
	route    *routeInfo
	token    *TokenRecord
	authFail bool
}

type ctxKey int

const keyReq ctxKey = iota

func info(r *http.Request) *reqInfo {
	ri, _ := r.Context().Value(keyReq).(*reqInfo)
	if ri == nil {
		ri = &reqInfo{}
	}
	return ri
}

// requestID returns the id given to the request.
func requestID(r *http.Request) string { return info(r).id }

// route registers a handler for "METHOD /path" (Go ServeMux path patterns)
// with the event name used in the audit trail and the least role allowed.
// A known path with another method gets a JSON 405.
func (s *Server) route(pattern, name, minRole string, h handlerFunc) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("control: route pattern needs a method: " + pattern)
	}
	methods, seen := s.routes[path]
	if !seen {
		methods = map[string]routeInfo{}
		s.routes[path] = methods
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			ri, ok := methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				ri, ok = methods[http.MethodGet]
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
			req := info(r)
			req.route = &ri
			if ri.MinRole != RoleNone {
				if req.token == nil {
					s.writeError(w, r, errUnauthorized)
					return
				}
				if roleRank(req.token.Role) < roleRank(ri.MinRole) {
					s.writeError(w, r, Errorf(http.StatusForbidden, "forbidden", "%s needs the %s role; this token is %s", ri.Name, ri.MinRole, req.token.Role))
					return
				}
			}
			if err := ri.h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	ri := routeInfo{Method: method, Path: path, Name: name, MinRole: minRole}
	ri.h = s.withIdempotency(s.withETag(ri, h))
	methods[method] = ri
}

// Handler returns the full handler chain: request id and logging, panic
// recovery, audit, authentication, routes.
func (s *Server) Handler() http.Handler {
	return s.withRequestID(s.withRecover(s.withAudit(s.withAuth(s.mux))))
}

type statusWriter struct {
	http.ResponseWriter
	status int
	code   string
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
		ri := &reqInfo{id: hex.EncodeToString(b[:])}
		w.Header().Set("X-Request-Id", ri.id)
		r = r.WithContext(context.WithValue(r.Context(), keyReq, ri))
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		next.ServeHTTP(sw, r)
		s.log.Debug("api request", "request_id", ri.id, "method", r.Method, "path", r.URL.Path,
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

// withAuth checks the bearer token on every /v1 path but health. Failed
// attempts are rate limited per client address.
func (s *Server) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/v1/health" {
			next.ServeHTTP(w, r)
			return
		}
		host := clientHost(r)
		if !s.authRL.allowed(host) {
			w.Header().Set("Retry-After", "60")
			info(r).authFail = true
			s.writeError(w, r, Errorf(http.StatusTooManyRequests, "too_many_requests", "too many failed authentication attempts from %s; try again later", host))
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			info(r).authFail = true
			s.authRL.failed(host)
			s.writeError(w, r, errUnauthorized)
			return
		}
		rec, err := Authenticate(s.cfg.State, strings.TrimSpace(tok))
		if err != nil {
			s.log.Warn("api authentication failed", "request_id", requestID(r), "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token"`)
			info(r).authFail = true
			s.authRL.failed(host)
			s.writeError(w, r, errUnauthorized)
			return
		}
		info(r).token = &rec
		next.ServeHTTP(w, r)
	})
}

func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// failLimiter allows each client address a burst of failed
// authentications, refilled slowly; past it the address gets 429.
type failLimiter struct {
	mu    sync.Mutex
	byIP  map[string]*rate.Limiter
	last  time.Time
	burst int
}

func newFailLimiter() *failLimiter {
	return &failLimiter{byIP: map[string]*rate.Limiter{}, burst: authFailBurst}
}

const (
	authFailBurst = 10
	authFailEvery = 6 * time.Second
)

func (f *failLimiter) get(host string) *rate.Limiter {
	l, ok := f.byIP[host]
	if !ok {
		l = rate.NewLimiter(rate.Every(authFailEvery), f.burst)
		f.byIP[host] = l
	}
	// Forget addresses that have fully recovered, now and then.
	if time.Since(f.last) > time.Minute {
		f.last = time.Now()
		for h, lim := range f.byIP {
			if lim.Tokens() >= float64(f.burst) && h != host {
				delete(f.byIP, h)
			}
		}
	}
	return l
}

func (f *failLimiter) allowed(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.get(host).Tokens() >= 1
}

func (f *failLimiter) failed(host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(host).Allow()
}

// withAudit records every authenticated API call (and every failed
// authentication) in the audit trail once it completes. Request bodies
// are recorded as parameters with secrets redacted.
func (s *Server) withAudit(next http.Handler) http.Handler {
	if s.cfg.Audit == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/v1/health" {
			next.ServeHTTP(w, r)
			return
		}
		var body []byte
		if r.Body != nil && r.ContentLength != 0 {
			body, _ = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		ri := info(r)
		if ri.route == nil && !ri.authFail {
			return // unknown path: nothing happened
		}
		rec := audit.Record{
			Category:   audit.Management,
			Source:     "api",
			SourceAddr: clientHost(r),
			UserAgent:  r.UserAgent(),
			RequestID:  ri.id,
			Resource:   strings.TrimPrefix(r.URL.Path, "/v1/"),
			Result:     audit.Success,
			Identity:   audit.Identity{Type: "anonymous"},
			Params:     auditParams(r, body),
		}
		if loc := sw.Header().Get("Location"); loc != "" {
			rec.Resource = strings.TrimPrefix(loc, "/v1/")
		}
		if ri.route != nil {
			rec.Name, rec.ReadOnly = ri.route.Name, ri.route.Method == http.MethodGet
		}
		if ri.authFail {
			rec.Name = "AuthenticationFailed"
		}
		if ri.token != nil {
			rec.Identity = audit.Identity{Type: "token", ID: ri.token.ID, Role: ri.token.Role, Name: ri.token.Name}
		}
		if sw.status >= 400 {
			rec.Result = audit.Failure
			rec.ErrorCode = fmt.Sprint(sw.status)
		}
		if err := s.cfg.Audit.Append(rec); err != nil {
			s.log.Warn("audit record lost", "request_id", ri.id, "err", err)
		}
	})
}

// auditParams collects what the caller asked for: query parameters and
// the JSON body (secrets are redacted by the audit log).
func auditParams(r *http.Request, body []byte) map[string]any {
	p := map[string]any{}
	for k, v := range r.URL.Query() {
		if len(v) == 1 {
			p[k] = v[0]
		} else {
			p[k] = v
		}
	}
	if len(body) > 0 && len(body) <= maxBody {
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&v) == nil {
			p["body"] = v
		} else {
			p["body"] = "(not JSON)"
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}
