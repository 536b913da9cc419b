package control

import (
	"context"
	"net/http"
	"strconv"

	"github.com/sluicegw/sluice/control/api"
)

// Tapes is what the control plane needs of the tape gateway. Errors follow
// the Volumes conventions.
type Tapes interface {
	Library(ctx context.Context) (api.TapeLibrary, error)
	CreateTapes(ctx context.Context, req api.CreateTapes) ([]api.Tape, error)
	ListTapes(ctx context.Context) ([]api.Tape, error)
	GetTape(ctx context.Context, barcode string) (api.Tape, error)
	// DeleteTape deletes a tape; bypassGovernance lets an admin delete a
	// tape under a governance retention lock (the call is audited).
	DeleteTape(ctx context.Context, barcode string, bypassGovernance bool, reason string) error
	// TapeAction runs import, export, archive or retrieve.
	TapeAction(ctx context.Context, barcode, action string) (api.Tape, error)
	SetAutoCreate(ctx context.Context, r api.TapeAutoCreate) (api.TapeLibrary, error)
}

func (s *Server) tapeRoutes() {
	if s.cfg.Tapes == nil {
		return
	}
	s.route("GET /v1/tape-library", "GetTapeLibrary", RoleReadOnly, s.getLibrary)
	s.route("PUT /v1/tape-library/auto-create", "UpdateTapeAutoCreate", RoleOperator, s.putAutoCreate)
	s.route("POST /v1/tapes", "CreateTapes", RoleOperator, s.createTapes)
	s.route("GET /v1/tapes", "ListTapes", RoleReadOnly, s.listTapes)
	s.route("GET /v1/tapes/{barcode}", "GetTape", RoleReadOnly, s.getTape)
	s.route("DELETE /v1/tapes/{barcode}", "DeleteTape", RoleOperator, s.deleteTape)
	for _, a := range []string{"import", "export", "archive", "retrieve"} {
		action := a
		name := map[string]string{"import": "ImportTape", "export": "ExportTape", "archive": "ArchiveTape", "retrieve": "RetrieveTape"}[a]
		s.route("POST /v1/tapes/{barcode}/"+action, name, RoleOperator, func(w http.ResponseWriter, r *http.Request) error {
			t, err := s.cfg.Tapes.TapeAction(r.Context(), r.PathValue("barcode"), action)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, t)
			return nil
		})
	}
}

func (s *Server) getLibrary(w http.ResponseWriter, r *http.Request) error {
	lib, err := s.cfg.Tapes.Library(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, lib)
	return nil
}

func (s *Server) putAutoCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.TapeAutoCreate
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	lib, err := s.cfg.Tapes.SetAutoCreate(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, lib)
	return nil
}

func (s *Server) createTapes(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateTapes
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	ts, err := s.cfg.Tapes.CreateTapes(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.TapeList{Tapes: ts})
	return nil
}

func (s *Server) listTapes(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.cfg.Tapes.ListTapes(r.Context())
	if err != nil {
		return err
	}
	page, next, err := paginate(r, ts, func(t api.Tape) string { return t.Barcode })
	if err != nil {
		return err
	}
	if page == nil {
		page = []api.Tape{}
	}
	writeJSON(w, http.StatusOK, api.TapeList{Tapes: page, NextPageToken: next})
	return nil
}

func (s *Server) getTape(w http.ResponseWriter, r *http.Request) error {
	t, err := s.cfg.Tapes.GetTape(r.Context(), r.PathValue("barcode"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

// deleteTape takes ?bypass_governance=true&reason=... (admin only for the
// bypass; both are recorded in the audit trail as query parameters).
func (s *Server) deleteTape(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	bypass, _ := strconv.ParseBool(q.Get("bypass_governance"))
	if bypass && (info(r).token == nil || info(r).token.Role != RoleAdmin) {
		return Errorf(http.StatusForbidden, "forbidden", "bypassing a governance retention lock needs the admin role")
	}
	if err := s.cfg.Tapes.DeleteTape(r.Context(), r.PathValue("barcode"), bypass, q.Get("reason")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
