// Package monitor keeps the appliance's own metric history and evaluates
// alarms, so that the CLI and alarms work without an external Prometheus.
//
// A Ring samples the daemon's Prometheus registry at a fixed interval
// (default one minute) and keeps every sluice_* series for a fixed
// retention (default two weeks) in preallocated float32 slots: memory is
// bounded by MaxSeries × Retention/Interval × 4 bytes (500 series × 20,160
// slots ≈ 40 MB at most). Histogram buckets are not kept; their _sum and
// _count are.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Options configure a Ring. Zero fields take the defaults shown.
type Options struct {
	// Interval between samples (default 1 minute).
	Interval time.Duration
	// Retention of history (default 14 days).
	Retention time.Duration
	// MaxSeries bounds the number of series kept (default 500); series
	// beyond it are not recorded and are counted in Dropped.
	MaxSeries int
	// Prefix selects the metric families kept (default "sluice_").
	Prefix string
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Retention <= 0 {
		o.Retention = 14 * 24 * time.Hour
	}
	if o.MaxSeries <= 0 {
		o.MaxSeries = 500
	}
	if o.Prefix == "" {
		o.Prefix = "sluice_"
	}
}

// Ring is the in-process time-series store.
type Ring struct {
	g    prometheus.Gatherer
	opts Options
	size int // slots

	mu      sync.RWMutex
	times   []int64 // unix nanoseconds per slot, 0 = never sampled
	next    int     // slot the next sample goes to
	series  map[string]*series
	dropped int
}

type series struct {
	name    string
	labels  map[string]string
	counter bool
	vals    []float32
}

// NewRing returns an empty ring over a gatherer.
func NewRing(g prometheus.Gatherer, o Options) *Ring {
	o.defaults()
	size := int(o.Retention / o.Interval)
	if size < 2 {
		size = 2
	}
	return &Ring{g: g, opts: o, size: size, times: make([]int64, size), series: map[string]*series{}}
}

// Interval returns the sampling interval.
func (r *Ring) Interval() time.Duration { return r.opts.Interval }

// Dropped returns how many series were not kept for lack of room.
func (r *Ring) Dropped() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.dropped
}

func seriesKey(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		fmt.Fprintf(&b, "|%s=%s", k, labels[k])
	}
	return b.String()
}

// Sample gathers the registry once and records the values at now.
func (r *Ring) Sample(now time.Time) error {
	fams, err := r.g.Gather()
	if err != nil && len(fams) == 0 {
		return fmt.Errorf("monitor: gathering: %w", err)
	}
	type point struct {
		name    string
		labels  map[string]string
		counter bool
		v       float64
	}
	var pts []point
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, r.opts.Prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				pts = append(pts, point{name, labels, true, m.GetCounter().GetValue()})
			case dto.MetricType_GAUGE:
				pts = append(pts, point{name, labels, false, m.GetGauge().GetValue()})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				pts = append(pts, point{name + "_sum", labels, true, h.GetSampleSum()}, point{name + "_count", labels, true, float64(h.GetSampleCount())})
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				pts = append(pts, point{name + "_sum", labels, true, s.GetSampleSum()}, point{name + "_count", labels, true, float64(s.GetSampleCount())})
			case dto.MetricType_UNTYPED:
				pts = append(pts, point{name, labels, false, m.GetUntyped().GetValue()})
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	slot := r.next
	r.next = (r.next + 1) % r.size
	r.times[slot] = now.UnixNano()
	for _, s := range r.series {
		s.vals[slot] = float32(math.NaN())
	}
	for _, p := range pts {
		key := seriesKey(p.name, p.labels)
		s, ok := r.series[key]
		if !ok {
			if len(r.series) >= r.opts.MaxSeries {
				r.dropped++
				continue
			}
			s = &series{name: p.name, labels: p.labels, counter: p.counter, vals: make([]float32, r.size)}
			for i := range s.vals {
				s.vals[i] = float32(math.NaN())
			}
			r.series[key] = s
		}
		s.vals[slot] = float32(p.v)
	}
	return nil
}

// Run samples every interval until ctx ends.
func (r *Ring) Run(ctx context.Context, onSample func(time.Time)) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := r.Sample(now); err == nil && onSample != nil {
				onSample(now)
			}
		}
	}
}

// Query selects series and a time window.
type Query struct {
	// Name is the series name (histograms: name_sum, name_count).
	Name string
	// Labels must all match (a subset of the series' labels).
	Labels map[string]string
	// Since and Until bound the window (zero: all history, now).
	Since, Until time.Time
	// Rate turns counter values into per-second rates between samples.
	Rate bool
}

// Point is one sample.
type Point struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// Series is a queried series.
type Series struct {
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels"`
	Counter bool              `json:"counter"`
	Points  []Point           `json:"points"`
}

// ErrUnknownSeries means no series has the queried name.
var ErrUnknownSeries = errors.New("monitor: no such series")

// Query returns the matching series with their points in time order.
func (r *Ring) Query(q Query) ([]Series, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	order := make([]int, 0, r.size)
	for i := range r.size {
		slot := (r.next + i) % r.size
		t := r.times[slot]
		if t == 0 || (!q.Since.IsZero() && t < q.Since.UnixNano()) || (!q.Until.IsZero() && t > q.Until.UnixNano()) {
			continue
		}
		order = append(order, slot)
	}
	var out []Series
	for _, s := range r.series {
		if s.name != q.Name || !matches(s.labels, q.Labels) {
			continue
		}
		ser := Series{Name: s.name, Labels: s.labels, Counter: s.counter}
		var prev float64
		var prevT int64
		for _, slot := range order {
			v := float64(s.vals[slot])
			if math.IsNaN(v) {
				prevT = 0
				continue
			}
			t := r.times[slot]
			if q.Rate && s.counter {
				if prevT == 0 || v < prev {
					prev, prevT = v, t
					continue
				}
				rate := (v - prev) / time.Duration(t-prevT).Seconds()
				prev, prevT = v, t
				v = rate
			}
			ser.Points = append(ser.Points, Point{Time: time.Unix(0, t).UTC(), Value: v})
		}
		out = append(out, ser)
	}
	if len(out) == 0 {
		if !r.hasName(q.Name) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownSeries, q.Name)
		}
	}
	slices.SortFunc(out, func(a, b Series) int {
		return strings.Compare(seriesKey(a.Name, a.Labels), seriesKey(b.Name, b.Labels))
	})
	return out, nil
}

func (r *Ring) hasName(name string) bool {
	for _, s := range r.series {
		if s.name == name {
			return true
		}
	}
	return false
}

// Names lists the recorded series names.
func (r *Ring) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]bool{}
	for _, s := range r.series {
		seen[s.name] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
