package blockcachetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/snapshot"
)

// Volume is a block device with deallocation: the contract the concurrent
// model test drives (the SCSI BlockDevice plus Unmapper).
type Volume interface {
	Device
	Unmap(ctx context.Context, off, length int64) error
}

// Chaos is a disturbance the model test applies now and then while the
// workload runs: an eviction, an object-store fault, a slow store.
type Chaos struct {
	// Name says what it does (in failure messages).
	Name string
	// Apply starts the disturbance and returns the function that ends it
	// (nil when it is instant, like an eviction).
	Apply func(ctx context.Context, r *rand.Rand) (undo func())
	// ReadsMayFail: while it is active, reads may fail (a failing fetch);
	// they never may return wrong data.
	ReadsMayFail bool
}

// StressTarget is what the concurrent model test works on.
type StressTarget struct {
	// Dev is read, written, unmapped and flushed concurrently.
	Dev Volume
	// BlockSize is the volume's chunk size: writes are aimed at, inside
	// and across chunk boundaries.
	BlockSize int
	// Snapshot, when set, takes a snapshot while the workload runs; with
	// Restore set, each snapshot's image is checked.
	Snapshot func(ctx context.Context) (snapshot.Info, error)
	Restore  func(ctx context.Context, id string) ([]byte, error)
	// Chaos lists the disturbances to apply.
	Chaos []Chaos
	// Reopen, when set, closes and reopens the device after the workload;
	// the reopened device must hold every acknowledged write.
	Reopen func(ctx context.Context) (Volume, error)
}

// StressConfig bounds a run. Zero fields take the defaults shown.
type StressConfig struct {
	// Seed of the run (default from SLUICE_STRESS_SEED, else 1; the
	// value "random" there picks one and logs it).
	Seed uint64
	// Duration of the workload (default from SLUICE_STRESS_TIME, else
	// 5s).
	Duration time.Duration
	// Workers issue random operations concurrently (default 8), beside
	// one sequential reader (read-ahead) and the chaos loop.
	Workers int
}

// StressEnv fills a StressConfig from SLUICE_STRESS_SEED and
// SLUICE_STRESS_TIME, for long runs with random seeds:
//
//	SLUICE_STRESS_SEED=random SLUICE_STRESS_TIME=10m go test ./blockcache -run Stress
func StressEnv(t testing.TB, def StressConfig) StressConfig {
	t.Helper()
	switch s := os.Getenv("SLUICE_STRESS_SEED"); s {
	case "":
	case "random":
		def.Seed = rand.Uint64()
	default:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_STRESS_SEED=%q: %v", s, err)
		}
		def.Seed = n
	}
	if s := os.Getenv("SLUICE_STRESS_TIME"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SLUICE_STRESS_TIME=%q: %v", s, err)
		}
		def.Duration = d
	}
	return def
}

// Byte values: every byte a write stores is a function of the write's id
// and the byte's offset, so a read can tell which write produced each
// byte it returns. Write 0 is the volume's initial zeros; unmaps and
// zero writes store zeros too.
const (
	kindRandom = iota // mixed bytes
	kindSame          // one 512-byte pattern repeated (WRITE SAME)
	kindZero          // zeros (WRITE SAME of zeros, UNMAP)
)

type wr struct {
	id       uint32
	off, end int64
	kind     int
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// value is the byte write w stores at off.
func (w *wr) value(off int64) byte {
	switch w.kind {
	case kindZero:
		return 0
	case kindSame:
		off %= 512
	}
	return byte(mix(uint64(w.id)<<40^uint64(off>>3)) >> (8 * (off & 7)))
}

func (w *wr) fill(p []byte) {
	for i := range p {
		p[i] = w.value(w.off + int64(i))
	}
}

// oracle holds what every byte must read as: the last acknowledged write
// covering it, and the writes under way. Concurrent writes never overlap
// (the workload picks disjoint ranges), so each byte's writes are ordered.
type oracle struct {
	mu     sync.Mutex
	acked  []uint32 // write id per byte
	writes []*wr    // by id; writes[0] is the initial zeros
	active map[uint32]*wr
}

// begin registers a write of [off, end) unless it overlaps one under way.
func (o *oracle) begin(off, end int64, kind int) *wr {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, a := range o.active {
		if off < a.end && a.off < end {
			return nil
		}
	}
	w := &wr{id: uint32(len(o.writes)), off: off, end: end, kind: kind}
	o.writes = append(o.writes, w)
	o.active[w.id] = w
	return w
}

func (o *oracle) ack(w *wr) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := w.off; i < w.end; i++ {
		o.acked[i] = w.id
	}
	delete(o.active, w.id)
}

// window is what a read of [off, end) may return: per byte the write
// acknowledged last before it started, or any write under way then or
// started before it ended.
type window struct {
	off, end int64
	base     []uint32
	seq      uint32 // writes with id >= seq started after the read began
	active   []*wr
}

func (o *oracle) start(off, end int64) *window {
	o.mu.Lock()
	defer o.mu.Unlock()
	win := &window{off: off, end: end, base: append([]uint32(nil), o.acked[off:end]...), seq: uint32(len(o.writes))}
	for _, a := range o.active {
		if a.off < end && off < a.end {
			win.active = append(win.active, a)
		}
	}
	return win
}

// check returns a description of the first byte of p (read at win.off)
// that no allowed write produced.
func (o *oracle) check(win *window, p []byte) error {
	o.mu.Lock()
	writes := o.writes // entries below len are never changed
	o.mu.Unlock()
	later := writes[win.seq:]
	cands := win.active
	for _, w := range later {
		if w.off < win.end && win.off < w.end {
			cands = append(cands, w)
		}
	}
	for i, got := range p {
		x := win.off + int64(i)
		base := writes[win.base[i]]
		if got == base.value(x) {
			continue
		}
		ok := false
		for _, w := range cands {
			if w.off <= x && x < w.end && w.value(x) == got {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("byte %d reads %#02x: the last acknowledged write there (#%d [%d,%d) kind %d) stored %#02x; %d concurrent writes allow nothing else",
				x, got, base.id, base.off, base.end, base.kind, base.value(x), len(cands))
		}
	}
	return nil
}

// Stress runs the concurrent model test: cfg.Workers goroutines issue
// random reads, writes (aligned and unaligned, within a chunk and across
// chunks, random data, WRITE SAME patterns and zeros), unmaps and flushes,
// a sequential reader keeps read-ahead busy, snapshots are taken and
// restored, and the chaos hooks force evictions and store faults; every
// read and every snapshot image is checked against an oracle of
// acknowledged writes (a read may return what any concurrent write could
// have produced, never older data). At the end the whole device, and the
// reopened device when tg.Reopen is set, must hold exactly the
// acknowledged writes. The device must start zeroed.
func Stress(t *testing.T, tg StressTarget, cfg StressConfig) {
	t.Helper()
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	t.Logf("stress: seed %d, %v, %d workers (SLUICE_STRESS_SEED=%d reproduces)", cfg.Seed, cfg.Duration, cfg.Workers, cfg.Seed)
	size := tg.Dev.Size()
	o := &oracle{acked: make([]uint32, size), writes: []*wr{{kind: kindZero, end: size}}, active: map[uint32]*wr{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deadline := time.Now().Add(cfg.Duration)
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failure  error
		stats    struct{ reads, readErrs, writes, unmaps, flushes, snaps, snapErrs, chaos atomic.Int64 }
		// faulty counts the active chaos hooks that may fail reads; faultGen
		// moves whenever one starts, so a read can tell whether one was
		// active at any time during it.
		faulty   atomic.Int64
		faultGen atomic.Int64
		// anyChaos and chaosGen do the same for every hook: a snapshot
		// writes to the store, so any store fault may fail it.
		anyChaos atomic.Int64
		chaosGen atomic.Int64
	)
	fail := func(err error) {
		failOnce.Do(func() { failure = err; cancel() })
	}
	running := func() bool { return ctx.Err() == nil && time.Now().Before(deadline) }
	bs := int64(max(tg.BlockSize, 512))

	// pick returns a random range: aligned to sectors or not, inside a
	// chunk, on a chunk boundary or across several chunks.
	pick := func(r *rand.Rand) (int64, int64) {
		var off, n int64
		switch r.IntN(6) {
		case 0: // a whole chunk
			off, n = r.Int64N(size/bs)*bs, bs
		case 1: // sectors inside a chunk
			off = r.Int64N(size/512) * 512
			n = (1 + r.Int64N(bs/512)) * 512
		case 2: // across a chunk boundary
			b := 1 + r.Int64N(max(size/bs-1, 1))
			off = b*bs - (1+r.Int64N(bs/512))*512
			n = (1 + r.Int64N(2*bs/512)) * 512
		case 3: // unaligned bytes
			off = r.Int64N(size)
			n = 1 + r.Int64N(bs+bs/2)
		case 4: // several chunks
			off = r.Int64N(size/512) * 512
			n = (1 + r.Int64N(3*bs/512)) * 512
		default: // small
			off = r.Int64N(size / 512 * 512)
			n = 1 + r.Int64N(4096)
		}
		off = max(min(off, size-1), 0)
		return off, min(off+n, size)
	}

	read := func(r *rand.Rand, off, end int64) {
		gen, inFault := faultGen.Load(), faulty.Load() > 0
		win := o.start(off, end)
		p := make([]byte, end-off)
		err := tg.Dev.ReadAt(ctx, p, off)
		stats.reads.Add(1)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if inFault || faulty.Load() > 0 || faultGen.Load() != gen {
				stats.readErrs.Add(1)
				return
			}
			fail(fmt.Errorf("read [%d,%d) with no store fault: %w", off, end, err))
			return
		}
		if err := o.check(win, p); err != nil {
			fail(fmt.Errorf("read [%d,%d): %w", off, end, err))
		}
	}

	write := func(r *rand.Rand, off, end int64) {
		kind := kindRandom
		switch r.IntN(8) {
		case 0:
			kind = kindSame
		case 1:
			kind = kindZero
		}
		unmap := r.IntN(10) == 0
		if unmap {
			kind = kindZero
		}
		w := o.begin(off, end, kind)
		if w == nil {
			return // overlaps a write under way: pick again next time
		}
		var err error
		if unmap {
			err = tg.Dev.Unmap(ctx, off, end-off)
			stats.unmaps.Add(1)
		} else {
			p := make([]byte, end-off)
			w.fill(p)
			err = tg.Dev.WriteAt(ctx, p, off, r.IntN(16) == 0)
			stats.writes.Add(1)
		}
		if err != nil {
			// A failed write stays under way: its bytes may or may not
			// have landed, and no later write overlaps it.
			if ctx.Err() == nil {
				fail(fmt.Errorf("write #%d [%d,%d) kind %d unmap %v: %w", w.id, off, end, kind, unmap, err))
			}
			return
		}
		o.ack(w)
	}

	// burst writes disjoint pieces of one chunk from several goroutines
	// at once, the way a kernel initiator with a deep queue writes a file:
	// the pattern that lost writes to a chunk not yet in the cache.
	burst := func(r *rand.Rand) {
		c := r.Int64N(size / bs)
		k := 2 + r.IntN(7)
		piece := max(bs/int64(k)/512*512, 512)
		var bw sync.WaitGroup
		go1 := make(chan struct{})
		for j := range int64(k) {
			off := c*bs + j*piece
			end := min(off+piece-int64(r.IntN(2))*256, size)
			if off >= end {
				break
			}
			rj := rand.New(rand.NewPCG(r.Uint64(), uint64(j)))
			bw.Add(1)
			go func() {
				defer bw.Done()
				<-go1
				write(rj, off, end)
			}()
		}
		close(go1)
		bw.Wait()
	}

	for i := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			for running() {
				switch n := r.IntN(100); {
				case n < 45:
					off, end := pick(r)
					read(r, off, end)
				case n < 90:
					off, end := pick(r)
					write(r, off, end)
				case n < 98:
					burst(r)
				default:
					if err := tg.Dev.Flush(ctx); err != nil && ctx.Err() == nil {
						fail(fmt.Errorf("flush: %w", err))
					}
					stats.flushes.Add(1)
				}
			}
		}()
	}
	// A sequential reader, 128 KiB at a time, keeps read-ahead going.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(cfg.Seed, 1000))
		const step = 128 << 10
		for off := int64(0); running(); off = (off + step) % size {
			read(r, off, min(off+step, size))
		}
	}()
	if len(tg.Chaos) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.Seed, 2000))
			for running() {
				ch := tg.Chaos[r.IntN(len(tg.Chaos))]
				if ch.ReadsMayFail {
					faulty.Add(1)
					faultGen.Add(1)
				}
				anyChaos.Add(1)
				chaosGen.Add(1)
				undo := ch.Apply(ctx, r)
				stats.chaos.Add(1)
				sleep(ctx, time.Duration(r.IntN(50))*time.Millisecond)
				if undo != nil {
					undo()
				}
				if ch.ReadsMayFail {
					faulty.Add(-1)
				}
				anyChaos.Add(-1)
				sleep(ctx, time.Duration(r.IntN(100))*time.Millisecond)
			}
		}()
	}
	if tg.Snapshot != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.Seed, 3000))
			for running() {
				sleep(ctx, time.Duration(200+r.IntN(600))*time.Millisecond)
				if !running() {
					return
				}
				gen, inFault := chaosGen.Load(), anyChaos.Load() > 0
				win := o.start(0, size)
				info, err := tg.Snapshot(ctx)
				stats.snaps.Add(1)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if len(tg.Chaos) > 0 && (inFault || chaosGen.Load() != gen || anyChaos.Load() > 0 || errors.Is(err, context.DeadlineExceeded)) {
						stats.snapErrs.Add(1)
						continue
					}
					fail(fmt.Errorf("snapshot: %w", err))
					return
				}
				if tg.Restore == nil {
					continue
				}
				img, err := tg.Restore(ctx, info.ID)
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("restoring snapshot %s: %w", info.ID, err))
					}
					return
				}
				if err := o.check(win, img); err != nil {
					fail(fmt.Errorf("snapshot %s: %w", info.ID, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("stress: %d reads (%d failed under store faults), %d writes, %d unmaps, %d flushes, %d snapshots (%d failed under faults), %d disturbances",
		stats.reads.Load(), stats.readErrs.Load(), stats.writes.Load(), stats.unmaps.Load(), stats.flushes.Load(),
		stats.snaps.Load(), stats.snapErrs.Load(), stats.chaos.Load())
	if failure != nil {
		t.Fatalf("stress (seed %d): %v", cfg.Seed, failure)
	}
	final := func(d Volume, what string) {
		t.Helper()
		bg := context.Background()
		for off := int64(0); off < size; off += 1 << 20 {
			end := min(off+1<<20, size)
			win := o.start(off, end)
			p := make([]byte, end-off)
			if err := d.ReadAt(bg, p, off); err != nil {
				t.Fatalf("stress (seed %d): %s read [%d,%d): %v", cfg.Seed, what, off, end, err)
			}
			if len(win.active) > 0 {
				continue // a write failed only when the run was cancelled
			}
			if err := o.check(win, p); err != nil {
				t.Fatalf("stress (seed %d): %s: %v", cfg.Seed, what, err)
			}
		}
	}
	final(tg.Dev, "final image")
	if tg.Reopen != nil {
		d, err := tg.Reopen(context.Background())
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		final(d, "reopened image")
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
