package control

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sluicegw/sluice/control/monitor"
	"github.com/sluicegw/sluice/internal/state"
)

// alarmsCollection holds alarm rules in the state database.
const alarmsCollection = "alarms"

func (s *Server) monitorRoutes() {
	if s.cfg.Metrics == nil {
		return
	}
	s.route("GET /v1/metrics/query", "QueryMetrics", RoleReadOnly, s.queryMetrics)
	s.route("GET /v1/metrics/names", "ListMetricNames", RoleReadOnly, s.metricNames)
	if s.cfg.Alarms == nil {
		return
	}
	s.route("POST /v1/alarms", "CreateAlarm", RoleOperator, s.createAlarm)
	s.route("GET /v1/alarms", "ListAlarms", RoleReadOnly, s.listAlarms)
	s.route("GET /v1/alarms/{name}", "GetAlarm", RoleReadOnly, s.getAlarm)
	s.route("DELETE /v1/alarms/{name}", "DeleteAlarm", RoleOperator, s.deleteAlarm)
}

// loadAlarms installs the stored rules at start.
func (s *Server) loadAlarms() error {
	if s.cfg.Alarms == nil {
		return nil
	}
	rules, err := state.List[monitor.Rule](s.cfg.State, alarmsCollection)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if err := s.cfg.Alarms.Put(r, time.Now()); err != nil {
			s.log.Warn("stored alarm rule no longer valid", "alarm", r.Name, "err", err)
		}
	}
	return nil
}

// MetricsQuery is the answer of GET /v1/metrics/query.
type MetricsQuery struct {
	Series []monitor.Series `json:"series"`
}

func (s *Server) queryMetrics(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	mq := monitor.Query{Name: q.Get("name"), Rate: q.Get("rate") == "true", Labels: map[string]string{}}
	if mq.Name == "" {
		return BadRequest(errors.New("name: which metric, e.g. sluice_volume_write_bytes_total (see /v1/metrics/names)"))
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return BadRequest(errors.New("label: want key=value"))
		}
		mq.Labels[k] = v
	}
	var err error
	if mq.Since, err = parseTime(q.Get("since"), "since"); err != nil {
		return err
	}
	if mq.Until, err = parseTime(q.Get("until"), "until"); err != nil {
		return err
	}
	series, err := s.cfg.Metrics.Query(mq)
	if errors.Is(err, monitor.ErrUnknownSeries) {
		return NotFound("%v", err)
	}
	if err != nil {
		return err
	}
	if series == nil {
		series = []monitor.Series{}
	}
	writeJSON(w, http.StatusOK, MetricsQuery{Series: series})
	return nil
}

func (s *Server) metricNames(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string][]string{"names": s.cfg.Metrics.Names()})
	return nil
}

func (s *Server) createAlarm(w http.ResponseWriter, r *http.Request) error {
	var rule monitor.Rule
	if err := decodeJSON(w, r, &rule); err != nil {
		return err
	}
	if err := rule.Validate(); err != nil {
		return BadRequest(err)
	}
	if err := s.cfg.State.Update(func(tx *state.Tx) error { return tx.Create(alarmsCollection, rule.Name, rule) }); err != nil {
		if errors.Is(err, state.ErrExists) {
			return Conflict("alarm %s exists", rule.Name)
		}
		return err
	}
	if err := s.cfg.Alarms.Put(rule, time.Now()); err != nil {
		return BadRequest(err)
	}
	al, _ := s.cfg.Alarms.Get(rule.Name)
	w.Header().Set("Location", "/v1/alarms/"+rule.Name)
	writeJSON(w, http.StatusCreated, al)
	return nil
}

func (s *Server) listAlarms(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string][]monitor.Alarm{"alarms": s.cfg.Alarms.List()})
	return nil
}

func (s *Server) getAlarm(w http.ResponseWriter, r *http.Request) error {
	al, ok := s.cfg.Alarms.Get(r.PathValue("name"))
	if !ok {
		return NotFound("no alarm %q", r.PathValue("name"))
	}
	writeJSON(w, http.StatusOK, al)
	return nil
}

func (s *Server) deleteAlarm(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.cfg.State.Update(func(tx *state.Tx) error { return tx.Delete(alarmsCollection, name) }); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return NotFound("no alarm %q", name)
		}
		return err
	}
	s.cfg.Alarms.Delete(name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
