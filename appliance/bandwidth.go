package appliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sluicegw/sluice/control"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/state"
)

// bandwidth owns the object-store limiter: base limits (the bandwidth
// setting) and a weekly schedule of intervals that replace them while they
// are in force (UTC).
type bandwidth struct {
	lim   *objstore.Limiter
	state *state.DB

	mu             sync.Mutex
	baseUp, baseDn int64
	sched          []api.BandwidthInterval
	active         int
}

var (
	_ control.BandwidthLimiter = (*bandwidth)(nil)
	_ control.GatewaySettings  = (*bandwidth)(nil)
)

func newBandwidth(lim *objstore.Limiter, db *state.DB) (*bandwidth, error) {
	up, down := lim.Limits()
	b := &bandwidth{lim: lim, state: db, baseUp: up, baseDn: down, active: -1}
	bs, err := state.Get[api.BandwidthSchedule](db, settingsCollection, "bandwidth-schedule")
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, err
	}
	b.sched = bs.Intervals
	b.apply(time.Now())
	return b, nil
}

// Limits returns the base limits.
func (b *bandwidth) Limits() (int64, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.baseUp, b.baseDn
}

// SetLimits changes the base limits.
func (b *bandwidth) SetLimits(up, down int64) {
	b.mu.Lock()
	b.baseUp, b.baseDn = up, down
	b.mu.Unlock()
	b.apply(time.Now())
}

// parseHHMM returns minutes after midnight; "24:00" is the end of the day.
func parseHHMM(s string) (int, error) {
	if s == "24:00" {
		return 24 * 60, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// inForce reports whether the interval covers the minute of the week.
func inForce(iv api.BandwidthInterval, now time.Time) bool {
	now = now.UTC()
	if len(iv.DaysOfWeek) > 0 && !slices.Contains(iv.DaysOfWeek, int(now.Weekday())) {
		return false
	}
	start, err1 := parseHHMM(iv.Start)
	end, err2 := parseHHMM(iv.End)
	if err1 != nil || err2 != nil {
		return false
	}
	m := now.Hour()*60 + now.Minute()
	return m >= start && m < end
}

// apply puts the limits in force at now into the limiter.
func (b *bandwidth) apply(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.active = -1
	up, down := b.baseUp, b.baseDn
	for i, iv := range b.sched {
		if inForce(iv, now) {
			b.active, up, down = i, iv.UploadBytesPerSec, iv.DownloadBytesPerSec
			break
		}
	}
	b.lim.SetLimits(up, down)
}

func validateSchedule(bs api.BandwidthSchedule) error {
	if len(bs.Intervals) > 20 {
		return errors.New("at most 20 bandwidth intervals")
	}
	type span struct{ day, start, end int }
	var spans []span
	for i, iv := range bs.Intervals {
		start, err := parseHHMM(iv.Start)
		if err != nil {
			return fmt.Errorf("interval %d: %w", i, err)
		}
		end, err := parseHHMM(iv.End)
		if err != nil {
			return fmt.Errorf("interval %d: %w", i, err)
		}
		if end <= start {
			return fmt.Errorf("interval %d: end %s is not after start %s", i, iv.End, iv.Start)
		}
		if iv.UploadBytesPerSec < 0 || iv.DownloadBytesPerSec < 0 {
			return fmt.Errorf("interval %d: limits must be 0 (unlimited) or positive", i)
		}
		days := iv.DaysOfWeek
		if len(days) == 0 {
			days = []int{0, 1, 2, 3, 4, 5, 6}
		}
		for _, d := range days {
			if d < 0 || d > 6 {
				return fmt.Errorf("interval %d: day %d (want 0 = Sunday to 6)", i, d)
			}
			for _, o := range spans {
				if o.day == d && start < o.end && o.start < end {
					return fmt.Errorf("interval %d overlaps another on day %d", i, d)
				}
			}
			spans = append(spans, span{d, start, end})
		}
	}
	return nil
}

// BandwidthSchedule implements control.GatewaySettings.
func (b *bandwidth) BandwidthSchedule(context.Context) (api.BandwidthSchedule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ivs := slices.Clone(b.sched)
	if ivs == nil {
		ivs = []api.BandwidthInterval{}
	}
	return api.BandwidthSchedule{Intervals: ivs, Active: b.active}, nil
}

// SetBandwidthSchedule implements control.GatewaySettings.
func (b *bandwidth) SetBandwidthSchedule(ctx context.Context, bs api.BandwidthSchedule) (api.BandwidthSchedule, error) {
	if err := validateSchedule(bs); err != nil {
		return api.BandwidthSchedule{}, control.BadRequest(err)
	}
	bs.Active = 0
	if err := b.state.Update(func(tx *state.Tx) error { return tx.Put(settingsCollection, "bandwidth-schedule", bs) }); err != nil {
		return api.BandwidthSchedule{}, err
	}
	b.mu.Lock()
	b.sched = bs.Intervals
	b.mu.Unlock()
	b.apply(time.Now())
	return b.BandwidthSchedule(ctx)
}
