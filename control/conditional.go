package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// ETags and conditional updates: every successful GET of a resource
// carries a strong ETag (the SHA-256 of its JSON representation). A PUT or
// DELETE with If-Match is carried out only when the resource's current
// representation still has that ETag (412 otherwise), so two admins cannot
// overwrite each other's changes unknowingly.

func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// etagWriter buffers a GET answer to set its ETag.
type etagWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *etagWriter) WriteHeader(code int) { w.status = code }

func (w *etagWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}

// withETag adds ETags to GET answers and checks If-Match / If-None-Match.
func (s *Server) withETag(ri routeInfo, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			ew := &etagWriter{ResponseWriter: w}
			if err := h(ew, r); err != nil {
				return err
			}
			if ew.status == http.StatusOK {
				tag := etagOf(ew.buf.Bytes())
				w.Header().Set("ETag", tag)
				if matchTag(r.Header.Get("If-None-Match"), tag) {
					w.WriteHeader(http.StatusNotModified)
					return nil
				}
			}
			w.WriteHeader(ew.status)
			_, err := w.Write(ew.buf.Bytes())
			return err
		case http.MethodPut, http.MethodPatch, http.MethodDelete:
			if im := r.Header.Get("If-Match"); im != "" {
				cur, ok := s.currentETag(r)
				if !ok {
					return Errorf(http.StatusPreconditionFailed, "precondition_failed", "If-Match given but the resource has no current representation")
				}
				if !matchTag(im, cur) {
					return Errorf(http.StatusPreconditionFailed, "precondition_failed", "the resource changed (ETag %s); read it again and retry", cur)
				}
			}
		}
		return h(w, r)
	}
}

func matchTag(header, tag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/"))
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}

// currentETag runs the GET route of the request's path and returns the
// ETag of its answer.
func (s *Server) currentETag(r *http.Request) (string, bool) {
	// A copy of the request's info, so the GET does not overwrite the
	// route the audit record names.
	ri := *info(r)
	get := r.Clone(context.WithValue(r.Context(), keyReq, &ri))
	get.Method = http.MethodGet
	get.Body = http.NoBody
	get.ContentLength = 0
	get.Header.Del("If-Match")
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, get)
	if rec.Code != http.StatusOK {
		return "", false
	}
	return rec.Header().Get("ETag"), true
}

// Idempotency keys: a create call (POST) with an Idempotency-Key header is
// carried out once; a retry with the same key and the same body gets the
// first answer again, with the same key and another body a 422. Keys are
// kept for idempotencyTTL, per token.

const (
	idempotencyTTL = 24 * time.Hour
	idempotencyMax = 10000
)

type idemEntry struct {
	reqHash string
	status  int
	header  http.Header
	body    []byte
	done    bool
	at      time.Time
}

type idempotency struct {
	mu sync.Mutex
	m  map[string]*idemEntry
}

func newIdempotency() *idempotency { return &idempotency{m: map[string]*idemEntry{}} }

func (s *Server) withIdempotency(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		key := r.Header.Get("Idempotency-Key")
		if r.Method != http.MethodPost || key == "" {
			return h(w, r)
		}
		if len(key) > 255 {
			return Errorf(http.StatusBadRequest, "bad_request", "Idempotency-Key longer than 255 characters")
		}
		var body bytes.Buffer
		if r.Body != nil {
			if _, err := body.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody+1)); err != nil {
				return Errorf(http.StatusRequestEntityTooLarge, "payload_too_large", "request body over %d bytes", maxBody)
			}
			r.Body = readCloser{bytes.NewReader(body.Bytes())}
		}
		sum := sha256.Sum256(append([]byte(r.URL.Path+"\n"), body.Bytes()...))
		reqHash := hex.EncodeToString(sum[:])
		tok := ""
		if ri := info(r); ri.token != nil {
			tok = ri.token.ID
		}
		id := tok + "\x00" + key
		s.idem.mu.Lock()
		s.idem.expire()
		e, seen := s.idem.m[id]
		if !seen {
			e = &idemEntry{reqHash: reqHash, at: time.Now()}
			s.idem.m[id] = e
		}
		s.idem.mu.Unlock()
		if seen {
			switch {
			case e.reqHash != reqHash:
				return Errorf(http.StatusUnprocessableEntity, "idempotency_key_reused", "Idempotency-Key %q was used for a different request", key)
			case !e.done:
				return Errorf(http.StatusConflict, "conflict", "a request with Idempotency-Key %q is still running", key)
			}
			for k, v := range e.header {
				w.Header()[k] = v
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(e.status)
			_, err := w.Write(e.body)
			return err
		}
		ew := &etagWriter{ResponseWriter: w}
		err := h(ew, r)
		s.idem.mu.Lock()
		if err != nil || ew.status >= 500 {
			delete(s.idem.m, id) // failures may be retried with the same key
		} else {
			e.status, e.body, e.header, e.done = ew.status, bytes.Clone(ew.buf.Bytes()), w.Header().Clone(), true
		}
		s.idem.mu.Unlock()
		if err != nil {
			return err
		}
		w.WriteHeader(ew.status)
		_, werr := w.Write(ew.buf.Bytes())
		return werr
	}
}

// expire drops old entries; the caller holds the lock.
func (i *idempotency) expire() {
	if len(i.m) < idempotencyMax/2 {
		return
	}
	cut := time.Now().Add(-idempotencyTTL)
	for k, e := range i.m {
		if e.at.Before(cut) || len(i.m) > idempotencyMax {
			delete(i.m, k)
		}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
