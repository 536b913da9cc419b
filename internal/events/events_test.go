package events

import (
	"testing"
	"time"
)

func TestPublishSubscribe(t *testing.T) {
	b := NewBus()
	all := b.Subscribe(10)
	snaps := b.Subscribe(10, SnapshotCompleted, SnapshotFailed)
	b.Publish(Event{Type: FileUploaded, Resource: "share/a/x"})
	b.Publish(Event{Type: SnapshotCompleted, Resource: "snapshot/1", Attrs: map[string]string{"volume": "v"}})
	if e := <-all.C(); e.Type != FileUploaded || e.Time.IsZero() {
		t.Fatalf("first event %+v", e)
	}
	if e := <-all.C(); e.Type != SnapshotCompleted {
		t.Fatalf("second event %+v", e)
	}
	select {
	case e := <-snaps.C():
		if e.Type != SnapshotCompleted || e.Attrs["volume"] != "v" {
			t.Fatalf("filtered event %+v", e)
		}
	case <-time.After(time.Second):
		t.Fatal("no event")
	}
	select {
	case e := <-snaps.C():
		t.Fatalf("unexpected %+v", e)
	default:
	}
	all.Close()
	all.Close()
	if _, ok := <-all.C(); ok {
		t.Fatal("channel open after Close")
	}
	b.Publish(Event{Type: FileUploaded}) // no panic after a subscriber left
}

func TestSlowSubscriberNeverBlocks(t *testing.T) {
	b := NewBus()
	s := b.Subscribe(2)
	done := make(chan struct{})
	go func() {
		for range 1000 {
			b.Publish(Event{Type: FileUploaded})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}
	if s.Dropped() != 998 {
		t.Fatalf("dropped %d, want 998", s.Dropped())
	}
}
