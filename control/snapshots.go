package control

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/sluicegw/sluice/control/api"
)

// Snapshots is what the control plane needs of the snapshot catalogue and
// schedules. Errors follow the Volumes conventions.
type Snapshots interface {
	CreateSnapshot(ctx context.Context, volume string, req api.CreateSnapshot) (api.Snapshot, error)
	ListSnapshots(ctx context.Context, volume string) ([]api.Snapshot, error)
	GetSnapshot(ctx context.Context, id string) (api.Snapshot, error)
	DeleteSnapshot(ctx context.Context, id string) error
	VerifySnapshot(ctx context.Context, id string) (api.VerifyResult, error)
	RestoreSnapshot(ctx context.Context, id string, req api.RestoreSnapshot) (api.Volume, error)
	GetSchedule(ctx context.Context, volume string) (api.Schedule, error)
	SetSchedule(ctx context.Context, volume string, s api.Schedule) (api.Schedule, error)
	RunGC(ctx context.Context, dryRun bool) (api.GCResult, error)
}

func (s *Server) snapshotRoutes() {
	if s.cfg.Snapshots == nil {
		return
	}
	s.route("POST /v1/volumes/{name}/snapshots", "CreateSnapshot", RoleOperator, s.createSnapshot)
	s.route("GET /v1/snapshots", "ListSnapshots", RoleReadOnly, s.listSnapshots)
	s.route("GET /v1/snapshots/{id}", "GetSnapshot", RoleReadOnly, s.getSnapshot)
	s.route("DELETE /v1/snapshots/{id}", "DeleteSnapshot", RoleOperator, s.deleteSnapshot)
	s.route("POST /v1/snapshots/{id}/verify", "VerifySnapshot", RoleOperator, s.verifySnapshot)
	s.route("POST /v1/snapshots/{id}/restore", "RestoreSnapshot", RoleOperator, s.restoreSnapshot)
	s.route("GET /v1/volumes/{name}/schedule", "GetSnapshotSchedule", RoleReadOnly, s.getSchedule)
	s.route("PUT /v1/volumes/{name}/schedule", "UpdateSnapshotSchedule", RoleOperator, s.putSchedule)
	s.route("POST /v1/gc", "RunGarbageCollection", RoleOperator, s.runGC)
}

func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateSnapshot
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	snap, err := s.cfg.Snapshots.CreateSnapshot(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/snapshots/"+snap.ID)
	writeJSON(w, http.StatusCreated, snap)
	return nil
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	snaps, err := s.cfg.Snapshots.ListSnapshots(r.Context(), r.URL.Query().Get("volume"))
	if err != nil {
		return err
	}
	// Snapshot ids sort by creation time.
	slices.SortFunc(snaps, func(a, b api.Snapshot) int { return strings.Compare(a.ID, b.ID) })
	page, next, err := paginate(r, snaps, func(s api.Snapshot) string { return s.ID })
	if err != nil {
		return err
	}
	if page == nil {
		page = []api.Snapshot{}
	}
	writeJSON(w, http.StatusOK, api.SnapshotList{Snapshots: page, NextPageToken: next})
	return nil
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) error {
	snap, err := s.cfg.Snapshots.GetSnapshot(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, snap)
	return nil
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) error {
	if err := s.cfg.Snapshots.DeleteSnapshot(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) verifySnapshot(w http.ResponseWriter, r *http.Request) error {
	res, err := s.cfg.Snapshots.VerifySnapshot(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) error {
	var req api.RestoreSnapshot
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	v, err := s.cfg.Snapshots.RestoreSnapshot(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/volumes/"+v.Name)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.cfg.Snapshots.GetSchedule(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sc)
	return nil
}

func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request) error {
	var sc api.Schedule
	if err := decodeJSON(w, r, &sc); err != nil {
		return err
	}
	out, err := s.cfg.Snapshots.SetSchedule(r.Context(), r.PathValue("name"), sc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) runGC(w http.ResponseWriter, r *http.Request) error {
	var req api.GCRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	res, err := s.cfg.Snapshots.RunGC(r.Context(), req.DryRun)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
