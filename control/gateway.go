package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/state"
)

// GatewaySettings is what the control plane needs for scheduled settings.
type GatewaySettings interface {
	BandwidthSchedule(ctx context.Context) (api.BandwidthSchedule, error)
	SetBandwidthSchedule(ctx context.Context, s api.BandwidthSchedule) (api.BandwidthSchedule, error)
}

func (s *Server) gatewayRoutes() {
	s.route("GET /v1/gateway/maintenance", "GetMaintenanceWindow", RoleReadOnly, s.getMaintenance)
	s.route("PUT /v1/gateway/maintenance", "UpdateMaintenanceWindow", RoleOperator, s.putMaintenance)
	if s.cfg.Settings == nil {
		return
	}
	s.route("GET /v1/gateway/bandwidth-schedule", "GetBandwidthSchedule", RoleReadOnly, s.getBandwidthSchedule)
	s.route("PUT /v1/gateway/bandwidth-schedule", "UpdateBandwidthSchedule", RoleOperator, s.putBandwidthSchedule)
}

const settingsCollection = "settings"

func (s *Server) getMaintenance(w http.ResponseWriter, r *http.Request) error {
	mw, err := state.Get[api.MaintenanceWindow](s.cfg.State, settingsCollection, "maintenance")
	if errors.Is(err, state.ErrNotFound) {
		mw, err = api.MaintenanceWindow{DayOfWeek: 0, Hour: 3}, nil // Sunday 03:00 UTC
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mw)
	return nil
}

func (s *Server) putMaintenance(w http.ResponseWriter, r *http.Request) error {
	var mw api.MaintenanceWindow
	if err := decodeJSON(w, r, &mw); err != nil {
		return err
	}
	if mw.DayOfWeek < 0 || mw.DayOfWeek > 6 || mw.Hour < 0 || mw.Hour > 23 || mw.Minute < 0 || mw.Minute > 59 {
		return BadRequest(fmt.Errorf("maintenance window: day_of_week 0-6, hour 0-23, minute 0-59"))
	}
	if err := s.cfg.State.Update(func(tx *state.Tx) error { return tx.Put(settingsCollection, "maintenance", mw) }); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mw)
	return nil
}

func (s *Server) getBandwidthSchedule(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.cfg.Settings.BandwidthSchedule(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, bs)
	return nil
}

func (s *Server) putBandwidthSchedule(w http.ResponseWriter, r *http.Request) error {
	var bs api.BandwidthSchedule
	if err := decodeJSON(w, r, &bs); err != nil {
		return err
	}
	out, err := s.cfg.Settings.SetBandwidthSchedule(r.Context(), bs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
