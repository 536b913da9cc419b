package nfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// blockSize is the unit in which file data is cached and tracked.
const blockSize = 1 << 20

// bitmap is a set of block numbers.
type bitmap []uint64

func (b bitmap) has(i int64) bool { return i>>6 < int64(len(b)) && b[i>>6]&(1<<(i&63)) != 0 }

func (b *bitmap) set(i int64) bool {
	for int64(len(*b)) <= i>>6 {
		*b = append(*b, 0)
	}
	if (*b)[i>>6]&(1<<(i&63)) != 0 {
		return false
	}
	(*b)[i>>6] |= 1 << (i & 63)
	return true
}

func (b bitmap) clearFrom(i int64) {
	for j := i; j < int64(len(b))*64; j++ {
		b[j>>6] &^= 1 << (j & 63)
	}
}

func (b bitmap) count() int64 {
	var n int64
	for _, w := range b {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

func (b bitmap) anyIn(from, to int64) bool {
	for i := from; i < to; i++ {
		if b.has(i) {
			return true
		}
	}
	return false
}

// cacheLRU accounts the bytes of cached data across shares and wakes the
// evictor when they exceed the limit.
type cacheLRU struct {
	limit int64
	used  atomic.Int64
	wake  chan struct{}
}

func newCacheLRU(limit int64) *cacheLRU {
	return &cacheLRU{limit: limit, wake: make(chan struct{}, 1)}
}

func (c *cacheLRU) add(n int64) {
	if c.used.Add(n) > c.limit {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// cfile is the cached state of one file: its data blocks in a sparse local
// file, which of them are present and dirty, and its attributes while they
// are not yet uploaded. Its state goes to the share's journal (wal.go) on
// COMMIT and stable WRITE, and on other state changes of files with
// pending changes, so committed data survives a crash and is uploaded
// after restart.
//
// Lock order: share.mu before cfile.mu; upMu before both.
type cfile struct {
	x  *share
	id uint64

	upMu sync.Mutex // held for a whole upload, and by remove and rename

	mu        sync.Mutex
	path      string
	a         attrs // attributes; a.size is the file size
	base      string
	baseSize  int64 // bytes [0, baseSize) of object base may be fetched
	local     bool  // no object exists yet
	dataDirty bool
	metaDirty bool
	present   bitmap
	dirty     bitmap
	gen       uint64
	lowWater  int64 // smallest size since the current upload started
	uploading bool
	queued    bool
	gone      bool
	synced    bool   // the newest journal record is durable
	jseq      uint64 // sequence number of the newest journal record
	lastWrite time.Time
	lastUse   time.Time
	retryAt   time.Time
	excl      []byte // exclusive-create verifier
	// inMem: the data of a new small file is kept in mem (up to inlineMax)
	// instead of a data file until it is uploaded; the journal record
	// carries it for durability.
	inMem bool
	mem   []byte
	// charged is what the file counts against Config.CacheSize (see
	// recharge).
	charged int64
	// inflight maps blocks being fetched to a channel closed when done;
	// epoch changes when cached data is dropped, so a fetch that finishes
	// afterwards does not mark its blocks present.
	inflight map[int64]chan struct{}
	epoch    uint64
	nextOff  int64     // where a sequential reader reads next
	baseAt   time.Time // when base was last set
	// cancelUpload, set while an upload runs, cancels it (the file is
	// being removed or replaced).
	cancelUpload context.CancelFunc
}

// stopUpload cancels a running upload of f.
func (f *cfile) stopUpload() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancelUpload != nil {
		f.cancelUpload()
	}
}

// spill moves in-memory data to the data file (f.mu held).
func (f *cfile) spill() error {
	if !f.inMem {
		return nil
	}
	df, err := os.OpenFile(f.dataPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	_, err = df.WriteAt(f.mem, 0)
	if cerr := df.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	f.inMem, f.mem = false, nil
	return nil
}

// memBytes returns the in-memory data padded with zeros to the file size
// (f.mu held).
func (f *cfile) memBytes() []byte {
	b := make([]byte, f.a.size)
	copy(b, f.mem)
	return b
}

func (f *cfile) dataPath() string {
	return filepath.Join(f.x.cacheDir, strconv.FormatUint(f.id, 10)+".data")
}

// pending reports whether the file has changes not yet uploaded (f.mu held).
func (f *cfile) pending() bool { return f.local || f.dataDirty || f.metaDirty }

// localAttrs returns the attributes when they are authoritative (changes
// not yet uploaded).
func (f *cfile) localAttrs() (attrs, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone || !f.pending() {
		return attrs{}, false
	}
	return f.attrsLocked(), true
}

// attrsLocked returns the file's current attributes (f.mu held).
func (f *cfile) attrsLocked() attrs {
	a := f.a
	a.etag, a.seen = f.base, time.Now()
	return a
}

// localPath returns the path and whether the file exists only locally.
func (f *cfile) localPath() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.path, f.local && !f.gone
}

// logState appends the file's state to the share's journal (f.mu held);
// with sync it is durable on return, data included: small files carry
// their data in the record, larger ones have their data file synced first.
func (f *cfile) logState(sync bool) error {
	f.jseq++
	rec := &record{ID: f.id, Seq: f.jseq, Kind: recState, Path: f.path, Size: f.a.size, Base: f.base,
		BaseSize: f.baseSize, Local: f.local, DataDirty: f.dataDirty, MetaDirty: f.metaDirty,
		Present: f.present, Dirty: f.dirty, Type: f.a.typ, Meta: metaOf(f.a)}
	if f.inMem {
		rec.Data = f.memBytes()
	} else if f.a.size <= inlineMax && f.dataDirty {
		rec.Data = make([]byte, f.a.size)
		if df, err := os.Open(f.dataPath()); err == nil {
			n, _ := df.ReadAt(rec.Data, 0)
			clear(rec.Data[n:])
			df.Close()
		}
	} else if sync && f.dataDirty {
		if df, err := os.OpenFile(f.dataPath(), os.O_WRONLY, 0); err == nil {
			err = df.Sync()
			df.Close()
			if err != nil {
				return fmt.Errorf("cache: %w", err)
			}
		}
	}
	if err := f.x.wal.append(rec, sync); err != nil {
		return err
	}
	f.synced = sync
	return nil
}

// logDone records that the file is clean or gone (f.mu held).
func (f *cfile) logDone(kind string) {
	f.jseq++
	if err := f.x.wal.append(&record{ID: f.id, Seq: f.jseq, Kind: kind}, false); err != nil {
		f.x.log.Warn("journal append failed", "err", err)
	}
}

// restore rebuilds a file with pending changes from its newest record.
func (x *share) restore(rec *record) (*cfile, error) {
	f := &cfile{x: x, id: rec.ID, jseq: rec.Seq, path: rec.Path, base: rec.Base, baseSize: rec.BaseSize,
		local: rec.Local, dataDirty: rec.DataDirty, metaDirty: rec.MetaDirty, present: rec.Present, dirty: rec.Dirty}
	f.a = attrs{typ: typeReg, mode: defaultFileMode}
	if rec.Type != 0 {
		f.a.typ = rec.Type
	}
	parseMeta(&f.a, rec.Meta)
	f.a.size = rec.Size
	f.lowWater = f.a.size
	f.lastUse = time.Now()
	if rec.Data != nil && rec.Local {
		f.inMem, f.mem = true, rec.Data
	} else if rec.Data != nil {
		df, err := os.OpenFile(f.dataPath(), os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		_, err = df.WriteAt(rec.Data, 0)
		if err == nil {
			err = df.Truncate(rec.Size)
		}
		df.Close()
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	return f, nil
}

// recharge brings what f counts against the cache bound up to date: its
// present blocks, but no more than its size rounded up to 4 KiB, so that a
// small file counts its bytes and not a whole block (f.mu held).
func (f *cfile) recharge() {
	c := min(f.present.count()*blockSize, (f.a.size+4095)&^4095)
	f.x.srv.cache.add(c - f.charged)
	f.charged = c
}

// removeData deletes the cached data and journal (f.mu held).
func (f *cfile) removeData() {
	f.present, f.dirty = nil, nil
	f.inMem, f.mem = false, nil
	f.recharge()
	f.epoch++
	os.Remove(f.dataPath())
}

// recover restores the files with pending changes from the journal
// (latest holds the newest record of each file), queues their upload,
// deletes other cached data and compacts the journal.
func (x *share) recover(latest map[uint64]*record) {
	n := 0
	keep := map[string]bool{}
	for id, rec := range latest {
		if rec.Kind != recState || id < rootID+1 {
			continue
		}
		f, err := x.restore(rec)
		if err != nil {
			x.log.Warn("cannot restore cached file", "path", rec.Path, "err", err)
			continue
		}
		if !f.inMem {
			keep[filepath.Base(f.dataPath())] = true
		}
		x.handles.mu.Lock()
		if p, ok := x.handles.byID[id]; !ok || p != f.path {
			x.handles.setLocked(id, f.path)
			x.handles.appendLocked(id, f.path, false)
		}
		x.handles.mu.Unlock()
		f.recharge()
		x.mu.Lock()
		x.files[id] = f
		x.mu.Unlock()
		n++
	}
	if ents, err := os.ReadDir(x.cacheDir); err == nil {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".data") && !keep[e.Name()] {
				os.Remove(filepath.Join(x.cacheDir, e.Name()))
			}
		}
	}
	if err := x.rotateJournal(); err != nil {
		x.log.Warn("journal compaction failed", "err", err)
	}
	x.mu.Lock()
	files := make([]*cfile, 0, len(x.files))
	for _, f := range x.files {
		files = append(files, f)
	}
	x.mu.Unlock()
	for _, f := range files {
		x.srv.uploads.enqueue(f)
	}
	if n > 0 {
		x.log.Info("re-uploading files with changes kept in the cache", "files", n)
	}
}

// rotateJournal rewrites the journal with the state of every file that
// still has pending changes.
func (x *share) rotateJournal() error {
	return x.wal.rotate(func() error {
		x.mu.Lock()
		files := make([]*cfile, 0, len(x.files))
		for _, f := range x.files {
			files = append(files, f)
		}
		x.mu.Unlock()
		for _, f := range files {
			f.mu.Lock()
			var err error
			if f.pending() && !f.gone {
				err = f.logState(false)
			}
			f.mu.Unlock()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// cached returns the cfile for (id, p), creating it from the object's
// attributes a. Clean cached data of another object version is dropped.
func (x *share) cached(id uint64, p string, a attrs) *cfile {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.files[id]
	if f == nil {
		f = &cfile{x: x, id: id, path: p, a: a, base: a.etag, baseSize: a.size, lowWater: a.size, baseAt: a.seen}
		x.files[id] = f
	}
	f.mu.Lock()
	if !f.pending() && !f.uploading && f.base != a.etag && !f.baseAt.After(a.seen) {
		f.removeData()
		f.a, f.base, f.baseSize, f.lowWater = a, a.etag, a.size, a.size
		f.baseAt = a.seen
	}
	f.lastUse = time.Now()
	f.mu.Unlock()
	return f
}

// checkCached drops clean cached data of p when the object changed; a
// stat issued before the cached version was set (by an upload) is older
// and ignored: checkCached then returns false.
func (x *share) checkCached(p string, a attrs, issued time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.fileAtLocked(p)
	if f == nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.baseAt.After(issued) {
		return f.base == a.etag
	}
	if !f.pending() && !f.uploading && f.base != a.etag {
		f.removeData()
		f.a, f.base, f.baseSize, f.lowWater = a, a.etag, a.size, a.size
		f.baseAt = issued
	}
	return true
}

// dropCached forgets the cached file at p (it no longer exists), unless it
// was uploaded after issued.
func (x *share) dropCached(p string, issued time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.fileAtLocked(p)
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pending() && !f.uploading && !f.baseAt.After(issued) {
		f.removeData()
		f.gone = true
		delete(x.files, f.id)
	}
}

// fetch makes the blocks overlapping [off, end) present, reading missing
// ones from the base object with ranged GETs (f.mu held; it is released
// while data moves, and blocks being fetched are marked in flight so that
// readers wait for them and writers do not race them). With readAhead > 0
// and a sequential reader, the blocks that follow are fetched in the
// background, readAhead bytes ahead.
func (f *cfile) fetch(ctx context.Context, off, end, readAhead int64) error {
	if f.inMem {
		return nil // all data is in memory
	}
	if e := min(end, f.baseSize); off < e {
		first, last := off/blockSize, (e-1)/blockSize
		for {
			f.waitInflight(first, last)
			runs := f.missing(first, last+1)
			if len(runs) == 0 || f.inMem {
				break
			}
			err := f.transfer(ctx, runs)
			if errors.Is(err, errBaseMoved) {
				// An upload replaced the object: fetch from the new
				// version once the upload has recorded it.
				f.mu.Unlock()
				select {
				case <-ctx.Done():
					f.mu.Lock()
					return ctx.Err()
				case <-time.After(5 * time.Millisecond):
				}
				f.mu.Lock()
				continue
			}
			if err != nil {
				return err
			}
		}
	}
	if readAhead > 0 {
		if off == 0 || off == f.nextOff {
			f.prefetch(end, readAhead)
		}
		f.nextOff = end
	}
	return nil
}

// waitInflight waits until no block in [first, last] is being fetched
// (f.mu held, released while waiting).
func (f *cfile) waitInflight(first, last int64) {
	for {
		var ch chan struct{}
		for b, c := range f.inflight {
			if b >= first && b <= last {
				ch = c
				break
			}
		}
		if ch == nil {
			return
		}
		f.mu.Unlock()
		<-ch
		f.mu.Lock()
	}
}

// missing returns runs [from, to) of blocks in [first, stop) that hold
// base data and are neither present nor in flight (f.mu held).
func (f *cfile) missing(first, stop int64) [][2]int64 {
	stop = min(stop, (f.baseSize+blockSize-1)/blockSize)
	var runs [][2]int64
	for b := first; b < stop; b++ {
		if _, busy := f.inflight[b]; busy || f.present.has(b) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1][1] == b {
			runs[n-1][1] = b + 1
		} else {
			runs = append(runs, [2]int64{b, b + 1})
		}
	}
	return runs
}

// transfer fetches runs of blocks (f.mu held, released during the
// transfer) and marks them present unless the cached data was dropped
// meanwhile.
func (f *cfile) transfer(ctx context.Context, runs [][2]int64) error {
	done := make(chan struct{})
	if f.inflight == nil {
		f.inflight = map[int64]chan struct{}{}
	}
	for _, r := range runs {
		for b := r[0]; b < r[1]; b++ {
			f.inflight[b] = done
		}
	}
	epoch, key, base, baseSize := f.epoch, f.x.key(f.path), f.base, f.baseSize
	f.mu.Unlock()
	err := f.x.transferRuns(ctx, f.dataPath(), key, base, baseSize, runs)
	f.mu.Lock()
	for _, r := range runs {
		for b := r[0]; b < r[1]; b++ {
			delete(f.inflight, b)
		}
	}
	close(done)
	if err != nil {
		if errors.Is(err, objstore.ErrPreconditionFailed) {
			if f.uploading || f.base != base {
				return errBaseMoved
			}
			return statusErr(StatusStale, fmt.Errorf("object %s changed while cached: %w", f.path, err))
		}
		return fmt.Errorf("fetch %s: %w", f.path, err)
	}
	if epoch != f.epoch {
		return nil // dropped meanwhile: the caller looks again
	}
	for _, r := range runs {
		for b := r[0]; b < r[1]; b++ {
			f.present.set(b)
		}
	}
	f.recharge()
	return nil
}

// transferRuns copies byte ranges of object key (version base) into the
// data file.
func (x *share) transferRuns(ctx context.Context, dataPath, key, base string, baseSize int64, runs [][2]int64) error {
	df, err := os.OpenFile(dataPath, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer df.Close()
	for _, r := range runs {
		start, stop := r[0]*blockSize, min(r[1]*blockSize, baseSize)
		body, _, err := x.store.Get(ctx, key, objstore.GetOptions{
			Range: &objstore.Range{Offset: start, Length: stop - start}, IfMatch: base})
		if err != nil {
			return err
		}
		_, err = io.Copy(io.NewOffsetWriter(df, start), io.LimitReader(body, stop-start))
		body.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// prefetch starts a background fetch of the blocks after end when less
// than half of the readAhead window after it is present or in flight
// (f.mu held).
func (f *cfile) prefetch(end, readAhead int64) {
	first := (end + blockSize - 1) / blockSize
	window := max(readAhead/blockSize, 2)
	next := first
	for next < first+window {
		if _, busy := f.inflight[next]; !busy && !f.present.has(next) {
			break
		}
		next++
	}
	if next-first >= window/2 {
		return
	}
	runs := f.missing(next, first+window)
	if len(runs) == 0 {
		return
	}
	s := f.x.srv
	select {
	case <-s.quit:
		return
	default:
	}
	// The run is fetched in chunks of a quarter window, in parallel.
	chunk := max(window/4, 1)
	for b := runs[0][0]; b < runs[0][1]; b += chunk {
		f.prefetchRun([2]int64{b, min(b+chunk, runs[0][1])})
	}
}

// prefetchRun fetches one run of blocks in the background (f.mu held).
func (f *cfile) prefetchRun(run [2]int64) {
	s := f.x.srv
	s.bg.Add(1)
	done := make(chan struct{})
	if f.inflight == nil {
		f.inflight = map[int64]chan struct{}{}
	}
	for b := run[0]; b < run[1]; b++ {
		f.inflight[b] = done
	}
	epoch, key, base, baseSize := f.epoch, f.x.key(f.path), f.base, f.baseSize
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := f.x.transferRuns(ctx, f.dataPath(), key, base, baseSize, [][2]int64{run})
		f.mu.Lock()
		defer f.mu.Unlock()
		for b := run[0]; b < run[1]; b++ {
			delete(f.inflight, b)
		}
		close(done)
		if err != nil || epoch != f.epoch {
			return
		}
		for b := run[0]; b < run[1]; b++ {
			f.present.set(b)
		}
		f.recharge()
	}()
}

// readAt reads up to len(buf) bytes at off from a cached file into buf and
// returns buf cut to the bytes read (nil at or past the end of the file);
// nfsRead relies on the data being in buf.
//
// With tail, data that would come from the data file is not read: the open
// data file is returned instead (the caller closes it) and the returned
// slice is buf cut to the length to send from it at off; past the data
// file's end it reads as zeros.
func (f *cfile) readAt(ctx context.Context, off int64, buf []byte, tail bool) ([]byte, *os.File, bool, attrs, error) {
	f.mu.Lock()
	f.lastUse = time.Now()
	if off >= f.a.size {
		a := f.attrsLocked()
		f.mu.Unlock()
		return nil, nil, true, a, nil
	}
	if err := f.fetch(ctx, off, min(f.a.size, off+int64(len(buf))), f.x.srv.cfg.ReadAhead); err != nil {
		f.mu.Unlock()
		return nil, nil, false, attrs{}, err
	}
	size := f.a.size // fetch may have let a truncate in
	end := max(off, min(size, off+int64(len(buf))))
	buf = buf[:end-off]
	a := f.attrsLocked()
	if f.inMem {
		n := 0
		if off < int64(len(f.mem)) {
			n = copy(buf, f.mem[off:])
		}
		clear(buf[n:])
		f.mu.Unlock()
		return buf, nil, end == size, a, nil
	}
	// The data file is opened under the lock and read without it, so
	// READs of one file run in parallel; the blocks read are present, and
	// present blocks are never fetched again (an evicted file's open data
	// file stays readable).
	df, err := os.Open(f.dataPath())
	f.mu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		clear(buf)
		return buf, nil, end == size, a, nil // all zeros: never written, nothing fetched
	}
	if err != nil {
		return nil, nil, false, attrs{}, fmt.Errorf("cache: %w", err)
	}
	if tail && len(buf) > 0 {
		return buf, df, end == size, a, nil
	}
	defer df.Close()
	m, err := df.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return nil, nil, false, attrs{}, fmt.Errorf("cache: %w", err)
	}
	clear(buf[m:]) // a sparse tail past the data file's end reads as zeros
	return buf, nil, end == size, a, nil
}

// writeAt writes data at off. With sync the data and journal are durable
// on return (FILE_SYNC and DATA_SYNC writes).
func (f *cfile) writeAt(ctx context.Context, off int64, data []byte, sync bool) (attrs, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return attrs{}, statusErr(StatusStale, nil)
	}
	end := off + int64(len(data))
	if f.inMem && end > inlineMax {
		if err := f.spill(); err != nil {
			return attrs{}, err
		}
	}
	if f.inMem {
		if end > int64(len(f.mem)) {
			f.mem = append(f.mem, make([]byte, end-int64(len(f.mem)))...)
		}
		copy(f.mem[off:], data)
		return f.wrote(off, end, sync)
	}
	// Partial blocks that hold base data must be fetched before they are
	// overwritten in part.
	if off%blockSize != 0 {
		start := off - off%blockSize
		if err := f.fetch(ctx, start, start+1, 0); err != nil {
			return attrs{}, err
		}
	}
	if end%blockSize != 0 {
		start := end - end%blockSize
		if err := f.fetch(ctx, start, start+1, 0); err != nil {
			return attrs{}, err
		}
	}
	f.waitInflight(off/blockSize, (end-1)/blockSize)
	df, err := os.OpenFile(f.dataPath(), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return attrs{}, fmt.Errorf("cache: %w", err)
	}
	defer df.Close()
	if _, err := df.WriteAt(data, off); err != nil {
		return attrs{}, fmt.Errorf("cache: %w", err)
	}
	return f.wrote(off, end, sync)
}

// wrote updates the state after data was written to [off, end) (f.mu
// held).
func (f *cfile) wrote(off, end int64, sync bool) (attrs, error) {
	for b := off / blockSize; b <= (end-1)/blockSize && end > off; b++ {
		f.present.set(b)
		f.dirty.set(b)
	}
	if end > f.a.size {
		f.a.size = end
	}
	f.recharge()
	now := time.Now()
	f.a.mtime, f.a.ctime = now, now
	f.dataDirty = true
	f.gen++
	f.lastWrite, f.lastUse = now, now
	if sync {
		if err := f.logState(true); err != nil {
			return attrs{}, err
		}
	} else {
		f.synced = false
	}
	return f.a, nil
}

// truncate sets the file size (f.mu held).
func (f *cfile) truncate(ctx context.Context, size int64) error {
	if size == f.a.size {
		return nil
	}
	if f.inMem && size > inlineMax {
		if err := f.spill(); err != nil {
			return err
		}
	}
	f.waitInflight(0, 1<<62)
	if f.inMem {
		if size < int64(len(f.mem)) {
			f.mem = f.mem[:size]
		}
		f.a.size = size
		f.recharge()
		f.dataDirty = true
		f.gen++
		f.lastWrite = time.Now()
		return nil
	}
	if size < f.a.size {
		// Base data beyond the new end must never come back.
		f.baseSize = min(f.baseSize, size)
		f.lowWater = min(f.lowWater, size)
		f.present.clearFrom((size + blockSize - 1) / blockSize)
		f.dirty.clearFrom((size + blockSize - 1) / blockSize)
	}
	// The data file never extends past the file size, so growing it reads
	// zeros; a partly cached last block keeps fetching its base part.
	if err := os.Truncate(f.dataPath(), size); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cache: %w", err)
	}
	f.a.size = size
	f.recharge()
	f.dataDirty = true
	f.gen++
	f.lastWrite = time.Now()
	return nil
}

// commit makes the file's cached data and journal durable and queues its
// upload.
func (f *cfile) commit() error {
	f.mu.Lock()
	if !f.synced && f.pending() {
		if err := f.logState(true); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	pending := f.pending()
	f.mu.Unlock()
	if pending {
		f.x.srv.uploads.enqueue(f)
	}
	return nil
}
