package monitor

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRingQueryAndRate(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_test_bytes_total", Help: "x"}, []string{"volume"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "go_ignored", Help: "not sluice_"})
	reg.MustRegister(c, g)
	r := NewRing(reg, Options{Interval: time.Second, Retention: 5 * time.Second})
	t0 := time.Unix(1_000_000, 0)
	for i := range 8 {
		c.WithLabelValues("a").Add(100)
		c.WithLabelValues("b").Add(10)
		if err := r.Sample(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := r.Query(Query{Name: "sluice_test_bytes_total", Labels: map[string]string{"volume": "a"}})
	if err != nil || len(s) != 1 {
		t.Fatalf("query: %v %v", s, err)
	}
	// Five slots of retention: the oldest samples are gone.
	if n := len(s[0].Points); n != 5 || s[0].Points[4].Value != 800 {
		t.Fatalf("points %+v", s[0].Points)
	}
	s, _ = r.Query(Query{Name: "sluice_test_bytes_total", Rate: true})
	if len(s) != 2 || len(s[0].Points) != 4 || s[0].Points[0].Value != 100 || s[1].Points[0].Value != 10 {
		t.Fatalf("rates %+v", s)
	}
	if _, err := r.Query(Query{Name: "go_ignored"}); !errors.Is(err, ErrUnknownSeries) {
		t.Fatalf("non-sluice metric: %v", err)
	}
	if names := r.Names(); len(names) != 1 {
		t.Fatalf("names %v", names)
	}
}

func TestAlarmGoesToAlarmAndBack(t *testing.T) {
	reg := prometheus.NewRegistry()
	dirty := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_cache_percent_dirty", Help: "x"})
	reg.MustRegister(dirty)
	r := NewRing(reg, Options{Interval: time.Second, Retention: time.Minute})
	var changes []string
	a := NewAlarms(r, func(rule Rule, from, to State) { changes = append(changes, from.State+">"+to.State) })
	t0 := time.Unix(2_000_000, 0)
	if err := a.Put(Rule{Name: "dirty-high", Metric: "sluice_cache_percent_dirty", Comparison: ">", Threshold: 80, Periods: 3}, t0); err != nil {
		t.Fatal(err)
	}
	step := func(i int, v float64) string {
		dirty.Set(v)
		now := t0.Add(time.Duration(i) * time.Second)
		if err := r.Sample(now); err != nil {
			t.Fatal(err)
		}
		a.Evaluate(now)
		al, _ := a.Get("dirty-high")
		return al.State.State
	}
	want := []struct {
		v     float64
		state string
	}{
		{50, StateInsufficientData}, {50, StateInsufficientData}, {50, StateOK},
		{90, StateOK}, {95, StateOK}, {99, StateAlarm}, {99, StateAlarm},
		{10, StateOK}, {10, StateOK},
	}
	for i, w := range want {
		if got := step(i, w.v); got != w.state {
			t.Fatalf("step %d (value %v): %s, want %s", i, w.v, got, w.state)
		}
	}
	if len(changes) != 3 || changes[0] != "INSUFFICIENT_DATA>OK" || changes[1] != "OK>ALARM" || changes[2] != "ALARM>OK" {
		t.Fatalf("changes %v", changes)
	}
}

func TestRuleValidation(t *testing.T) {
	bad := []Rule{
		{Name: "", Metric: "m", Comparison: ">"},
		{Name: "x", Metric: "", Comparison: ">"},
		{Name: "x", Metric: "m", Comparison: "=="},
		{Name: "x", Metric: "m", Comparison: ">", Statistic: "p99"},
		{Name: "x", Metric: "m", Comparison: ">", Periods: -1},
	}
	for _, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("rule %+v accepted", r)
		}
	}
}
