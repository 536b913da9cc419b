package snapshot

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestPolicyNext(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		p    Policy
		now  string
		want string
	}{
		{Policy{IntervalHours: 24, StartHour: 0}, "2026-01-01T10:00:00Z", "2026-01-02T00:00:00Z"},
		{Policy{IntervalHours: 24, StartHour: 3}, "2026-01-01T02:59:00Z", "2026-01-01T03:00:00Z"},
		{Policy{IntervalHours: 24, StartHour: 3}, "2026-01-01T03:00:00Z", "2026-01-02T03:00:00Z"},
		{Policy{IntervalHours: 12, StartHour: 9}, "2026-01-01T10:00:00Z", "2026-01-01T21:00:00Z"},
		{Policy{IntervalHours: 12, StartHour: 9}, "2026-01-01T22:00:00Z", "2026-01-02T09:00:00Z"},
		{Policy{IntervalHours: 1, StartHour: 0}, "2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z"},
		{Policy{IntervalHours: 8, StartHour: 20}, "2026-01-02T01:00:00Z", "2026-01-02T04:00:00Z"},
		{Policy{IntervalHours: 5, StartHour: 0}, "2026-01-01T21:00:00Z", "2026-01-02T00:00:00Z"},
	}
	for _, tc := range tests {
		if got := tc.p.Next(at(tc.now)); !got.Equal(at(tc.want)) {
			t.Errorf("%+v after %s: got %s, want %s", tc.p, tc.now, got, tc.want)
		}
	}
	for _, p := range []Policy{{IntervalHours: 0}, {IntervalHours: 25}, {IntervalHours: 1, StartHour: 24}, {IntervalHours: 1, KeepLast: -1}} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// fakeClock is a manually advanced Clock.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func TestSchedulerRunsAndPrunes(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	start := time.Date(2026, 3, 1, 0, 30, 0, 0, time.UTC)
	clock := newFakeClock(start)
	c := newTestCatalog(t, "", Options{Now: clock.Now})
	img := newMemImage(2*MinBlockSize, MinBlockSize)
	var mu sync.Mutex
	taken := 0
	snap := func(ctx context.Context, desc string, tags map[string]string) (Info, error) {
		mu.Lock()
		taken++
		n := taken
		mu.Unlock()
		if n == 3 {
			return Info{}, fmt.Errorf("simulated failure")
		}
		return c.Create(ctx, CreateRequest{Volume: "v", Size: 2 * MinBlockSize, BlockSize: MinBlockSize, Source: img, Description: desc, Tags: tags})
	}
	// A manual snapshot that retention must never touch.
	if _, err := c.Create(ctx, CreateRequest{Volume: "v", Size: 2 * MinBlockSize, BlockSize: MinBlockSize, Source: img}); err != nil {
		t.Fatal(err)
	}
	s := NewScheduler(c.Catalog, SchedulerOptions{Clock: clock})
	if err := s.Set("v", Policy{IntervalHours: 6, StartHour: 1, KeepLast: 2}, snap); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); len(st) != 1 || !st[0].NextRun.Equal(start.Add(30*time.Minute)) {
		t.Fatalf("status: %+v", st)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for k := 0; k < 6; k++ {
		// Move time in small steps until the next slot has run; the
		// scheduler may register its timer before or after a step.
		deadline := time.Now().Add(20 * time.Second)
		for s.Runs() < k+1 {
			if time.Now().After(deadline) {
				t.Fatalf("run %d did not happen", k+1)
			}
			clock.Advance(10 * time.Minute)
			time.Sleep(2 * time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("run: %v", err)
	}
	list, err := c.List(context.Background(), ListFilter{Volume: "v"})
	if err != nil {
		t.Fatal(err)
	}
	var sched, manual int
	for _, in := range list {
		if _, ok := in.Tags[TagSchedule]; ok {
			sched++
		} else {
			manual++
		}
	}
	if sched != 2 || manual != 1 {
		t.Fatalf("after 6 runs with keep-last 2: %d scheduled, %d manual", sched, manual)
	}
	st := s.Status()[0]
	if st.LastRun.Error != "" || st.LastRun.Snapshot == "" {
		t.Fatalf("last run: %+v", st.LastRun)
	}
}

func TestPruneKeepDays(t *testing.T) {
	ctx := ctxT(t)
	now := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	clock := now
	c := newTestCatalog(t, "", Options{Now: func() time.Time { return clock }})
	img := newMemImage(MinBlockSize, MinBlockSize)
	for d := 9; d >= 0; d-- {
		clock = now.AddDate(0, 0, -d)
		if _, err := c.Create(ctx, CreateRequest{Volume: "v", Size: MinBlockSize, BlockSize: MinBlockSize, Source: img, Tags: map[string]string{TagSchedule: "24h@00"}}); err != nil {
			t.Fatal(err)
		}
	}
	s := NewScheduler(c.Catalog, SchedulerOptions{})
	deleted, err := s.Prune(ctx, "v", Policy{IntervalHours: 24, KeepDays: 3, KeepLast: 1}, now.Add(time.Hour))
	if err != nil || len(deleted) != 7 {
		t.Fatalf("prune deleted %d: %v", len(deleted), err)
	}
}
