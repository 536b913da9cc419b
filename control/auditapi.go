package control

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/audit"
)

func (s *Server) auditRoutes() {
	if s.cfg.Audit == nil {
		return
	}
	s.route("GET /v1/audit/events", "ListAuditEvents", RoleAdmin, s.listAuditEvents)
	s.route("GET /v1/audit/verify", "VerifyAuditTrail", RoleAdmin, s.verifyAudit)
	s.route("GET /v1/audit/public-key", "GetAuditPublicKey", RoleReadOnly, s.auditPublicKey)
}

func parseTime(q, name string) (time.Time, error) {
	if q == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, q)
	if err != nil {
		return t, BadRequest(fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-11-25T10:00:00Z", name, q))
	}
	return t, nil
}

func (s *Server) listAuditEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := audit.Filter{Name: q.Get("name"), Identity: q.Get("identity"), Resource: q.Get("resource"), Category: q.Get("category")}
	var err error
	if f.Since, err = parseTime(q.Get("since"), "since"); err != nil {
		return err
	}
	if f.Until, err = parseTime(q.Get("until"), "until"); err != nil {
		return err
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
			return BadRequest(errors.New("limit: want 1 to 1000"))
		}
	}
	if v := q.Get("after"); v != "" {
		if f.AfterSeq, err = strconv.ParseUint(v, 10, 64); err != nil {
			return BadRequest(errors.New("after: want a record sequence number"))
		}
	}
	// Records of calls just made are written asynchronously; wait for
	// them so a query sees its own past.
	if err := s.cfg.Audit.Flush(); err != nil {
		return err
	}
	recs, next, err := s.cfg.Audit.Query(f)
	if err != nil {
		return err
	}
	out := api.AuditEvents{Events: make([]json.RawMessage, 0, len(recs)), Next: next}
	for _, rec := range recs {
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		out.Events = append(out.Events, raw)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	src := audit.Source(audit.DirSource(s.cfg.Audit.Dir()))
	switch r.URL.Query().Get("source") {
	case "", "local":
		if err := s.cfg.Audit.Flush(); err != nil {
			return err
		}
	case "bucket":
		if s.cfg.AuditBucket == nil {
			return Errorf(http.StatusConflict, "conflict", "the audit trail is not delivered to a bucket")
		}
		src = s.cfg.AuditBucket
	default:
		return BadRequest(errors.New("source: want local or bucket"))
	}
	rep, err := audit.Verify(r.Context(), src, s.cfg.Audit.PublicKey())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) auditPublicKey(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"algorithm": "ed25519", "public_key": hex.EncodeToString(s.cfg.Audit.PublicKey())})
	return nil
}
