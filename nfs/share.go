package nfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Object user-metadata names (without the "x-amz-meta-" prefix S3 adds on
// the wire) that carry POSIX attributes. Objects without them get the
// defaults: files 0666, directories 0777, owner 0:0, times from the
// object's Last-Modified.
const (
	MetaMode  = "sluice-mode"  // permission bits, octal, e.g. "644"
	MetaUID   = "sluice-uid"   // decimal
	MetaGID   = "sluice-gid"   // decimal
	MetaAtime = "sluice-atime" // Unix time in nanoseconds, decimal
	MetaMtime = "sluice-mtime" // Unix time in nanoseconds, decimal
	MetaCtime = "sluice-ctime" // Unix time in nanoseconds, decimal
	MetaType  = "sluice-type"  // "symlink" for symbolic links (the body is the target)
)

const (
	defaultFileMode = 0o666
	defaultDirMode  = 0o777
	maxSymlink      = 4096
	maxListing      = 200000
	maxName         = 255
)

// ftype is an NFSv3 file type (ftype3).
type ftype uint32

const (
	typeReg ftype = 1
	typeDir ftype = 2
	typeLnk ftype = 5
)

// attrs are the attributes Sluice keeps for a file, directory or link.
type attrs struct {
	typ                 ftype
	mode                uint32
	uid, gid            uint32
	size                int64
	atime, mtime, ctime time.Time
	etag                string
	seen                time.Time // when these attributes were observed
}

// node is a cached stat result.
type node struct {
	a       attrs
	fetched time.Time
	target  string // symlink target, once read
}

// dirEnt is one entry of a directory listing.
type dirEnt struct {
	typ   ftype
	size  int64
	etag  string
	mtime time.Time
}

// listing is a cached directory listing.
type listing struct {
	fetched  time.Time
	complete bool // false when the directory had more than maxListing entries
	ents     map[string]dirEnt
}

// share is a served Share: its metadata cache, file cache and handles.
type share struct {
	srv      *Server
	cfg      Share
	id       uint64
	store    objstore.Store
	log      *slog.Logger
	handles  *handleIndex
	wal      *wal
	cacheDir string
	started  time.Time
	removed  atomic.Bool // RemoveShare: nothing more is uploaded

	mu    sync.Mutex
	nodes map[string]*node
	dirs  map[string]*listing
	files map[uint64]*cfile // files with cached or dirty data, by file id
	// listing holds the directories being listed; waiters block on the
	// channel, closed when the listing is done.
	listing map[string]chan struct{}
}

// newShare opens a share's handle index and journal; it returns the
// newest journal record of each file for recover.
func newShare(s *Server, cfg Share, id uint64) (*share, map[uint64]*record, error) {
	hpath, cdir := s.shareDirs(id)
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("nfs: share %s: %w", cfg.Name, err)
	}
	h, err := openHandleIndex(hpath)
	if err != nil {
		return nil, nil, fmt.Errorf("nfs: share %s: %w", cfg.Name, err)
	}
	w, latest, err := openWAL(cdir, h.sync)
	if err != nil {
		h.close()
		return nil, nil, fmt.Errorf("nfs: share %s: %w", cfg.Name, err)
	}
	return &share{
		srv: s, cfg: cfg, id: id, store: cfg.Store,
		log:     s.log.With("share", cfg.Name),
		handles: h, wal: w, cacheDir: cdir, started: time.Now(),
		nodes: map[string]*node{}, dirs: map[string]*listing{}, files: map[uint64]*cfile{},
		listing: map[string]chan struct{}{},
	}, latest, nil
}

func (x *share) close() error {
	err := x.wal.close()
	if herr := x.handles.close(); err == nil {
		err = herr
	}
	return err
}

// cleanPath turns a client or API path into the share-relative form: no
// leading or trailing slash, "" for the root.
func cleanPath(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

func (x *share) key(p string) string { return x.cfg.Prefix + p }

func (x *share) dirKey(p string) string {
	if p == "" {
		return x.cfg.Prefix
	}
	return x.cfg.Prefix + p + "/"
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func (x *share) fresh(t time.Time) bool { return time.Since(t) < x.srv.cfg.MetadataTTL }

// parseMeta fills attributes from object metadata.
func parseMeta(a *attrs, md map[string]string) {
	if v, err := strconv.ParseUint(md[MetaMode], 8, 32); err == nil {
		a.mode = uint32(v) & 0o7777
	}
	if v, err := strconv.ParseUint(md[MetaUID], 10, 32); err == nil {
		a.uid = uint32(v)
	}
	if v, err := strconv.ParseUint(md[MetaGID], 10, 32); err == nil {
		a.gid = uint32(v)
	}
	for name, t := range map[string]*time.Time{MetaAtime: &a.atime, MetaMtime: &a.mtime, MetaCtime: &a.ctime} {
		if v, err := strconv.ParseInt(md[name], 10, 64); err == nil {
			*t = time.Unix(0, v)
		}
	}
	if md[MetaType] == "symlink" {
		a.typ = typeLnk
	}
}

// metaOf renders attributes as object metadata.
func metaOf(a attrs) map[string]string {
	md := map[string]string{
		MetaMode:  strconv.FormatUint(uint64(a.mode&0o7777), 8),
		MetaUID:   strconv.FormatUint(uint64(a.uid), 10),
		MetaGID:   strconv.FormatUint(uint64(a.gid), 10),
		MetaAtime: strconv.FormatInt(a.atime.UnixNano(), 10),
		MetaMtime: strconv.FormatInt(a.mtime.UnixNano(), 10),
		MetaCtime: strconv.FormatInt(a.ctime.UnixNano(), 10),
	}
	if a.typ == typeLnk {
		md[MetaType] = "symlink"
	}
	return md
}

func objAttrs(oi objstore.ObjectInfo, typ ftype) attrs {
	a := attrs{typ: typ, mode: defaultFileMode, size: oi.Size, etag: oi.ETag,
		atime: oi.LastModified, mtime: oi.LastModified, ctime: oi.LastModified}
	if typ == typeDir {
		a.mode, a.size = defaultDirMode, 4096
	}
	parseMeta(&a, oi.Metadata)
	return a
}

func (x *share) defaultDirAttrs() attrs {
	return attrs{typ: typeDir, mode: defaultDirMode, size: 4096, atime: x.started, mtime: x.started, ctime: x.started}
}

func (x *share) setNode(p string, a attrs) { x.setNodeAt(p, a, time.Now()) }

// setNodeAt caches attributes observed at time at, unless newer ones are
// cached already (a HEAD that raced with an upload must not win).
func (x *share) setNodeAt(p string, a attrs, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.nodes[p]
	if n != nil && n.fetched.After(at) {
		return
	}
	if n == nil || n.a.etag != a.etag || n.a.typ != a.typ {
		n = &node{}
		x.nodes[p] = n
	}
	n.a, n.fetched = a, at
}

// fileAt returns the cached file at p, if any (x.mu held).
func (x *share) fileAtLocked(p string) *cfile {
	x.handles.mu.Lock()
	id, ok := x.handles.byPath[p]
	x.handles.mu.Unlock()
	if !ok {
		return nil
	}
	return x.files[id]
}

// stat returns the attributes of p: from a file with unuploaded changes
// (authoritative), from a fresh cache entry or listing, or from the store.
func (x *share) stat(ctx context.Context, p string) (attrs, error) {
	x.mu.Lock()
	if f := x.fileAtLocked(p); f != nil {
		if a, ok := f.localAttrs(); ok {
			x.mu.Unlock()
			return a, nil
		}
	}
	n := x.nodes[p]
	if n != nil && x.fresh(n.fetched) {
		a := n.a
		a.seen = n.fetched
		x.mu.Unlock()
		return a, nil
	}
	if p == "" {
		a := x.defaultDirAttrs()
		if n != nil {
			a = n.a
		}
		x.nodes[p] = &node{a: a, fetched: time.Now()}
		x.mu.Unlock()
		return a, nil
	}
	dir, name := splitPath(p)
	if l := x.dirs[dir]; l != nil && l.complete && x.fresh(l.fetched) {
		e, ok := l.ents[name]
		switch {
		case !ok:
			x.mu.Unlock()
			return attrs{}, statusErr(StatusNoEnt, nil)
		case e.typ == typeDir && n != nil && n.a.typ == typeDir:
			n.fetched = l.fetched
			a := n.a
			x.mu.Unlock()
			return a, nil
		case e.typ == typeDir:
			a := x.defaultDirAttrs()
			x.mu.Unlock()
			return a, nil
		case n != nil && n.a.etag == e.etag:
			if l.fetched.After(n.fetched) {
				n.fetched = l.fetched
			}
			a := n.a
			a.seen = n.fetched
			x.mu.Unlock()
			return a, nil
		}
	}
	x.mu.Unlock()
	return x.revalidate(ctx, p)
}

// revalidate stats p in the store: an object (file or link), a directory
// marker, or any object below p/ (a directory without marker).
func (x *share) revalidate(ctx context.Context, p string) (attrs, error) {
	issued := time.Now()
	oi, err := x.store.Head(ctx, x.key(p))
	if err == nil {
		a := objAttrs(oi, typeReg)
		a.seen = issued
		x.setNodeAt(p, a, issued)
		if !x.checkCached(p, a, issued) {
			// An upload finished while the HEAD was in flight: its
			// result is newer.
			return x.stat(ctx, p)
		}
		return a, nil
	}
	if !errors.Is(err, objstore.ErrNotFound) {
		return attrs{}, fmt.Errorf("stat %s: %w", p, err)
	}
	oi, err = x.store.Head(ctx, x.dirKey(p))
	if err == nil {
		a := objAttrs(oi, typeDir)
		x.setNodeAt(p, a, issued)
		return a, nil
	}
	if !errors.Is(err, objstore.ErrNotFound) {
		return attrs{}, fmt.Errorf("stat %s: %w", p, err)
	}
	page, err := x.store.List(ctx, objstore.ListOptions{Prefix: x.dirKey(p), MaxKeys: 1})
	if err != nil {
		return attrs{}, fmt.Errorf("stat %s: %w", p, err)
	}
	if len(page.Objects)+len(page.CommonPrefixes) > 0 || x.hasLocalUnder(p) {
		a := x.defaultDirAttrs()
		x.mu.Lock()
		if n := x.nodes[p]; n != nil && n.a.typ == typeDir {
			a = n.a
		}
		x.mu.Unlock()
		x.setNodeAt(p, a, issued)
		return a, nil
	}
	x.mu.Lock()
	if n := x.nodes[p]; n != nil && n.fetched.Before(issued) {
		delete(x.nodes, p)
	}
	x.mu.Unlock()
	x.dropCached(p, issued)
	return attrs{}, statusErr(StatusNoEnt, nil)
}

// hasLocalUnder reports whether a not-yet-uploaded file lives below dir.
func (x *share) hasLocalUnder(dir string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, f := range x.files {
		if p, local := f.localPath(); local && strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// listDir returns the listing of directory p, from the cache while fresh.
// One caller at a time refetches a stale listing; the others wait for it.
func (x *share) listDir(ctx context.Context, p string) (*listing, error) {
	for {
		x.mu.Lock()
		if l := x.dirs[p]; l != nil && x.fresh(l.fetched) {
			x.mu.Unlock()
			return l, nil
		}
		wait, busy := x.listing[p]
		if !busy {
			done := make(chan struct{})
			x.listing[p] = done
			x.mu.Unlock()
			l, err := x.fetchListing(ctx, p)
			x.mu.Lock()
			delete(x.listing, p)
			x.mu.Unlock()
			close(done)
			return l, err
		}
		x.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// fetchListing lists directory p in the store and caches the result.
func (x *share) fetchListing(ctx context.Context, p string) (*listing, error) {
	l := &listing{fetched: time.Now(), complete: true, ents: map[string]dirEnt{}}
	base := x.dirKey(p)
	opts := objstore.ListOptions{Prefix: base, Delimiter: "/"}
	for {
		page, err := x.store.List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", p, err)
		}
		for _, o := range page.Objects {
			name := o.Key[len(base):]
			if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
				continue // the directory's own marker, or not representable
			}
			l.ents[name] = dirEnt{typ: typeReg, size: o.Size, etag: o.ETag, mtime: o.LastModified}
		}
		for _, cp := range page.CommonPrefixes {
			name := strings.TrimSuffix(cp[len(base):], "/")
			if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
				continue
			}
			if _, isFile := l.ents[name]; !isFile {
				l.ents[name] = dirEnt{typ: typeDir}
			}
		}
		if len(l.ents) > maxListing {
			l.complete = false
			break
		}
		if page.NextToken == "" {
			break
		}
		opts.Token = page.NextToken
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, f := range x.files {
		if fp, local := f.localPath(); local {
			if d, name := splitPath(fp); d == p {
				l.ents[name] = dirEnt{typ: typeReg}
			}
		}
	}
	for name, e := range l.ents {
		if n := x.nodes[joinPath(p, name)]; n != nil && e.typ == typeReg && n.a.typ == typeLnk && n.a.etag == e.etag {
			e.typ = typeLnk
			l.ents[name] = e
		}
	}
	x.dirs[p] = l
	return l, nil
}

// listAdd records a new entry in a cached listing (changes made through
// Sluice are visible at once, without waiting for the TTL).
func (x *share) listAdd(dir, name string, e dirEnt) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if l := x.dirs[dir]; l != nil {
		l.ents[name] = e
	}
}

func (x *share) listRemove(dir, name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if l := x.dirs[dir]; l != nil {
		delete(l.ents, name)
	}
	delete(x.nodes, joinPath(dir, name))
}

// refresh drops cached metadata of p (and below when recursive) and
// reloads it.
func (x *share) refresh(ctx context.Context, p string, recursive bool) error {
	x.mu.Lock()
	for k := range x.nodes {
		if k == p || (recursive && (p == "" || strings.HasPrefix(k, p+"/"))) {
			delete(x.nodes, k)
		}
	}
	dir, _ := splitPath(p)
	delete(x.dirs, dir)
	for k := range x.dirs {
		if k == p || (recursive && (p == "" || strings.HasPrefix(k, p+"/"))) {
			delete(x.dirs, k)
		}
	}
	x.mu.Unlock()
	a, err := x.stat(ctx, p)
	if err != nil {
		if statusOf(err) == StatusNoEnt {
			return fmt.Errorf("%w: %s", ErrNotFound, p)
		}
		return err
	}
	if a.typ == typeDir {
		_, err = x.listDir(ctx, p)
	}
	return err
}

// sweep forgets metadata that has been stale for a while, so the caches do
// not grow with every file ever seen.
func (x *share) sweep() {
	limit := 10 * x.srv.cfg.MetadataTTL
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, n := range x.nodes {
		if time.Since(n.fetched) > limit {
			delete(x.nodes, k)
		}
	}
	for k, l := range x.dirs {
		if time.Since(l.fetched) > limit {
			delete(x.dirs, k)
		}
	}
}
