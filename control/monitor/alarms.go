package monitor

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Alarm states, as CloudWatch names them.
const (
	StateOK               = "OK"
	StateAlarm            = "ALARM"
	StateInsufficientData = "INSUFFICIENT_DATA"
)

// Rule is a threshold alarm on one metric: ALARM when the statistic of
// every one of the last Periods periods breaches the threshold, OK when
// the last periods have data and do not all breach, INSUFFICIENT_DATA when
// any of them has no data.
type Rule struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Metric      string            `json:"metric"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Statistic is avg, min, max, sum or last over each period, across
	// every matching series.
	Statistic string `json:"statistic"`
	// Rate evaluates counters as per-second rates.
	Rate bool `json:"rate,omitempty"`
	// Comparison is >, >=, < or <=.
	Comparison string  `json:"comparison"`
	Threshold  float64 `json:"threshold"`
	// Periods is how many consecutive periods must breach (default 1).
	Periods int `json:"periods"`
	// PeriodSeconds is the length of one period (default: the sampling
	// interval).
	PeriodSeconds int `json:"period_seconds,omitempty"`
}

var ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Validate checks a rule and fills defaults.
func (r *Rule) Validate() error {
	var errs []error
	if !ruleName.MatchString(r.Name) {
		errs = append(errs, fmt.Errorf("alarm name %q: 1-128 letters, digits, '_', '.', '-'", r.Name))
	}
	if r.Metric == "" {
		errs = append(errs, errors.New("an alarm needs a metric"))
	}
	if r.Statistic == "" {
		r.Statistic = "avg"
	}
	switch r.Statistic {
	case "avg", "min", "max", "sum", "last":
	default:
		errs = append(errs, fmt.Errorf("statistic %q: want avg, min, max, sum or last", r.Statistic))
	}
	switch r.Comparison {
	case ">", ">=", "<", "<=":
	default:
		errs = append(errs, fmt.Errorf("comparison %q: want >, >=, < or <=", r.Comparison))
	}
	if r.Periods == 0 {
		r.Periods = 1
	}
	if r.Periods < 1 || r.Periods > 1440 {
		errs = append(errs, errors.New("periods: 1 to 1440"))
	}
	if r.PeriodSeconds < 0 || r.PeriodSeconds > 86400 {
		errs = append(errs, errors.New("period_seconds: 0 (the sampling interval) to 86400"))
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
		errs = append(errs, errors.New("threshold must be a finite number"))
	}
	return errors.Join(errs...)
}

// State is an alarm's current state.
type State struct {
	Name   string    `json:"name"`
	State  string    `json:"state"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Value is the statistic of the latest period (NaN-free; 0 when none).
	Value float64 `json:"value"`
}

// Alarm is a rule with its state.
type Alarm struct {
	Rule  Rule  `json:"rule"`
	State State `json:"state"`
}

// Alarms evaluates rules against a Ring.
type Alarms struct {
	ring     *Ring
	onChange func(rule Rule, from, to State)

	mu     sync.Mutex
	alarms map[string]*Alarm
}

// NewAlarms returns an evaluator; onChange (optional) is called for every
// state change, outside the evaluator's lock.
func NewAlarms(ring *Ring, onChange func(rule Rule, from, to State)) *Alarms {
	return &Alarms{ring: ring, onChange: onChange, alarms: map[string]*Alarm{}}
}

// Put adds or replaces a rule (state starts INSUFFICIENT_DATA).
func (a *Alarms) Put(r Rule, now time.Time) error {
	if err := r.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.alarms[r.Name] = &Alarm{Rule: r, State: State{Name: r.Name, State: StateInsufficientData, Reason: "not evaluated yet", Since: now}}
	return nil
}

// Delete removes a rule and reports whether it existed.
func (a *Alarms) Delete(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.alarms[name]
	delete(a.alarms, name)
	return ok
}

// Get returns one alarm.
func (a *Alarms) Get(name string) (Alarm, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.alarms[name]
	if !ok {
		return Alarm{}, false
	}
	return *al, true
}

// List returns every alarm by name.
func (a *Alarms) List() []Alarm {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Alarm, 0, len(a.alarms))
	for _, al := range a.alarms {
		out = append(out, *al)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule.Name < out[j].Rule.Name })
	return out
}

type change struct {
	rule     Rule
	from, to State
}

// Evaluate recomputes every alarm at now.
func (a *Alarms) Evaluate(now time.Time) {
	a.mu.Lock()
	var changes []change
	for _, al := range a.alarms {
		st := a.evaluate(al.Rule, now)
		if st.State != al.State.State {
			st.Since = now
			changes = append(changes, change{al.Rule, al.State, st})
			al.State = st
		} else {
			al.State.Value, al.State.Reason = st.Value, st.Reason
		}
	}
	a.mu.Unlock()
	if a.onChange != nil {
		for _, c := range changes {
			a.onChange(c.rule, c.from, c.to)
		}
	}
}

func (a *Alarms) evaluate(r Rule, now time.Time) State {
	period := time.Duration(r.PeriodSeconds) * time.Second
	if period <= 0 {
		period = a.ring.Interval()
	}
	since := now.Add(-time.Duration(r.Periods) * period)
	series, err := a.ring.Query(Query{Name: r.Metric, Labels: r.Labels, Since: since, Until: now, Rate: r.Rate})
	if err != nil || len(series) == 0 {
		return State{Name: r.Name, State: StateInsufficientData, Reason: "no data for " + r.Metric}
	}
	buckets := make([][]float64, r.Periods)
	for _, s := range series {
		for _, p := range s.Points {
			// Periods end at now: the latest is (now-period, now].
			i := r.Periods - 1 - int(now.Sub(p.Time)/period)
			if i >= 0 && i < r.Periods {
				buckets[i] = append(buckets[i], p.Value)
			}
		}
	}
	breaches := 0
	var last float64
	for i, b := range buckets {
		if len(b) == 0 {
			return State{Name: r.Name, State: StateInsufficientData, Reason: fmt.Sprintf("no data in period %d of %d", i+1, r.Periods)}
		}
		last = statistic(r.Statistic, b)
		if breach(r.Comparison, last, r.Threshold) {
			breaches++
		}
	}
	if breaches == r.Periods {
		return State{Name: r.Name, State: StateAlarm, Value: last,
			Reason: fmt.Sprintf("%s %s of %s was %s %g in %d of %d periods", r.Statistic, rateWord(r), r.Metric, r.Comparison, r.Threshold, breaches, r.Periods)}
	}
	return State{Name: r.Name, State: StateOK, Value: last,
		Reason: fmt.Sprintf("%s %s of %s breached %s %g in %d of %d periods", r.Statistic, rateWord(r), r.Metric, r.Comparison, r.Threshold, breaches, r.Periods)}
}

func rateWord(r Rule) string {
	if r.Rate {
		return "rate"
	}
	return "value"
}

func statistic(stat string, v []float64) float64 {
	switch stat {
	case "min":
		m := v[0]
		for _, x := range v {
			m = math.Min(m, x)
		}
		return m
	case "max":
		m := v[0]
		for _, x := range v {
			m = math.Max(m, x)
		}
		return m
	case "sum":
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s
	case "last":
		return v[len(v)-1]
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func breach(cmp string, v, th float64) bool {
	switch cmp {
	case ">":
		return v > th
	case ">=":
		return v >= th
	case "<":
		return v < th
	case "<=":
		return v <= th
	}
	return false
}
