package control

import (
	"context"
	"net/http"

	"github.com/sluicegw/sluice/control/api"
)

// Shares is what the control plane needs of the file gateway. Errors follow
// the Volumes conventions.
type Shares interface {
	CreateShare(ctx context.Context, req api.CreateShare) (api.Share, error)
	ListShares(ctx context.Context) ([]api.Share, error)
	GetShare(ctx context.Context, name string) (api.Share, error)
	DeleteShare(ctx context.Context, name string) error
	RefreshShare(ctx context.Context, name string, req api.RefreshShare) error
}

func (s *Server) shareRoutes() {
	if s.cfg.Shares == nil {
		return
	}
	s.route("POST /v1/shares", "CreateShare", RoleOperator, s.createShare)
	s.route("GET /v1/shares", "ListShares", RoleReadOnly, s.listShares)
	s.route("GET /v1/shares/{name}", "GetShare", RoleReadOnly, s.getShare)
	s.route("DELETE /v1/shares/{name}", "DeleteShare", RoleOperator, s.deleteShare)
	s.route("POST /v1/shares/{name}/refresh", "RefreshCache", RoleOperator, s.refreshShare)
}

func (s *Server) createShare(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateShare
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	sh, err := s.cfg.Shares.CreateShare(r.Context(), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/shares/"+sh.Name)
	writeJSON(w, http.StatusCreated, sh)
	return nil
}

func (s *Server) listShares(w http.ResponseWriter, r *http.Request) error {
	shs, err := s.cfg.Shares.ListShares(r.Context())
	if err != nil {
		return err
	}
	page, next, err := paginate(r, shs, func(s api.Share) string { return s.Name })
	if err != nil {
		return err
	}
	if page == nil {
		page = []api.Share{}
	}
	writeJSON(w, http.StatusOK, api.ShareList{Shares: page, NextPageToken: next})
	return nil
}

func (s *Server) getShare(w http.ResponseWriter, r *http.Request) error {
	sh, err := s.cfg.Shares.GetShare(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sh)
	return nil
}

func (s *Server) deleteShare(w http.ResponseWriter, r *http.Request) error {
	if err := s.cfg.Shares.DeleteShare(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) refreshShare(w http.ResponseWriter, r *http.Request) error {
	var req api.RefreshShare
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	if err := s.cfg.Shares.RefreshShare(r.Context(), r.PathValue("name"), req); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
