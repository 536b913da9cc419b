package nfs

import (
	"context"
	"encoding/json"
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
// are not yet uploaded. The journal (<id>.meta) is rewritten atomically on
// every change of that state, and made durable on COMMIT or stable WRITE,
// so dirty data survives a crash and is uploaded after restart.
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
	synced    bool // the journal on disk matches and is durable
	lastWrite time.Time
	lastUse   time.Time
	retryAt   time.Time
	excl      []byte // exclusive-create verifier
}

// journal is the on-disk form of a cfile's state.
type journal struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	Base      string `json:"base"`
	BaseSize  int64  `json:"base_size"`
	Local     bool   `json:"local"`
	DataDirty bool   `json:"data_dirty"`
	MetaDirty bool   `json:"meta_dirty"`
	Present   bitmap `json:"present"`
	Dirty     bitmap `json:"dirty"`
	Type      ftype  `json:"type"`
	Meta      map[string]string
}

func (f *cfile) dataPath() string {
	return filepath.Join(f.x.cacheDir, strconv.FormatUint(f.id, 10)+".data")
}

func (f *cfile) metaPath() string {
	return filepath.Join(f.x.cacheDir, strconv.FormatUint(f.id, 10)+".meta")
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
	return f.a, true
}

// localPath returns the path and whether the file exists only locally.
func (f *cfile) localPath() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.path, f.local && !f.gone
}

// saveJournal writes the journal atomically; with sync it is made durable
// (f.mu held).
func (f *cfile) saveJournal(sync bool) error {
	j := journal{Path: f.path, Size: f.a.size, Base: f.base, BaseSize: f.baseSize, Local: f.local,
		DataDirty: f.dataDirty, MetaDirty: f.metaDirty, Present: f.present, Dirty: f.dirty,
		Type: f.a.typ, Meta: metaOf(f.a)}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	tmp := f.metaPath() + ".tmp"
	w, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, err = w.Write(b)
	if err == nil && sync {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.metaPath())
	}
	if err == nil && sync {
		err = syncDir(f.x.cacheDir)
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	f.synced = sync
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// loadJournal restores a cfile from its journal.
func (x *share) loadJournal(id uint64) (*cfile, error) {
	f := &cfile{x: x, id: id}
	b, err := os.ReadFile(f.metaPath())
	if err != nil {
		return nil, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("journal %d: %w", id, err)
	}
	f.path, f.base, f.baseSize, f.local = j.Path, j.Base, j.BaseSize, j.Local
	f.dataDirty, f.metaDirty, f.present, f.dirty = j.DataDirty, j.MetaDirty, j.Present, j.Dirty
	f.a = attrs{typ: typeReg, mode: defaultFileMode}
	if j.Type != 0 {
		f.a.typ = j.Type
	}
	parseMeta(&f.a, j.Meta)
	f.a.size = j.Size
	f.lowWater = f.a.size
	f.synced = true
	f.lastUse = time.Now()
	return f, nil
}

// closeFile is called when the share closes.
func (f *cfile) closeFile() {}

// removeData deletes the cached data and journal (f.mu held).
func (f *cfile) removeData() {
	x := f.x
	x.srv.cache.add(-f.present.count() * blockSize)
	f.present, f.dirty = nil, nil
	os.Remove(f.dataPath())
	os.Remove(f.metaPath())
}

// recover loads every journal of the share and queues dirty files for
// upload.
func (x *share) recover() {
	ents, err := os.ReadDir(x.cacheDir)
	if err != nil {
		x.log.Warn("cache directory unreadable", "err", err)
		return
	}
	n := 0
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".meta")
		if !ok {
			if strings.HasSuffix(e.Name(), ".tmp") {
				os.Remove(filepath.Join(x.cacheDir, e.Name()))
			}
			continue
		}
		id, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		f, err := x.loadJournal(id)
		if err != nil {
			x.log.Warn("dropping unreadable cache journal", "id", id, "err", err)
			os.Remove(filepath.Join(x.cacheDir, e.Name()))
			continue
		}
		x.handles.mu.Lock()
		if p, ok := x.handles.byID[id]; !ok || p != f.path {
			x.handles.setLocked(id, f.path)
			x.handles.appendLocked(id, f.path, false)
		}
		x.handles.mu.Unlock()
		x.srv.cache.add(f.present.count() * blockSize)
		x.mu.Lock()
		x.files[id] = f
		x.mu.Unlock()
		if f.pending() {
			n++
			x.srv.uploads.enqueue(f)
		}
	}
	if n > 0 {
		x.log.Info("re-uploading dirty files from the cache", "files", n)
	}
}

// cached returns the cfile for (id, p), creating it from the object's
// attributes a. Clean cached data of another object version is dropped.
func (x *share) cached(id uint64, p string, a attrs) *cfile {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.files[id]
	if f == nil {
		f = &cfile{x: x, id: id, path: p, a: a, base: a.etag, baseSize: a.size, lowWater: a.size}
		x.files[id] = f
	}
	f.mu.Lock()
	if !f.pending() && !f.uploading && f.base != a.etag {
		f.removeData()
		f.a, f.base, f.baseSize, f.lowWater = a, a.etag, a.size, a.size
	}
	f.lastUse = time.Now()
	f.mu.Unlock()
	return f
}

// checkCached drops clean cached data of p when the object changed.
func (x *share) checkCached(p string, a attrs) {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.fileAtLocked(p)
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pending() && !f.uploading && f.base != a.etag {
		f.removeData()
		f.a, f.base, f.baseSize, f.lowWater = a, a.etag, a.size, a.size
	}
}

// dropCached forgets the cached file at p (it no longer exists).
func (x *share) dropCached(p string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.fileAtLocked(p)
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pending() && !f.uploading {
		f.removeData()
		f.gone = true
		delete(x.files, f.id)
	}
}

// fetch makes the blocks overlapping [off, end) present, reading missing
// ones from the base object with ranged GETs, extending the last run by
// readAhead bytes (f.mu held).
func (f *cfile) fetch(ctx context.Context, off, end, readAhead int64) error {
	if end > f.baseSize {
		end = f.baseSize
	}
	if off >= end {
		return nil
	}
	first, last := off/blockSize, (end-1)/blockSize
	limit := (f.baseSize - 1) / blockSize
	var runs [][2]int64
	for b := first; b <= last; b++ {
		if f.present.has(b) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1][1] == b {
			runs[n-1][1] = b + 1
		} else {
			runs = append(runs, [2]int64{b, b + 1})
		}
	}
	if len(runs) == 0 {
		return nil
	}
	r := &runs[len(runs)-1]
	for extra := readAhead / blockSize; extra > 0 && r[1] <= limit && !f.present.has(r[1]); extra-- {
		r[1]++
	}
	df, err := os.OpenFile(f.dataPath(), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer df.Close()
	for _, r := range runs {
		start, stop := r[0]*blockSize, min(r[1]*blockSize, f.baseSize)
		body, _, err := f.x.store.Get(ctx, f.x.key(f.path), objstore.GetOptions{
			Range: &objstore.Range{Offset: start, Length: stop - start}, IfMatch: f.base})
		if err != nil {
			if errors.Is(err, objstore.ErrPreconditionFailed) {
				return statusErr(StatusStale, fmt.Errorf("object %s changed while cached: %w", f.path, err))
			}
			return fmt.Errorf("fetch %s: %w", f.path, err)
		}
		_, err = io.Copy(io.NewOffsetWriter(df, start), io.LimitReader(body, stop-start))
		body.Close()
		if err != nil {
			return fmt.Errorf("fetch %s: %w", f.path, err)
		}
		added := int64(0)
		for b := r[0]; b < r[1]; b++ {
			if f.present.set(b) {
				added++
			}
		}
		f.x.srv.cache.add(added * blockSize)
	}
	return f.saveJournal(false)
}

// readAt reads up to n bytes at off from a cached file.
func (f *cfile) readAt(ctx context.Context, off int64, n int) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastUse = time.Now()
	size := f.a.size
	if off >= size {
		return nil, true, nil
	}
	end := min(size, off+int64(n))
	if err := f.fetch(ctx, off, end, f.x.srv.cfg.ReadAhead); err != nil {
		return nil, false, err
	}
	buf := make([]byte, end-off)
	df, err := os.Open(f.dataPath())
	if errors.Is(err, os.ErrNotExist) {
		return buf, end == size, nil // all zeros: never written, nothing fetched
	}
	if err != nil {
		return nil, false, fmt.Errorf("cache: %w", err)
	}
	defer df.Close()
	m, err := df.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return nil, false, fmt.Errorf("cache: %w", err)
	}
	clear(buf[m:]) // a sparse tail past the data file's end reads as zeros
	return buf, end == size, nil
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
	// Partial blocks that hold base data must be fetched before they are
	// overwritten in part.
	if off%blockSize != 0 {
		if err := f.fetch(ctx, off, off+1, 0); err != nil {
			return attrs{}, err
		}
	}
	if end%blockSize != 0 && end < f.baseSize {
		if err := f.fetch(ctx, end-1, end, 0); err != nil {
			return attrs{}, err
		}
	}
	df, err := os.OpenFile(f.dataPath(), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return attrs{}, fmt.Errorf("cache: %w", err)
	}
	defer df.Close()
	if _, err := df.WriteAt(data, off); err != nil {
		return attrs{}, fmt.Errorf("cache: %w", err)
	}
	changed := !f.dataDirty
	added := int64(0)
	for b := off / blockSize; b <= (end-1)/blockSize && len(data) > 0; b++ {
		if f.present.set(b) {
			added++
			changed = true
		}
		if f.dirty.set(b) {
			changed = true
		}
	}
	f.x.srv.cache.add(added * blockSize)
	if end > f.a.size {
		f.a.size = end
		changed = true
	}
	now := time.Now()
	f.a.mtime, f.a.ctime = now, now
	f.dataDirty = true
	f.gen++
	f.lastWrite, f.lastUse = now, now
	if sync {
		if err := df.Sync(); err != nil {
			return attrs{}, fmt.Errorf("cache: %w", err)
		}
		if err := f.saveJournal(true); err != nil {
			return attrs{}, err
		}
	} else if changed || f.synced {
		if err := f.saveJournal(false); err != nil {
			return attrs{}, err
		}
	}
	return f.a, nil
}

// truncate sets the file size (f.mu held).
func (f *cfile) truncate(ctx context.Context, size int64) error {
	if size == f.a.size {
		return nil
	}
	if size < f.a.size {
		if size%blockSize != 0 && size < f.baseSize {
			if err := f.fetch(ctx, size-1, size, 0); err != nil {
				return err
			}
		}
		f.baseSize = min(f.baseSize, size)
		f.lowWater = min(f.lowWater, size)
		n := f.present.count()
		f.present.clearFrom((size + blockSize - 1) / blockSize)
		f.dirty.clearFrom((size + blockSize - 1) / blockSize)
		f.x.srv.cache.add((f.present.count() - n) * blockSize)
	}
	if err := os.Truncate(f.dataPath(), size); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cache: %w", err)
	}
	if size%blockSize != 0 {
		f.present.set(size / blockSize)
		f.dirty.set(size / blockSize)
	}
	f.a.size = size
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
		if df, err := os.OpenFile(f.dataPath(), os.O_WRONLY, 0); err == nil {
			err = df.Sync()
			df.Close()
			if err != nil {
				f.mu.Unlock()
				return fmt.Errorf("cache: %w", err)
			}
		}
		if err := f.saveJournal(true); err != nil {
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
