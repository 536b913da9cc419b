package nfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// ident is a caller's identity after squashing.
type ident struct {
	uid, gid uint32
	gids     []uint32
}

// identity applies the share's squash rule to a credential.
func (x *share) identity(c rpc.Cred) ident {
	anon := ident{uid: x.cfg.AnonUID, gid: x.cfg.AnonGID}
	switch {
	case c.Flavor != rpc.AuthUnix, x.cfg.Squash == AllSquash:
		return anon
	case x.cfg.Squash == RootSquash && c.UID == 0:
		return anon
	}
	return ident{uid: c.UID, gid: c.GID, gids: c.GIDs}
}

// Permission bits asked of may.
const (
	permR = 4
	permW = 2
	permX = 1
)

// may reports whether who has the permissions want on a file with
// attributes a (POSIX owner/group/other classes; uid 0 may do anything).
func may(a attrs, who ident, want uint32) bool {
	if who.uid == 0 {
		return true
	}
	var bits uint32
	switch {
	case who.uid == a.uid:
		bits = a.mode >> 6
	case who.gid == a.gid || containsGID(who.gids, a.gid):
		bits = a.mode >> 3
	default:
		bits = a.mode
	}
	return bits&7&want == want
}

func containsGID(gids []uint32, g uint32) bool {
	for _, x := range gids {
		if x == g {
			return true
		}
	}
	return false
}

// checkName validates a directory entry name.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return statusErr(StatusInval, fmt.Errorf("bad name %q", name))
	case len(name) > maxName:
		return statusErr(StatusNameTooLong, nil)
	case strings.ContainsAny(name, "/\x00"):
		return statusErr(StatusInval, fmt.Errorf("bad name %q", name))
	}
	return nil
}

// dirFor stats dir and checks that who may change it.
func (x *share) dirFor(ctx context.Context, dir string, who ident, want uint32) (attrs, error) {
	a, err := x.stat(ctx, dir)
	if err != nil {
		if statusOf(err) == StatusNoEnt {
			return a, statusErr(StatusStale, err)
		}
		return a, err
	}
	if a.typ != typeDir {
		return a, statusErr(StatusNotDir, nil)
	}
	if !may(a, who, want) {
		return a, statusErr(StatusAccess, nil)
	}
	return a, nil
}

// lookup resolves name in dir and returns the child's path and attributes.
func (x *share) lookup(ctx context.Context, dir, name string, who ident) (string, attrs, error) {
	if _, err := x.dirFor(ctx, dir, who, permX); err != nil {
		return "", attrs{}, err
	}
	switch name {
	case ".":
		a, err := x.stat(ctx, dir)
		return dir, a, err
	case "..":
		parent, _ := splitPath(dir)
		a, err := x.stat(ctx, parent)
		return parent, a, err
	}
	if len(name) > maxName {
		return "", attrs{}, statusErr(StatusNameTooLong, nil)
	}
	if strings.ContainsAny(name, "/\x00") || name == "" {
		return "", attrs{}, statusErr(StatusNoEnt, nil)
	}
	if _, err := x.listDir(ctx, dir); err != nil {
		return "", attrs{}, err
	}
	p := joinPath(dir, name)
	a, err := x.stat(ctx, p)
	return p, a, err
}

// exists reports whether p exists, with its attributes.
func (x *share) exists(ctx context.Context, p string) (attrs, bool, error) {
	a, err := x.stat(ctx, p)
	if err == nil {
		return a, true, nil
	}
	if statusOf(err) == StatusNoEnt {
		return a, false, nil
	}
	return a, false, err
}

// newAttrs builds the attributes of a new file from the caller and sattr.
func newAttrs(typ ftype, mode uint32, who ident, sa sattr) attrs {
	now := time.Now()
	a := attrs{typ: typ, mode: mode, uid: who.uid, gid: who.gid, atime: now, mtime: now, ctime: now}
	if sa.setMode {
		a.mode = sa.mode & 0o7777
	}
	if sa.setGID && (who.uid == 0 || sa.gid == who.gid || containsGID(who.gids, sa.gid)) {
		a.gid = sa.gid
	}
	if sa.setUID && who.uid == 0 {
		a.uid = sa.uid
	}
	if sa.mtime == timeClient {
		a.mtime = sa.mtimeVal
	}
	if sa.atime == timeClient {
		a.atime = sa.atimeVal
	}
	if typ == typeDir {
		a.size = 4096
	}
	return a
}

// create makes a regular file. The file exists locally (and in listings)
// at once and is uploaded once committed or settled.
func (x *share) create(ctx context.Context, dir, name string, who ident, sa sattr, guarded bool, excl []byte) (string, attrs, error) {
	if err := checkName(name); err != nil {
		return "", attrs{}, err
	}
	if _, err := x.dirFor(ctx, dir, who, permW|permX); err != nil {
		return "", attrs{}, err
	}
	if _, err := x.listDir(ctx, dir); err != nil {
		return "", attrs{}, err
	}
	p := joinPath(dir, name)
	old, ok, err := x.exists(ctx, p)
	if err != nil {
		return "", attrs{}, err
	}
	if ok {
		switch {
		case old.typ != typeReg:
			return "", attrs{}, statusErr(StatusExist, nil)
		case excl != nil:
			x.mu.Lock()
			f := x.fileAtLocked(p)
			x.mu.Unlock()
			if f != nil && bytes.Equal(f.excl, excl) {
				return p, old, nil // a retransmitted exclusive create
			}
			return "", attrs{}, statusErr(StatusExist, nil)
		case guarded:
			return "", attrs{}, statusErr(StatusExist, nil)
		}
		if sa.setSize {
			a, err := x.setattr(ctx, p, sa, who, nil)
			return p, a, err
		}
		return p, old, nil
	}
	a := newAttrs(typeReg, 0o644, who, sattr{setMode: sa.setMode, mode: sa.mode, setUID: sa.setUID, uid: sa.uid, setGID: sa.setGID, gid: sa.gid})
	id := x.handles.id(p)
	now := time.Now()
	// Like a write, the new file is durable once committed.
	f := &cfile{x: x, id: id, path: p, a: a, local: true, lastWrite: now, lastUse: now, lowWater: 0, excl: excl, inMem: true}
	x.mu.Lock()
	x.files[id] = f
	x.mu.Unlock()
	x.listAdd(dir, name, dirEnt{typ: typeReg, mtime: now})
	return p, a, nil
}

// newEntry returns the path of name in dir for a new directory or link:
// who may write dir, and nothing is there yet (NFS3ERR_EXIST).
func (x *share) newEntry(ctx context.Context, dir, name string, who ident) (string, error) {
	if _, err := x.dirFor(ctx, dir, who, permW|permX); err != nil {
		return "", err
	}
	p := joinPath(dir, name)
	if _, ok, err := x.exists(ctx, p); err != nil {
		return "", err
	} else if ok {
		return "", statusErr(StatusExist, nil)
	}
	return p, nil
}

// mkdir creates a directory marker object.
func (x *share) mkdir(ctx context.Context, dir, name string, who ident, sa sattr) (string, attrs, error) {
	if err := checkName(name); err != nil {
		return "", attrs{}, err
	}
	p, err := x.newEntry(ctx, dir, name, who)
	if err != nil {
		return "", attrs{}, err
	}
	a := newAttrs(typeDir, 0o755, who, sa)
	oi, err := x.store.Put(ctx, x.dirKey(p), bytes.NewReader(nil), 0, objstore.PutOptions{Metadata: metaOf(a)})
	if err != nil {
		return "", attrs{}, fmt.Errorf("mkdir %s: %w", p, err)
	}
	a.etag = oi.ETag
	x.setNode(p, a)
	x.listAdd(dir, name, dirEnt{typ: typeDir})
	return p, a, nil
}

// symlink stores a link as a small object flagged in its metadata.
func (x *share) symlink(ctx context.Context, dir, name, target string, who ident, sa sattr) (string, attrs, error) {
	if err := checkName(name); err != nil {
		return "", attrs{}, err
	}
	if len(target) > maxSymlink || target == "" {
		return "", attrs{}, statusErr(StatusNameTooLong, nil)
	}
	p, err := x.newEntry(ctx, dir, name, who)
	if err != nil {
		return "", attrs{}, err
	}
	a := newAttrs(typeLnk, 0o777, who, sa)
	a.size = int64(len(target))
	oi, err := x.store.Put(ctx, x.key(p), strings.NewReader(target), a.size, objstore.PutOptions{Metadata: metaOf(a)})
	if err != nil {
		return "", attrs{}, fmt.Errorf("symlink %s: %w", p, err)
	}
	a.etag = oi.ETag
	x.setNode(p, a)
	x.mu.Lock()
	x.nodes[p].target = target
	x.mu.Unlock()
	x.listAdd(dir, name, dirEnt{typ: typeLnk, size: a.size, etag: oi.ETag})
	return p, a, nil
}

// readlink returns a link's target.
func (x *share) readlink(ctx context.Context, p string) (string, attrs, error) {
	a, err := x.stat(ctx, p)
	if err != nil {
		return "", a, err
	}
	if a.typ != typeLnk {
		return "", a, statusErr(StatusInval, nil)
	}
	x.mu.Lock()
	if n := x.nodes[p]; n != nil && n.target != "" && n.a.etag == a.etag {
		t := n.target
		x.mu.Unlock()
		return t, a, nil
	}
	x.mu.Unlock()
	body, _, err := x.store.Get(ctx, x.key(p), objstore.GetOptions{})
	if err != nil {
		return "", a, fmt.Errorf("readlink %s: %w", p, err)
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, maxSymlink+1))
	if err != nil {
		return "", a, fmt.Errorf("readlink %s: %w", p, err)
	}
	x.mu.Lock()
	if n := x.nodes[p]; n != nil {
		n.target = string(b)
	}
	x.mu.Unlock()
	return string(b), a, nil
}

// remove deletes a file or link.
func (x *share) remove(ctx context.Context, dir, name string, who ident) error {
	if _, err := x.dirFor(ctx, dir, who, permW|permX); err != nil {
		return err
	}
	p := joinPath(dir, name)
	a, err := x.stat(ctx, p)
	if err != nil {
		return err
	}
	if a.typ == typeDir {
		return statusErr(StatusIsDir, nil)
	}
	local := false
	x.mu.Lock()
	f := x.fileAtLocked(p)
	x.mu.Unlock()
	if f != nil {
		f.stopUpload()
		f.upMu.Lock()
		defer f.upMu.Unlock()
		x.mu.Lock()
		f.mu.Lock()
		local = f.local
		if f.pending() {
			f.logDone(recGone)
		}
		f.gone = true
		f.removeData()
		delete(x.files, f.id)
		f.mu.Unlock()
		x.mu.Unlock()
	}
	if !local {
		if err := x.store.Delete(ctx, x.key(p)); err != nil {
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
	x.handles.forget(p)
	x.listRemove(dir, name)
	return nil
}

// rmdir removes an empty directory (its marker object).
func (x *share) rmdir(ctx context.Context, dir, name string, who ident) error {
	if _, err := x.dirFor(ctx, dir, who, permW|permX); err != nil {
		return err
	}
	p := joinPath(dir, name)
	a, err := x.stat(ctx, p)
	if err != nil {
		return err
	}
	if a.typ != typeDir {
		return statusErr(StatusNotDir, nil)
	}
	if err := x.checkEmpty(ctx, p); err != nil {
		return err
	}
	if err := x.store.Delete(ctx, x.dirKey(p)); err != nil {
		return fmt.Errorf("rmdir %s: %w", p, err)
	}
	x.handles.forget(p)
	x.listRemove(dir, name)
	x.mu.Lock()
	delete(x.dirs, p)
	x.mu.Unlock()
	return nil
}

// checkEmpty fails with NOTEMPTY unless directory p holds nothing but its
// marker.
func (x *share) checkEmpty(ctx context.Context, p string) error {
	page, err := x.store.List(ctx, objstore.ListOptions{Prefix: x.dirKey(p), MaxKeys: 2})
	if err != nil {
		return fmt.Errorf("rmdir %s: %w", p, err)
	}
	for _, o := range page.Objects {
		if o.Key != x.dirKey(p) {
			return statusErr(StatusNotEmpty, nil)
		}
	}
	if len(page.CommonPrefixes) > 0 || x.hasLocalUnder(p) {
		return statusErr(StatusNotEmpty, nil)
	}
	return nil
}

// rename moves a file (server-side copy, then delete) or a directory
// (copy and delete of every object below it: O(objects), not atomic).
func (x *share) rename(ctx context.Context, fromDir, fromName, toDir, toName string, who ident) error {
	if err := checkName(toName); err != nil {
		return err
	}
	if _, err := x.dirFor(ctx, fromDir, who, permW|permX); err != nil {
		return err
	}
	if _, err := x.dirFor(ctx, toDir, who, permW|permX); err != nil {
		return err
	}
	src, dst := joinPath(fromDir, fromName), joinPath(toDir, toName)
	sa, err := x.stat(ctx, src)
	if err != nil {
		return err
	}
	if src == dst {
		return nil
	}
	if sa.typ == typeDir && strings.HasPrefix(dst+"/", src+"/") {
		return statusErr(StatusInval, fmt.Errorf("cannot move %s into itself", src))
	}
	da, exists, err := x.exists(ctx, dst)
	if err != nil {
		return err
	}
	if exists {
		switch {
		case sa.typ == typeDir && da.typ != typeDir:
			return statusErr(StatusNotDir, nil)
		case sa.typ != typeDir && da.typ == typeDir:
			return statusErr(StatusIsDir, nil)
		case da.typ == typeDir:
			if err := x.checkEmpty(ctx, dst); err != nil {
				return err
			}
			if err := x.store.Delete(ctx, x.dirKey(dst)); err != nil {
				return fmt.Errorf("rename %s: %w", dst, err)
			}
		default:
			// The replaced file's cached state goes; its object is
			// overwritten by the copy.
			x.mu.Lock()
			if f := x.fileAtLocked(dst); f != nil {
				f.mu.Lock()
				if f.pending() {
					f.logDone(recGone)
				}
				f.gone = true
				f.removeData()
				delete(x.files, f.id)
				f.mu.Unlock()
			}
			x.mu.Unlock()
		}
	}
	if sa.typ == typeDir {
		err = x.renameDir(ctx, src, dst)
	} else {
		err = x.renameFile(ctx, src, dst)
	}
	if err != nil {
		return err
	}
	x.handles.rename(src, dst)
	x.mu.Lock()
	for _, m := range []map[string]*node{x.nodes} {
		for k := range m {
			if k == src || k == dst || strings.HasPrefix(k, src+"/") {
				delete(m, k)
			}
		}
	}
	for k := range x.dirs {
		if k == src || strings.HasPrefix(k, src+"/") {
			delete(x.dirs, k)
		}
	}
	x.mu.Unlock()
	x.listRemove(fromDir, fromName)
	x.listAdd(toDir, toName, dirEnt{typ: sa.typ, size: sa.size})
	return nil
}

// renameFile moves one object; a file with changes not yet uploaded is
// uploaded first (or, if it never was, just renamed locally).
func (x *share) renameFile(ctx context.Context, src, dst string) error {
	x.mu.Lock()
	f := x.fileAtLocked(src)
	x.mu.Unlock()
	if f != nil {
		f.upMu.Lock()
		defer f.upMu.Unlock()
		f.mu.Lock()
		if f.local {
			f.path = dst
			err := f.logState(false)
			f.mu.Unlock()
			return err
		}
		pending := f.pending()
		f.mu.Unlock()
		if pending {
			if err := x.uploadHeld(ctx, f); err != nil {
				return err
			}
		}
	}
	oi, err := x.store.Copy(ctx, x.key(dst), x.key(src), objstore.CopyOptions{})
	if err != nil {
		return fmt.Errorf("rename %s: %w", src, err)
	}
	if err := x.store.Delete(ctx, x.key(src)); err != nil {
		return fmt.Errorf("rename %s: %w", src, err)
	}
	if f != nil {
		f.mu.Lock()
		f.path, f.base = dst, oi.ETag
		if f.pending() {
			err = f.logState(false)
		}
		f.mu.Unlock()
	}
	return err
}

// renameDir moves every object below src to dst.
func (x *share) renameDir(ctx context.Context, src, dst string) error {
	// Files below src with changes: local-only ones just change path,
	// others are uploaded first.
	x.mu.Lock()
	var below []*cfile
	for _, f := range x.files {
		f.mu.Lock()
		if strings.HasPrefix(f.path, src+"/") {
			below = append(below, f)
		}
		f.mu.Unlock()
	}
	x.mu.Unlock()
	for _, f := range below {
		f.upMu.Lock()
		f.mu.Lock()
		pending, local := f.pending(), f.local
		f.mu.Unlock()
		var err error
		if pending && !local {
			err = x.uploadHeld(ctx, f)
		}
		f.upMu.Unlock()
		if err != nil {
			return err
		}
	}
	sk, dk := x.dirKey(src), x.dirKey(dst)
	var keys []string
	etags := map[string]string{}
	err := objstore.ListAll(ctx, x.store, sk, func(o objstore.ObjectInfo) error {
		oi, err := x.store.Copy(ctx, dk+o.Key[len(sk):], o.Key, objstore.CopyOptions{})
		if err != nil {
			return err
		}
		etags[o.Key[len(x.cfg.Prefix):]] = oi.ETag
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rename %s: %w", src, err)
	}
	for len(keys) > 0 {
		n := min(len(keys), objstore.MaxDeleteBatch)
		failed, err := x.store.DeleteMany(ctx, keys[:n])
		if err == nil && len(failed) > 0 {
			for k, e := range failed {
				err = fmt.Errorf("%s: %w", k, e)
				break
			}
		}
		if err != nil {
			return fmt.Errorf("rename %s: %w", src, err)
		}
		keys = keys[n:]
	}
	for _, f := range below {
		f.mu.Lock()
		if tag, ok := etags[f.path]; ok {
			f.base = tag
		}
		f.path = dst + f.path[len(src):]
		if f.pending() {
			_ = f.logState(false)
		}
		f.mu.Unlock()
	}
	return nil
}

// setattr changes attributes. Files keep the change locally and upload it
// (a metadata-only change is a server-side self-copy); directories and
// links are rewritten at once.
func (x *share) setattr(ctx context.Context, p string, sa sattr, who ident, guard *time.Time) (attrs, error) {
	a, err := x.stat(ctx, p)
	if err != nil {
		return a, err
	}
	if guard != nil && !guard.Equal(a.ctime) {
		return a, statusErr(StatusNotSync, nil)
	}
	owner := who.uid == 0 || who.uid == a.uid
	switch {
	case sa.setMode && !owner, sa.setUID && who.uid != 0 && sa.uid != a.uid:
		return a, statusErr(StatusPerm, nil)
	case sa.setGID && !owner, sa.setGID && who.uid != 0 && sa.gid != who.gid && !containsGID(who.gids, sa.gid):
		return a, statusErr(StatusPerm, nil)
	case sa.setSize && !may(a, who, permW):
		return a, statusErr(StatusAccess, nil)
	case (sa.atime == timeClient || sa.mtime == timeClient) && !owner:
		return a, statusErr(StatusPerm, nil)
	case (sa.atime == timeServer || sa.mtime == timeServer) && !owner && !may(a, who, permW):
		return a, statusErr(StatusAccess, nil)
	case sa.setSize && a.typ != typeReg:
		return a, statusErr(StatusInval, nil)
	case sa.setSize && sa.size > maxFileSize:
		return a, statusErr(StatusFBig, nil)
	}
	now := time.Now()
	apply := func(a *attrs) {
		if sa.setMode {
			a.mode = sa.mode & 0o7777
		}
		if sa.setUID {
			a.uid = sa.uid
		}
		if sa.setGID {
			a.gid = sa.gid
		}
		switch sa.atime {
		case timeServer:
			a.atime = now
		case timeClient:
			a.atime = sa.atimeVal
		}
		switch sa.mtime {
		case timeServer:
			a.mtime = now
		case timeClient:
			a.mtime = sa.mtimeVal
		}
		a.ctime = now
	}
	switch a.typ {
	case typeReg:
		id := x.handles.id(p)
		f := x.cached(id, p, a)
		f.mu.Lock()
		defer f.mu.Unlock()
		if sa.setSize {
			if err := f.truncate(ctx, int64(sa.size)); err != nil {
				return f.a, err
			}
			f.a.mtime = now
		}
		apply(&f.a)
		f.metaDirty = true
		f.gen++
		f.lastWrite = now
		if err := f.logState(false); err != nil {
			return f.a, err
		}
		return f.a, nil
	case typeDir:
		apply(&a)
		if p != "" {
			oi, err := x.store.Put(ctx, x.dirKey(p), bytes.NewReader(nil), 0, objstore.PutOptions{Metadata: metaOf(a)})
			if err != nil {
				return a, fmt.Errorf("setattr %s: %w", p, err)
			}
			a.etag = oi.ETag
		}
		x.setNode(p, a)
		return a, nil
	default:
		apply(&a)
		oi, err := x.store.Copy(ctx, x.key(p), x.key(p), objstore.CopyOptions{ReplaceMetadata: true, Metadata: metaOf(a)})
		if err != nil {
			return a, fmt.Errorf("setattr %s: %w", p, err)
		}
		a.etag = oi.ETag
		x.setNode(p, a)
		return a, nil
	}
}

// read reads from a regular file through the cache into buf.
//
// With tail, data held in a cache data file is not read but returned as
// that open file (see cfile.readAt; the caller closes it).
func (x *share) read(ctx context.Context, id uint64, p string, off uint64, buf []byte, who ident, tail bool) ([]byte, *os.File, bool, attrs, error) {
	a, err := x.stat(ctx, p)
	if err != nil {
		return nil, nil, false, a, err
	}
	switch {
	case a.typ == typeDir:
		return nil, nil, false, a, statusErr(StatusIsDir, nil)
	case a.typ != typeReg:
		return nil, nil, false, a, statusErr(StatusInval, nil)
	case !may(a, who, permR) && !(who.uid == a.uid):
		return nil, nil, false, a, statusErr(StatusAccess, nil)
	}
	f := x.cached(id, p, a)
	b, df, eof, fa, err := f.readAt(ctx, int64(off), buf, tail)
	if err == nil {
		a = fa
	}
	return b, df, eof, a, err
}

// maxFileSize is the largest S3 object.
const maxFileSize = 5 << 40

// write writes to a regular file through the cache.
func (x *share) write(ctx context.Context, id uint64, p string, off uint64, data []byte, sync bool, who ident) (attrs, error) {
	a, err := x.stat(ctx, p)
	if err != nil {
		return a, err
	}
	switch {
	case a.typ == typeDir:
		return a, statusErr(StatusIsDir, nil)
	case a.typ != typeReg:
		return a, statusErr(StatusInval, nil)
	case !may(a, who, permW):
		return a, statusErr(StatusAccess, nil)
	case off+uint64(len(data)) > maxFileSize:
		return a, statusErr(StatusFBig, nil)
	}
	f := x.cached(id, p, a)
	return f.writeAt(ctx, int64(off), data, sync)
}

// commit makes a file's writes durable in the cache and queues its upload.
func (x *share) commit(id uint64) error {
	x.mu.Lock()
	f := x.files[id]
	x.mu.Unlock()
	if f == nil {
		return x.handles.sync()
	}
	return f.commit()
}

// entry is one directory entry as READDIR returns it.
type entry struct {
	name string
	id   uint64
	a    attrs
}

// readdir lists a directory, sorted by name, with attributes: those of
// files with changes not yet uploaded, else cached ones matching the
// listed ETag, else the defaults for the listed object.
func (x *share) readdir(ctx context.Context, dir string, who ident) ([]entry, attrs, error) {
	da, err := x.dirFor(ctx, dir, who, permR)
	if err != nil {
		return nil, da, err
	}
	l, err := x.listDir(ctx, dir)
	if err != nil {
		return nil, da, err
	}
	x.mu.Lock()
	names := make([]string, 0, len(l.ents))
	for n := range l.ents {
		names = append(names, n)
	}
	ents := make(map[string]dirEnt, len(l.ents))
	for n, e := range l.ents {
		ents[n] = e
	}
	x.mu.Unlock()
	sort.Strings(names)
	out := make([]entry, 0, len(names))
	for _, n := range names {
		e := ents[n]
		p := joinPath(dir, n)
		id := x.handles.id(p)
		a := attrs{typ: e.typ, mode: defaultFileMode, size: e.size, etag: e.etag, atime: e.mtime, mtime: e.mtime, ctime: e.mtime}
		if e.typ == typeDir {
			a = x.defaultDirAttrs()
		}
		x.mu.Lock()
		local := false
		if f := x.files[id]; f != nil {
			var la attrs
			if la, local = f.localAttrs(); local {
				a = la
			}
		}
		if nd := x.nodes[p]; !local && nd != nil && (nd.a.etag == e.etag || e.typ == typeDir) && nd.a.typ == e.typ {
			a = nd.a
		}
		x.mu.Unlock()
		out = append(out, entry{name: n, id: id, a: a})
	}
	return out, da, nil
}
