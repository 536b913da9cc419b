package objstore

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Embedded is a Store kept in a local directory, with the semantics of S3 as
// far as Sluice uses them. It is the daemon's default store, so that Sluice
// runs with nothing else installed.
//
// Layout under the root directory:
//
//	objects/   one file per object; each "/"-separated key segment is
//	           escaped to a file name, and an object file carries the suffix
//	           ".o" (escaped names never contain '.'), so "a" and "a/b" can
//	           both exist
//	uploads/   one directory per multipart upload
//	tmp/       files being written; renamed into place when complete
//
// An object file holds the data followed by a trailer: the JSON metadata,
// its length (uint32, big endian) and the magic "SLO1". Writes go to tmp/,
// are fsynced and renamed into place, so a crash leaves either the old or
// the new object, never a partial one.
type Embedded struct {
	root  string
	locks [64]sync.Mutex
}

var _ Store = (*Embedded)(nil)

const (
	trailerMagic = "SLO1"
	objSuffix    = ".o"
	maxKeyLen    = 1024
	maxNameLen   = 255
)

// embeddedMeta is the JSON trailer of an object file.
type embeddedMeta struct {
	ETag         string            `json:"etag"`
	ContentType  string            `json:"content_type,omitempty"`
	StorageClass string            `json:"storage_class,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Modified     time.Time         `json:"modified"`
	// Key and Upload are set on multipart state files only.
	Key string `json:"key,omitempty"`
}

// OpenEmbedded opens (creating if needed) an embedded store rooted at dir.
// Leftover temporary files from an earlier crash are removed.
func OpenEmbedded(dir string) (*Embedded, error) {
	e := &Embedded{root: dir}
	for _, d := range []string{"objects", "uploads", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("embedded store: %w", err)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	for _, ent := range ents {
		_ = os.Remove(filepath.Join(dir, "tmp", ent.Name()))
	}
	return e, nil
}

// Kind returns "embedded".
func (e *Embedded) Kind() string { return "embedded" }

// escapeSegment maps one key segment to a file name: bytes outside
// [A-Za-z0-9_~-] become %XX, and the empty segment becomes "%".
func escapeSegment(seg string) string {
	if seg == "" {
		return "%"
	}
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// unescapeSegment reverses escapeSegment.
func unescapeSegment(name string) (string, bool) {
	if name == "%" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		v, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

// objectPath returns the file path of key's object.
func (e *Embedded) objectPath(key string) (string, error) {
	if key == "" || len(key) > maxKeyLen || !utf8.ValidString(key) {
		return "", fmt.Errorf("embedded store: key %q: %w", key, ErrInvalidArgument)
	}
	segs := strings.Split(key, "/")
	parts := make([]string, 0, len(segs)+2)
	parts = append(parts, e.root, "objects")
	for i, s := range segs {
		n := escapeSegment(s)
		if i == len(segs)-1 {
			n += objSuffix
		}
		if len(n) > maxNameLen {
			return "", fmt.Errorf("embedded store: key %q: segment too long: %w", key, ErrInvalidArgument)
		}
		parts = append(parts, n)
	}
	return filepath.Join(parts...), nil
}

func (e *Embedded) lock(key string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	m := &e.locks[h.Sum32()%uint32(len(e.locks))]
	m.Lock()
	return m.Unlock
}

// readMeta reads the trailer of an open object file and returns the metadata
// and the data length.
func readMeta(f *os.File) (embeddedMeta, int64, error) {
	var m embeddedMeta
	st, err := f.Stat()
	if err != nil {
		return m, 0, err
	}
	size := st.Size()
	if size < 8 {
		return m, 0, fmt.Errorf("embedded store: %s: truncated object file", f.Name())
	}
	var tail [8]byte
	if _, err := f.ReadAt(tail[:], size-8); err != nil {
		return m, 0, err
	}
	if string(tail[4:]) != trailerMagic {
		return m, 0, fmt.Errorf("embedded store: %s: bad trailer", f.Name())
	}
	n := int64(binary.BigEndian.Uint32(tail[:4]))
	if n > size-8 {
		return m, 0, fmt.Errorf("embedded store: %s: bad trailer length", f.Name())
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-8-n); err != nil {
		return m, 0, err
	}
	if err := json.Unmarshal(buf, &m); err != nil {
		return m, 0, fmt.Errorf("embedded store: %s: %w", f.Name(), err)
	}
	return m, size - 8 - n, nil
}

func writeTrailer(w io.Writer, m embeddedMeta) error {
	buf, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[:4], uint32(len(buf)))
	copy(tail[4:], trailerMagic)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	_, err = w.Write(tail[:])
	return err
}

func info(key string, m embeddedMeta, size int64) ObjectInfo {
	return ObjectInfo{
		Key: key, Size: size, ETag: m.ETag, LastModified: m.Modified,
		ContentType: m.ContentType, StorageClass: m.StorageClass, Metadata: m.Metadata,
	}
}

func normMeta(md map[string]string) map[string]string {
	if len(md) == 0 {
		return nil
	}
	out := make(map[string]string, len(md))
	for k, v := range md {
		out[strings.ToLower(k)] = v
	}
	return out
}

func storageClass(c string) string {
	if c == "" {
		return "STANDARD"
	}
	return c
}

// openObject opens key's object file and reads its trailer.
func (e *Embedded) openObject(key string) (*os.File, embeddedMeta, int64, error) {
	p, err := e.objectPath(key)
	if err != nil {
		return nil, embeddedMeta{}, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return nil, embeddedMeta{}, 0, fmt.Errorf("embedded store: %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, embeddedMeta{}, 0, fmt.Errorf("embedded store: %w", err)
	}
	m, size, err := readMeta(f)
	if err != nil {
		f.Close()
		return nil, m, 0, err
	}
	return f, m, size, nil
}

// tempFile creates a file in tmp/.
func (e *Embedded) tempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(e.root, "tmp"), "put-*")
}

// writeObject streams r into a new temp file with a trailer and returns it
// (synced, closed) with the data size and MD5.
func (e *Embedded) writeTemp(ctx context.Context, r io.Reader, size int64, finish func(sum []byte, n int64) embeddedMeta) (string, int64, error) {
	f, err := e.tempFile()
	if err != nil {
		return "", 0, fmt.Errorf("embedded store: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := md5.New()
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size)
	}
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, src})
	if err != nil {
		return "", 0, fmt.Errorf("embedded store: writing: %w", err)
	}
	if size >= 0 && n != size {
		return "", 0, fmt.Errorf("embedded store: body has %d bytes, want %d: %w", n, size, ErrInvalidArgument)
	}
	if err := writeTrailer(f, finish(h.Sum(nil), n)); err != nil {
		return "", 0, fmt.Errorf("embedded store: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("embedded store: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("embedded store: %w", err)
	}
	ok = true
	return f.Name(), n, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// checkPut evaluates a write precondition against the current object.
// The caller holds the key lock.
func (e *Embedded) checkPut(key string, opts PutOptions) error {
	if !opts.IfNoneMatch && opts.IfMatch == "" {
		return nil
	}
	f, m, _, err := e.openObject(key)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if f != nil {
		f.Close()
	}
	if opts.IfNoneMatch && exists {
		return fmt.Errorf("embedded store: %q exists: %w", key, ErrPreconditionFailed)
	}
	if opts.IfMatch != "" && (!exists || m.ETag != opts.IfMatch) {
		if !exists {
			return fmt.Errorf("embedded store: %q: %w", key, ErrNotFound)
		}
		return fmt.Errorf("embedded store: %q has etag %s: %w", key, m.ETag, ErrPreconditionFailed)
	}
	return nil
}

// install renames a finished temp file to key's object path, creating parent
// directories, after checking the precondition under the key lock.
func (e *Embedded) install(tmp, key string, opts PutOptions) error {
	p, err := e.objectPath(key)
	if err != nil {
		return err
	}
	unlock := e.lock(key)
	defer unlock()
	if err := e.checkPut(key, opts); err != nil {
		return err
	}
	// A concurrent Delete may remove an empty parent directory between
	// MkdirAll and Rename; try again when that happens.
	for attempt := 0; ; attempt++ {
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return fmt.Errorf("embedded store: %w", err)
		}
		err := os.Rename(tmp, p)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt > 10 {
			return fmt.Errorf("embedded store: %w", err)
		}
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	return nil
}

// Put implements Store.
func (e *Embedded) Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	if _, err := e.objectPath(key); err != nil {
		return ObjectInfo{}, err
	}
	var meta embeddedMeta
	tmp, n, err := e.writeTemp(ctx, r, size, func(sum []byte, _ int64) embeddedMeta {
		meta = embeddedMeta{
			ETag: hex.EncodeToString(sum), ContentType: opts.ContentType,
			StorageClass: storageClass(opts.StorageClass), Metadata: normMeta(opts.Metadata),
			Modified: time.Now().UTC(),
		}
		return meta
	})
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := e.install(tmp, key, opts); err != nil {
		os.Remove(tmp)
		return ObjectInfo{}, err
	}
	return info(key, meta, n), nil
}

type fileSection struct {
	*io.SectionReader
	f *os.File
}

func (s fileSection) Close() error { return s.f.Close() }

// Get implements Store.
func (e *Embedded) Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, ObjectInfo{}, err
	}
	f, m, size, err := e.openObject(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if opts.IfMatch != "" && opts.IfMatch != m.ETag {
		f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("embedded store: %q has etag %s: %w", key, m.ETag, ErrPreconditionFailed)
	}
	off, n := int64(0), size
	if opts.Range != nil {
		off, n, err = clampRange(*opts.Range, size)
		if err != nil {
			f.Close()
			return nil, ObjectInfo{}, fmt.Errorf("embedded store: %q: %w", key, err)
		}
	}
	return fileSection{io.NewSectionReader(f, off, n), f}, info(key, m, size), nil
}

// clampRange validates a range against an object size the way S3 does: the
// offset must lie inside the object; the length is cut at the end.
func clampRange(r Range, size int64) (off, n int64, err error) {
	if r.Offset < 0 || r.Length == 0 || r.Length < -1 || r.Offset >= size {
		return 0, 0, fmt.Errorf("range %d+%d of %d bytes: %w", r.Offset, r.Length, size, ErrInvalidArgument)
	}
	n = size - r.Offset
	if r.Length >= 0 && r.Length < n {
		n = r.Length
	}
	return r.Offset, n, nil
}

// Head implements Store.
func (e *Embedded) Head(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	f, m, size, err := e.openObject(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	f.Close()
	return info(key, m, size), nil
}

// Delete implements Store.
func (e *Embedded) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := e.objectPath(key)
	if err != nil {
		return err
	}
	unlock := e.lock(key)
	err = os.Remove(p)
	unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("embedded store: %w", err)
	}
	// Remove parent directories left empty; Remove fails on non-empty ones.
	top := filepath.Join(e.root, "objects")
	for d := filepath.Dir(p); d != top && strings.HasPrefix(d, top); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	return nil
}

// DeleteMany implements Store.
func (e *Embedded) DeleteMany(ctx context.Context, keys []string) (map[string]error, error) {
	if len(keys) > MaxDeleteBatch {
		return nil, fmt.Errorf("embedded store: %d keys in one batch: %w", len(keys), ErrInvalidArgument)
	}
	var failed map[string]error
	for _, k := range keys {
		if err := e.Delete(ctx, k); err != nil {
			if ctx.Err() != nil {
				return failed, ctx.Err()
			}
			if failed == nil {
				failed = map[string]error{}
			}
			failed[k] = err
		}
	}
	return failed, nil
}

// Copy implements Store.
func (e *Embedded) Copy(ctx context.Context, dst, src string, opts CopyOptions) (ObjectInfo, error) {
	if _, err := e.objectPath(dst); err != nil {
		return ObjectInfo{}, err
	}
	f, m, size, err := e.openObject(src)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer f.Close()
	if opts.IfMatch != "" && opts.IfMatch != m.ETag {
		return ObjectInfo{}, fmt.Errorf("embedded store: %q has etag %s: %w", src, m.ETag, ErrPreconditionFailed)
	}
	nm := m
	nm.Modified = time.Now().UTC()
	if opts.ReplaceMetadata {
		nm.ContentType, nm.StorageClass, nm.Metadata = opts.ContentType, storageClass(opts.StorageClass), normMeta(opts.Metadata)
	}
	// io.CopyN from an *os.File lets the kernel copy the range itself.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ObjectInfo{}, fmt.Errorf("embedded store: %w", err)
	}
	tmp, _, err := e.writeTemp(ctx, io.LimitReader(f, size), size, func([]byte, int64) embeddedMeta { return nm })
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := e.install(tmp, dst, PutOptions{}); err != nil {
		os.Remove(tmp)
		return ObjectInfo{}, err
	}
	return info(dst, nm, size), nil
}

// dirEntry is one name in an objects/ directory, decoded.
type dirEntry struct {
	name  string // file name on disk
	key   string // key segment; with "/" appended for directories
	isDir bool
}

func readEntries(dir string) ([]dirEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	out := make([]dirEntry, 0, len(ents))
	for _, ent := range ents {
		name := ent.Name()
		if ent.IsDir() {
			seg, ok := unescapeSegment(name)
			if ok {
				out = append(out, dirEntry{name: name, key: seg + "/", isDir: true})
			}
			continue
		}
		base, found := strings.CutSuffix(name, objSuffix)
		if !found {
			continue
		}
		if seg, ok := unescapeSegment(base); ok {
			out = append(out, dirEntry{name: name, key: seg})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, nil
}

// errStopWalk ends a listing walk early.
var errStopWalk = errors.New("stop walk")

// hasObjects reports whether a directory holds at least one object file.
func hasObjects(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), objSuffix) {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// List implements Store. The embedded store prunes whole directories for the
// "/" delimiter; other delimiters work but walk every key under the prefix.
func (e *Embedded) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	max := opts.MaxKeys
	if max <= 0 || max > MaxListKeys {
		max = MaxListKeys
	}
	marker := opts.StartAfter
	if opts.Token != "" {
		marker = opts.Token
	}
	prefix, delim := opts.Prefix, opts.Delimiter
	var page ListPage
	var last string
	emit := func(item string, isCP bool, key string, path string) error {
		if item <= marker || (isCP && item == last) {
			return nil
		}
		if len(page.Objects)+len(page.CommonPrefixes) == max {
			page.NextToken = last
			return errStopWalk
		}
		if isCP {
			page.CommonPrefixes = append(page.CommonPrefixes, item)
		} else {
			f, err := os.Open(path)
			if err != nil {
				return nil // deleted meanwhile
			}
			m, size, err := readMeta(f)
			f.Close()
			if err != nil {
				return err
			}
			oi := info(key, m, size)
			oi.Metadata = nil
			page.Objects = append(page.Objects, oi)
		}
		last = item
		return nil
	}
	var walk func(dir, keyPrefix string) error
	walk = func(dir, keyPrefix string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := readEntries(dir)
		if err != nil {
			return fmt.Errorf("embedded store: list: %w", err)
		}
		for _, ent := range ents {
			k := keyPrefix + ent.key
			p := filepath.Join(dir, ent.name)
			if !ent.isDir {
				if !strings.HasPrefix(k, prefix) {
					continue
				}
				item, isCP := k, false
				if delim != "" {
					if i := strings.Index(k[len(prefix):], delim); i >= 0 {
						item, isCP = k[:len(prefix)+i+len(delim)], true
					}
				}
				if err := emit(item, isCP, k, p); err != nil {
					return err
				}
				continue
			}
			// k is a directory prefix ending in "/".
			if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(prefix, k) {
				continue
			}
			if k < marker && !strings.HasPrefix(marker, k) {
				continue // every key below k sorts before the marker
			}
			if delim == "/" && len(k) > len(prefix) && strings.HasPrefix(k, prefix) {
				if hasObjects(p) {
					if err := emit(k, true, "", ""); err != nil {
						return err
					}
				}
				continue
			}
			if err := walk(p, k); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(filepath.Join(e.root, "objects"), "")
	if err != nil && !errors.Is(err, errStopWalk) {
		return ListPage{}, err
	}
	return page, nil
}

// uploadDir returns the directory of a multipart upload after checking that
// it exists and belongs to key.
func (e *Embedded) uploadDir(key, uploadID string) (string, embeddedMeta, error) {
	var m embeddedMeta
	if uploadID == "" || strings.ContainsAny(uploadID, "/\\.") {
		return "", m, fmt.Errorf("embedded store: upload %q: %w", uploadID, ErrNotFound)
	}
	dir := filepath.Join(e.root, "uploads", uploadID)
	buf, err := os.ReadFile(filepath.Join(dir, "upload.json"))
	if err != nil {
		return "", m, fmt.Errorf("embedded store: upload %q: %w", uploadID, ErrNotFound)
	}
	if err := json.Unmarshal(buf, &m); err != nil {
		return "", m, fmt.Errorf("embedded store: upload %q: %w", uploadID, err)
	}
	if m.Key != key {
		return "", m, fmt.Errorf("embedded store: upload %q is not for %q: %w", uploadID, key, ErrNotFound)
	}
	return dir, m, nil
}

// CreateMultipart implements Store.
func (e *Embedded) CreateMultipart(ctx context.Context, key string, opts PutOptions) (string, error) {
	if _, err := e.objectPath(key); err != nil {
		return "", err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	uploadID := hex.EncodeToString(id[:])
	dir := filepath.Join(e.root, "uploads", uploadID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("embedded store: %w", err)
	}
	m := embeddedMeta{Key: key, ContentType: opts.ContentType, StorageClass: storageClass(opts.StorageClass), Metadata: normMeta(opts.Metadata)}
	buf, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "upload.json"), buf, 0o640); err != nil {
		return "", fmt.Errorf("embedded store: %w", err)
	}
	return uploadID, nil
}

func partName(n int) string { return fmt.Sprintf("part-%05d", n) }

// UploadPart implements Store.
func (e *Embedded) UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error) {
	dir, _, err := e.uploadDir(key, uploadID)
	if err != nil {
		return Part{}, err
	}
	if n < 1 || n > 10000 {
		return Part{}, fmt.Errorf("embedded store: part number %d: %w", n, ErrInvalidArgument)
	}
	var etag string
	tmp, written, err := e.writeTemp(ctx, r, size, func(sum []byte, _ int64) embeddedMeta {
		etag = hex.EncodeToString(sum)
		return embeddedMeta{ETag: etag}
	})
	if err != nil {
		return Part{}, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, partName(n))); err != nil {
		os.Remove(tmp)
		return Part{}, fmt.Errorf("embedded store: upload %q: %w", uploadID, ErrNotFound)
	}
	return Part{Number: n, ETag: etag, Size: written}, nil
}

// UploadPartCopy implements Store.
func (e *Embedded) UploadPartCopy(ctx context.Context, key, uploadID string, n int, src string, offset, length int64) (Part, error) {
	f, _, size, err := e.openObject(src)
	if err != nil {
		return Part{}, err
	}
	defer f.Close()
	off, cnt, err := clampRange(Range{Offset: offset, Length: length}, size)
	if err != nil || (length > 0 && cnt != length) {
		return Part{}, fmt.Errorf("embedded store: copy range of %q: %w", src, ErrInvalidArgument)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return Part{}, fmt.Errorf("embedded store: %w", err)
	}
	return e.UploadPart(ctx, key, uploadID, n, io.LimitReader(f, cnt), cnt)
}

// CompleteMultipart implements Store.
func (e *Embedded) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (ObjectInfo, error) {
	dir, um, err := e.uploadDir(key, uploadID)
	if err != nil {
		return ObjectInfo{}, err
	}
	if len(parts) == 0 {
		return ObjectInfo{}, fmt.Errorf("embedded store: no parts: %w", ErrInvalidArgument)
	}
	files := make([]*os.File, 0, len(parts))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	sums := md5.New()
	var total int64
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return ObjectInfo{}, fmt.Errorf("embedded store: parts out of order: %w", ErrInvalidArgument)
		}
		f, err := os.Open(filepath.Join(dir, partName(p.Number)))
		if err != nil {
			return ObjectInfo{}, fmt.Errorf("embedded store: part %d: %w", p.Number, ErrInvalidArgument)
		}
		files = append(files, f)
		m, size, err := readMeta(f)
		if err != nil {
			return ObjectInfo{}, err
		}
		if m.ETag != strings.Trim(p.ETag, `"`) {
			return ObjectInfo{}, fmt.Errorf("embedded store: part %d etag mismatch: %w", p.Number, ErrInvalidArgument)
		}
		if i < len(parts)-1 && size < MinPartSize {
			return ObjectInfo{}, fmt.Errorf("embedded store: part %d is %d bytes, below the minimum: %w", p.Number, size, ErrInvalidArgument)
		}
		raw, _ := hex.DecodeString(m.ETag)
		sums.Write(raw)
		total += size
	}
	readers := make([]io.Reader, len(files))
	for i, f := range files {
		_, size, _ := readMeta(f)
		readers[i] = io.NewSectionReader(f, 0, size)
	}
	meta := embeddedMeta{
		ETag:        fmt.Sprintf("%s-%d", hex.EncodeToString(sums.Sum(nil)), len(parts)),
		ContentType: um.ContentType, StorageClass: um.StorageClass, Metadata: um.Metadata,
		Modified: time.Now().UTC(),
	}
	tmp, n, err := e.writeTemp(ctx, io.MultiReader(readers...), total, func([]byte, int64) embeddedMeta { return meta })
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := e.install(tmp, key, PutOptions{}); err != nil {
		os.Remove(tmp)
		return ObjectInfo{}, err
	}
	_ = os.RemoveAll(dir)
	return info(key, meta, n), nil
}

// AbortMultipart implements Store.
func (e *Embedded) AbortMultipart(ctx context.Context, key, uploadID string) error {
	dir, _, err := e.uploadDir(key, uploadID)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	return nil
}
