package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Policy is a volume's snapshot schedule and retention. Snapshots are taken
// every IntervalHours hours starting at StartHour (UTC) each day, like AWS
// Data Lifecycle Manager: interval 12 with start hour 9 gives 09:00 and
// 21:00. Retention applies to scheduled snapshots only: a snapshot is kept
// while it is among the KeepLast newest or younger than KeepDays days (when
// both are set, either keeps it; when neither is, all are kept).
type Policy struct {
	IntervalHours int `json:"interval_hours"`
	StartHour     int `json:"start_hour"`
	KeepLast      int `json:"keep_last"`
	KeepDays      int `json:"keep_days"`
}

// DefaultPolicy is a daily snapshot at 00:00 UTC keeping the last 7.
func DefaultPolicy() Policy { return Policy{IntervalHours: 24, KeepLast: 7} }

// Validate checks the ranges.
func (p Policy) Validate() error {
	switch {
	case p.IntervalHours < 1 || p.IntervalHours > 24:
		return fmt.Errorf("schedule interval %dh (want 1-24): %w", p.IntervalHours, ErrInvalid)
	case p.StartHour < 0 || p.StartHour > 23:
		return fmt.Errorf("schedule start hour %d (want 0-23): %w", p.StartHour, ErrInvalid)
	case p.KeepLast < 0 || p.KeepDays < 0:
		return fmt.Errorf("negative retention: %w", ErrInvalid)
	}
	return nil
}

// Next returns the first scheduled time strictly after t: the times
// StartHour + k×IntervalHours (k ≥ 0) of each UTC day. Before StartHour on
// a day, the last slots of the previous day's sequence apply when they fall
// past midnight (e.g. start 20, interval 8: 20:00, 04:00, 12:00).
func (p Policy) Next(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	var best time.Time
	for d := -1; d <= 1; d++ {
		base := day.AddDate(0, 0, d).Add(time.Duration(p.StartHour) * time.Hour)
		for k := 0; k*p.IntervalHours < 24; k++ {
			s := base.Add(time.Duration(k*p.IntervalHours) * time.Hour)
			if s.After(t) && (best.IsZero() || s.Before(best)) {
				best = s
			}
		}
	}
	return best
}

// Clock is the scheduler's time source, injected so tests control it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

// Now returns the wall-clock time.
func (systemClock) Now() time.Time { return time.Now() }

// After waits for d on a real timer.
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SystemClock returns the real clock.
func SystemClock() Clock { return systemClock{} }

// SnapshotFunc takes one snapshot of a volume with the given tags (the
// daemon binds it to the volume's Snapshot method).
type SnapshotFunc func(ctx context.Context, description string, tags map[string]string) (Info, error)

// Retainer is the part of Catalog retention needs.
type Retainer interface {
	List(ctx context.Context, f ListFilter) ([]Info, error)
	Delete(ctx context.Context, id string) error
}

// TagSchedule marks snapshots the scheduler took; retention only deletes
// those.
const TagSchedule = "sluice.schedule"

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	// Clock defaults to SystemClock().
	Clock Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
}

type scheduled struct {
	p    Policy
	fn   SnapshotFunc
	next time.Time
	last RunResult
}

// RunResult is the outcome of a volume's last scheduled run.
type RunResult struct {
	At       time.Time `json:"at"`
	Snapshot string    `json:"snapshot,omitempty"`
	Error    string    `json:"error,omitempty"`
	Deleted  []string  `json:"deleted,omitempty"`
}

// Scheduler takes scheduled snapshots and applies retention. The daemon
// registers volumes with Set and runs Run in a goroutine.
type Scheduler struct {
	cat   Retainer
	clock Clock
	log   *slog.Logger

	mu    sync.Mutex
	vols  map[string]*scheduled
	wake  chan struct{}
	count int
}

// NewScheduler returns a scheduler whose retention deletes through cat.
func NewScheduler(cat Retainer, o SchedulerOptions) *Scheduler {
	if o.Clock == nil {
		o.Clock = SystemClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{cat: cat, clock: o.Clock, log: o.Logger, vols: map[string]*scheduled{}, wake: make(chan struct{}, 1)}
}

// Set installs or replaces a volume's policy; the next run is computed from
// now.
func (s *Scheduler) Set(volume string, p Policy, fn SnapshotFunc) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("schedule of %s: no snapshot function: %w", volume, ErrInvalid)
	}
	s.mu.Lock()
	s.vols[volume] = &scheduled{p: p, fn: fn, next: p.Next(s.clock.Now())}
	s.mu.Unlock()
	s.poke()
	return nil
}

// Remove stops scheduling a volume.
func (s *Scheduler) Remove(volume string) {
	s.mu.Lock()
	delete(s.vols, volume)
	s.mu.Unlock()
	s.poke()
}

// ScheduleStatus describes one volume's schedule.
type ScheduleStatus struct {
	Volume  string    `json:"volume"`
	Policy  Policy    `json:"policy"`
	NextRun time.Time `json:"next_run"`
	LastRun RunResult `json:"last_run"`
}

// Status returns every volume's schedule, sorted by volume.
func (s *Scheduler) Status() []ScheduleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ScheduleStatus, 0, len(s.vols))
	for v, sc := range s.vols {
		out = append(out, ScheduleStatus{Volume: v, Policy: sc.p, NextRun: sc.next, LastRun: sc.last})
	}
	slices.SortFunc(out, func(a, b ScheduleStatus) int {
		if a.Volume < b.Volume {
			return -1
		}
		if a.Volume > b.Volume {
			return 1
		}
		return 0
	})
	return out
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Runs returns how many scheduled runs have finished (tests).
func (s *Scheduler) Runs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Run takes snapshots when they are due until ctx ends; it returns
// ctx.Err(). Runs missed while the daemon was down are not caught up: the
// next slot after start is the first.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		now := s.clock.Now()
		s.RunDue(ctx, now)
		wait := time.Duration(-1)
		s.mu.Lock()
		for _, sc := range s.vols {
			if d := sc.next.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
		s.mu.Unlock()
		var timer <-chan time.Time
		if wait >= 0 {
			timer = s.clock.After(max(wait, 0))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-timer:
		}
	}
}

// RunDue runs every volume whose next run is at or before now, one after
// the other, then applies its retention.
func (s *Scheduler) RunDue(ctx context.Context, now time.Time) {
	s.mu.Lock()
	var due []string
	for v, sc := range s.vols {
		if !sc.next.After(now) {
			due = append(due, v)
		}
	}
	s.mu.Unlock()
	slices.Sort(due)
	for _, v := range due {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		sc, ok := s.vols[v]
		s.mu.Unlock()
		if !ok {
			continue
		}
		res := s.runOne(ctx, v, sc, now)
		s.mu.Lock()
		if cur, ok := s.vols[v]; ok && cur == sc {
			sc.last = res
			sc.next = sc.p.Next(now)
		}
		s.count++
		s.mu.Unlock()
	}
}

func (s *Scheduler) runOne(ctx context.Context, volume string, sc *scheduled, now time.Time) RunResult {
	res := RunResult{At: now}
	tags := map[string]string{TagSchedule: fmt.Sprintf("%dh@%02d", sc.p.IntervalHours, sc.p.StartHour)}
	in, err := sc.fn(ctx, "scheduled snapshot", tags)
	res.Snapshot = in.ID
	if err != nil {
		res.Error = err.Error()
		s.log.Warn("scheduled snapshot failed", "volume", volume, "err", err)
		return res
	}
	s.log.Info("scheduled snapshot", "volume", volume, "id", in.ID)
	deleted, err := s.Prune(ctx, volume, sc.p, now)
	res.Deleted = deleted
	if err != nil {
		res.Error = "retention: " + err.Error()
		s.log.Warn("snapshot retention failed", "volume", volume, "err", err)
	}
	return res
}

// Prune applies p's retention to volume's scheduled snapshots at time now
// and returns the ids it deleted. Failed scheduled snapshots older than the
// newest completed one are deleted too.
func (s *Scheduler) Prune(ctx context.Context, volume string, p Policy, now time.Time) ([]string, error) {
	infos, err := s.cat.List(ctx, ListFilter{Volume: volume})
	if err != nil {
		return nil, err
	}
	var sched []Info
	for _, in := range infos {
		if _, ok := in.Tags[TagSchedule]; ok {
			sched = append(sched, in)
		}
	}
	// Newest first.
	slices.Reverse(sched)
	var doomed []string
	rank := 0
	var newestDone time.Time
	for _, in := range sched {
		switch in.Status {
		case StatusCompleted:
			if newestDone.IsZero() {
				newestDone = in.Created
			}
			keep := p.KeepLast == 0 && p.KeepDays == 0
			if p.KeepLast > 0 && rank < p.KeepLast {
				keep = true
			}
			if p.KeepDays > 0 && now.Sub(in.Created) < time.Duration(p.KeepDays)*24*time.Hour {
				keep = true
			}
			rank++
			if !keep {
				doomed = append(doomed, in.ID)
			}
		case StatusError:
			if !newestDone.IsZero() && in.Created.Before(newestDone) {
				doomed = append(doomed, in.ID)
			}
		}
	}
	var deleted []string
	for _, id := range doomed {
		if err := s.cat.Delete(ctx, id); err != nil {
			return deleted, err
		}
		deleted = append(deleted, id)
	}
	return deleted, nil
}
