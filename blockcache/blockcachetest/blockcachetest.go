// Package blockcachetest holds the snapshot scenarios of stored volumes as
// reusable test functions: they drive a block device through the same
// calls the iSCSI target makes, take snapshots through a callback and
// compare each snapshot's restored image byte for byte with what the
// device held at the snapshot instant. blockcache's own tests run them on
// a volume directly; front-end and daemon tests run them through a LUN and
// the REST API.
package blockcachetest

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/snapshot"
)

// Device is the block-device side of a scenario (a subset of the SCSI
// BlockDevice contract).
type Device interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	Flush(ctx context.Context) error
	Size() int64
}

// Target is what a scenario works on.
type Target struct {
	// Dev is written and read by the scenario.
	Dev Device
	// Snapshot takes a snapshot of Dev and returns its entry once
	// completed.
	Snapshot func(ctx context.Context) (snapshot.Info, error)
	// Restore returns the whole image of a snapshot (a new volume's bytes,
	// a restored file's bytes).
	Restore func(ctx context.Context, id string) ([]byte, error)
	// Block is the write alignment to use (the logical block size of a
	// LUN); 0 means 512.
	Block int
}

// Fill fills p with a pattern: kind 0 random, 1 text-like, 2 zeros.
func Fill(r *rand.Rand, p []byte, kind int) {
	switch kind {
	case 0:
		for i := 0; i+8 <= len(p); i += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				p[i+k] = byte(v >> (8 * k))
			}
		}
	case 1:
		words := []string{"lorem ", "ipsum ", "sluice ", "gateway ", "block ", "\n", "snapshot ", "42 "}
		for i := 0; i < len(p); {
			i += copy(p[i:], words[r.IntN(len(words))])
		}
	default:
		clear(p)
	}
}

// FirstDiff returns the first offset where a and b differ, or -1.
func FirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// model is the device plus what it should hold.
type model struct {
	t    testing.TB
	tg   Target
	mu   sync.Mutex
	want []byte
}

func (m *model) write(ctx context.Context, r *rand.Rand, off int64, n int, kind int) {
	m.t.Helper()
	p := make([]byte, n)
	Fill(r, p, kind)
	if err := m.tg.Dev.WriteAt(ctx, p, off, false); err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	copy(m.want[off:], p)
	m.mu.Unlock()
}

func (m *model) image() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.want)
}

func (tg Target) block() int64 {
	if tg.Block > 0 {
		return int64(tg.Block)
	}
	return 512
}

func readAll(ctx context.Context, t testing.TB, d Device) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	for off := int64(0); off < d.Size(); off += 1 << 20 {
		if err := d.ReadAt(ctx, b[off:min(off+1<<20, d.Size())], off); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// PointInTime writes patterns to a device that starts zeroed, snapshots,
// writes more (overwrites and new areas), snapshots again, and checks that
// each snapshot restores to exactly what the device held at its instant
// and that the device holds every write. It returns the two snapshots.
func PointInTime(t *testing.T, tg Target, seed uint64) (first, second snapshot.Info) {
	t.Helper()
	ctx := context.Background()
	size := tg.Dev.Size()
	bl := tg.block()
	m := &model{t: t, tg: tg, want: make([]byte, size)}
	r := rand.New(rand.NewPCG(seed, 0x5117))
	span := func() (int64, int) {
		off := r.Int64N(size/bl) * bl
		n := min(size-off, bl*int64(1+r.IntN(int(max(1, (256<<10)/bl)))))
		return off, int(n)
	}
	for k := 0; k < 24; k++ {
		off, n := span()
		m.write(ctx, r, off, n, k%3)
	}
	if err := tg.Dev.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want1 := m.image()
	first, err := tg.Snapshot(ctx)
	if err != nil {
		t.Fatalf("first snapshot: %v", err)
	}
	for k := 0; k < 12; k++ {
		off, n := span()
		m.write(ctx, r, off, n, k%2)
	}
	want2 := m.image()
	second, err = tg.Snapshot(ctx)
	if err != nil {
		t.Fatalf("second snapshot: %v", err)
	}
	if d := FirstDiff(readAll(ctx, t, tg.Dev), want2); d >= 0 {
		t.Fatalf("device differs from what was written at %d", d)
	}
	for _, c := range []struct {
		in   snapshot.Info
		want []byte
	}{{first, want1}, {second, want2}} {
		img, err := tg.Restore(ctx, c.in.ID)
		if err != nil {
			t.Fatalf("restore %s: %v", c.in.ID, err)
		}
		if d := FirstDiff(img, c.want); d >= 0 {
			t.Fatalf("snapshot %s differs from the device at its instant at byte %d", c.in.ID, d)
		}
	}
	return first, second
}

// WriteDuringSnapshot fills the device, then snapshots while another
// goroutine keeps writing distinct 4 KiB slots in a known order. The
// snapshot must hold exactly a prefix of that order (a point-in-time
// image) that includes every write acknowledged before the snapshot was
// requested, and the device must hold every write. slowDown, when set, is
// called once the writer is running (to slow the upload down, e.g. with
// store latency) and its result is called at the end.
func WriteDuringSnapshot(t *testing.T, tg Target, seed uint64, slowDown func() (undo func())) snapshot.Info {
	t.Helper()
	ctx := context.Background()
	size := tg.Dev.Size()
	m := &model{t: t, tg: tg, want: make([]byte, size)}
	r := rand.New(rand.NewPCG(seed, 0x5118))
	for off := int64(0); off < size; off += 1 << 20 {
		m.write(ctx, r, off, int(min(1<<20, size-off)), int(off>>20)%3)
	}
	base := m.image()
	slots := r.Perm(int(size / 4096))
	writes := make([][]byte, len(slots))
	for i := range writes {
		writes[i] = make([]byte, 4096)
		Fill(r, writes[i], 0)
	}
	var acked atomic.Int64
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for i := range slots {
			select {
			case <-stop:
				return
			default:
			}
			if err := tg.Dev.WriteAt(ctx, writes[i], int64(slots[i])*4096, false); err != nil {
				errc <- err
				return
			}
			acked.Store(int64(i + 1))
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for acked.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	if slowDown != nil {
		defer slowDown()()
	}
	before := acked.Load()
	snap, err := tg.Snapshot(ctx)
	close(stop)
	if werr := <-errc; werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	total := acked.Load()
	img, err := tg.Restore(ctx, snap.ID)
	if err != nil {
		t.Fatalf("restore %s: %v", snap.ID, err)
	}
	k := int64(0)
	for ; k < total; k++ {
		off := int64(slots[k]) * 4096
		if !bytes.Equal(img[off:off+4096], writes[k]) {
			break
		}
	}
	if k < before {
		t.Fatalf("snapshot misses write %d, acknowledged before it was requested (%d)", k, before)
	}
	exp := bytes.Clone(base)
	for i := int64(0); i < k; i++ {
		copy(exp[int64(slots[i])*4096:], writes[i])
	}
	if d := FirstDiff(img, exp); d >= 0 {
		t.Fatalf("snapshot is not a point-in-time image: differs at %d (prefix of %d writes; %d before, %d in all)", d, k, before, total)
	}
	cur := bytes.Clone(base)
	for i := int64(0); i < total; i++ {
		copy(cur[int64(slots[i])*4096:], writes[i])
	}
	if d := FirstDiff(readAll(ctx, t, tg.Dev), cur); d >= 0 {
		t.Fatalf("device lost a write at %d", d)
	}
	t.Logf("snapshot holds %d writes: %d acknowledged before it, %d in all", k, before, total)
	return snap
}
