package control

import (
	"context"
	"net/http"

	"github.com/sluicegw/sluice/control/api"
)

// Volumes is what the control plane needs of the volume gateway.
// Implementations return errors wrapping state.ErrNotFound / ErrExists or
// a *Error (e.g. BadRequest) for invalid requests.
type Volumes interface {
	CreateVolume(ctx context.Context, req api.CreateVolume) (api.Volume, error)
	ListVolumes(ctx context.Context) ([]api.Volume, error)
	GetVolume(ctx context.Context, name string) (api.Volume, error)
	DeleteVolume(ctx context.Context, name string) error
	// ResizeVolume grows a volume.
	ResizeVolume(ctx context.Context, name string, size int64) (api.Volume, error)
}

func (s *Server) volumeRoutes() {
	if s.cfg.Volumes == nil {
		return
	}
	s.route("POST /v1/volumes", "CreateVolume", RoleOperator, s.createVolume)
	s.route("GET /v1/volumes", "ListVolumes", RoleReadOnly, s.listVolumes)
	s.route("GET /v1/volumes/{name}", "GetVolume", RoleReadOnly, s.getVolume)
	s.route("DELETE /v1/volumes/{name}", "DeleteVolume", RoleOperator, s.deleteVolume)
	s.route("POST /v1/volumes/{name}/resize", "ResizeVolume", RoleOperator, s.resizeVolume)
}

func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateVolume
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	v, err := s.cfg.Volumes.CreateVolume(r.Context(), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/volumes/"+v.Name)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.cfg.Volumes.ListVolumes(r.Context())
	if err != nil {
		return err
	}
	page, next, err := paginate(r, vs, func(v api.Volume) string { return v.Name })
	if err != nil {
		return err
	}
	if page == nil {
		page = []api.Volume{}
	}
	writeJSON(w, http.StatusOK, api.VolumeList{Volumes: page, NextPageToken: next})
	return nil
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) error {
	v, err := s.cfg.Volumes.GetVolume(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) deleteVolume(w http.ResponseWriter, r *http.Request) error {
	if err := s.cfg.Volumes.DeleteVolume(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) resizeVolume(w http.ResponseWriter, r *http.Request) error {
	var req api.ResizeVolume
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	v, err := s.cfg.Volumes.ResizeVolume(r.Context(), r.PathValue("name"), req.SizeBytes)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
