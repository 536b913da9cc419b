// Package events is the appliance's in-process publish/subscribe bus for
// typed events (file uploaded, snapshot completed, tape archived, alarm
// state changed, ...). Gateways publish; the audit trail, notifications and
// function hooks subscribe.
//
// Publish never blocks: each subscriber has a bounded queue, and an event
// that does not fit is dropped for that subscriber and counted, so a slow
// consumer can never stall the data path.
package events

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event types.
const (
	FileUploaded          = "file.uploaded"
	CacheRefreshCompleted = "cache.refresh_completed"
	SnapshotCompleted     = "snapshot.completed"
	SnapshotFailed        = "snapshot.failed"
	TapeArchived          = "tape.archived"
	TapeRetrieved         = "tape.retrieved"
	VolumeDegraded        = "volume.degraded"
	VolumeRecovered       = "volume.recovered"
	AlarmStateChanged     = "alarm.state_changed"
)

// Event is one thing that happened.
type Event struct {
	// Type is one of the constants above (or another dotted name).
	Type string `json:"type"`
	// Time is when it happened; Publish sets it when zero.
	Time time.Time `json:"time"`
	// Resource names what it happened to, e.g. "share/docs/a/b.txt",
	// "snapshot/snap-123", "tape/TST001".
	Resource string `json:"resource"`
	// Attrs carries details as strings (sizes, ids, states).
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Bus delivers events to subscribers. The zero value is not usable; use
// NewBus.
type Bus struct {
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
}

// NewBus returns a bus with no subscribers.
func NewBus() *Bus { return &Bus{subs: map[*Subscription]struct{}{}} }

// Subscription receives events of chosen types.
type Subscription struct {
	bus     *Bus
	ch      chan Event
	types   map[string]bool
	dropped atomic.Int64
	once    sync.Once
}

// Subscribe returns a subscription with a queue of buffer events for the
// given types (none: every type). Close it when done.
func (b *Bus) Subscribe(buffer int, types ...string) *Subscription {
	if buffer <= 0 {
		buffer = 1024
	}
	s := &Subscription{bus: b, ch: make(chan Event, buffer)}
	if len(types) > 0 {
		s.types = make(map[string]bool, len(types))
		for _, t := range types {
			s.types[t] = true
		}
	}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// C returns the channel events arrive on; it is closed by Close.
func (s *Subscription) C() <-chan Event { return s.ch }

// Dropped returns how many events did not fit the queue.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// Close unsubscribes and closes the channel.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		close(s.ch)
		s.bus.mu.Unlock()
	})
}

// Publish delivers e to every matching subscriber without blocking.
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if s.types != nil && !s.types[e.Type] {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}
