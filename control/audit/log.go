package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/fsutil"
)

// Files under the audit directory.
const (
	segmentPrefix = "seg-"
	segmentSuffix = ".jsonl"
	digestSuffix  = ".digest"
	keyFile       = "signing.key"
	// PublicKeyFile holds the hex Ed25519 public key that signs digests.
	PublicKeyFile = "public.key"
	deliveredMark = ".delivered"
)

// Options configure a Log. Zero fields take the defaults shown.
type Options struct {
	// MaxSegmentBytes seals a segment at this size (default 16 MiB).
	MaxSegmentBytes int64
	// MaxSegmentAge seals a segment this long after its first record
	// (default 1 hour), so the trail reaches the bucket regularly.
	MaxSegmentAge time.Duration
	// QueueSize bounds the records waiting for the writer (default 65536).
	QueueSize int
	// Retention deletes sealed, delivered local segments older than this
	// (default 90 days).
	Retention time.Duration
	// Uploader, when set, receives every sealed segment and its digest.
	Uploader Uploader
	// Logger receives the log's own diagnostics (never record contents).
	Logger *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// Uploader delivers sealed segments to the object store.
type Uploader interface {
	// Upload stores a file's contents under name (relative to the trail's
	// prefix).
	Upload(ctx context.Context, name string, data []byte) error
}

func (o *Options) defaults() {
	if o.MaxSegmentBytes <= 0 {
		o.MaxSegmentBytes = 16 << 20
	}
	if o.MaxSegmentAge <= 0 {
		o.MaxSegmentAge = time.Hour
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 65536
	}
	if o.Retention <= 0 {
		o.Retention = 90 * 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Digest seals a segment. Signature covers the JSON encoding of the digest
// with an empty Signature.
type Digest struct {
	Version    int       `json:"v"`
	Segment    string    `json:"segment"`
	FirstSeq   uint64    `json:"first_seq"`
	LastSeq    uint64    `json:"last_seq"`
	Count      int       `json:"count"`
	FirstPrev  string    `json:"first_prev"`
	LastHash   string    `json:"last_hash"`
	FileSHA256 string    `json:"file_sha256"`
	Size       int64     `json:"size"`
	Sealed     time.Time `json:"sealed"`
	// PrevDigest is the SHA-256 of the previous segment's digest file, so
	// whole segments cannot be dropped from the middle.
	PrevDigest string `json:"prev_digest"`
	PublicKey  string `json:"public_key"`
	Signature  string `json:"signature"`
}

func (d Digest) payload() ([]byte, error) {
	d.Signature = ""
	return json.Marshal(d)
}

// Log is an open audit trail.
type Log struct {
	dir  string
	opts Options
	key  ed25519.PrivateKey

	queue   chan Record
	flushq  chan flushReq
	dropped atomic.Int64
	closed  atomic.Bool
	mu      sync.Mutex // guards queue sends against Close
	wg      sync.WaitGroup
	stop    chan struct{}

	// Writer state, owned by the writer goroutine after Open.
	seq        uint64
	lastHash   string
	prevDigest string
	seg        *segment

	uploadKick chan struct{}
}

// segment is the open segment file.
type segment struct {
	name      string
	f         *os.File
	w         *bufio.Writer
	size      int64
	count     int
	firstSeq  uint64
	firstPrev string
	opened    time.Time
}

// Open opens the trail in dir (creating the directory and the signing key
// on first use), recovers the chain from the last segment (cutting a torn
// last line after a crash), and starts the writer.
func Open(dir string, opts Options) (*Log, error) {
	opts.defaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	key, err := loadOrCreateKey(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		dir: dir, opts: opts, key: key,
		queue: make(chan Record, opts.QueueSize), flushq: make(chan flushReq),
		stop: make(chan struct{}), uploadKick: make(chan struct{}, 1),
	}
	if err := l.recover(); err != nil {
		return nil, err
	}
	l.wg.Add(2)
	go l.writer()
	go l.uploader()
	l.kickUpload()
	return l, nil
}

func loadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, keyFile)
	raw, err := os.ReadFile(path)
	if err == nil {
		seed, derr := hex.DecodeString(strings.TrimSpace(string(raw)))
		if derr != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("audit: %s is not an Ed25519 seed", path)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(priv.Seed())+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), []byte(hex.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return priv, nil
}

// PublicKey returns the key that verifies digests.
func (l *Log) PublicKey() ed25519.PublicKey { return l.key.Public().(ed25519.PublicKey) }

// Dir returns the trail's directory.
func (l *Log) Dir() string { return l.dir }

// Dropped returns how many data events TryAppend dropped.
func (l *Log) Dropped() int64 { return l.dropped.Load() }

// segments lists segment file names in order.
func segments(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, segmentPrefix) && strings.HasSuffix(n, segmentSuffix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

func segmentName(firstSeq uint64) string {
	return fmt.Sprintf("%s%020d%s", segmentPrefix, firstSeq, segmentSuffix)
}

// recover restores seq, lastHash and prevDigest from disk. An unsealed
// last segment is reopened for appending after cutting a torn tail.
func (l *Log) recover() error {
	names, err := segments(l.dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		path := filepath.Join(l.dir, name)
		if raw, err := os.ReadFile(path + digestSuffix); err == nil {
			var d Digest
			if err := json.Unmarshal(raw, &d); err != nil {
				return fmt.Errorf("audit: digest of %s: %w", name, err)
			}
			sum := sha256.Sum256(raw)
			l.seq, l.lastHash, l.prevDigest = d.LastSeq, d.LastHash, hex.EncodeToString(sum[:])
			continue
		}
		// Unsealed: the segment being written when the daemon stopped.
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		good, last, count, first, err := scanTail(data)
		if err != nil {
			return fmt.Errorf("audit: %s: %w", name, err)
		}
		if good < len(data) {
			l.opts.Logger.Warn("audit: cutting a torn record at the end of the trail", "segment", name, "bytes", len(data)-good)
			if err := os.Truncate(path, int64(good)); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
		}
		if count == 0 {
			os.Remove(path)
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		l.seg = &segment{name: name, f: f, w: bufio.NewWriterSize(f, 64<<10), size: int64(good),
			count: count, firstSeq: first.Seq, firstPrev: first.Prev, opened: first.Time}
		l.seq, l.lastHash = last.Seq, last.Hash
	}
	return nil
}

// scanTail returns the length of the prefix of complete, parseable lines,
// the last and first records, and the count.
func scanTail(data []byte) (good int, last Record, count int, first Record, err error) {
	off := 0
	for off < len(data) {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			break
		}
		r, derr := decodeRecord(data[off : off+i])
		if derr != nil {
			break
		}
		if count == 0 {
			first = r
		}
		last = r
		count++
		off += i + 1
	}
	return off, last, count, first, nil
}

// Append queues a record, waiting for room. It fills Version and Time.
// It fails only after Close.
func (l *Log) Append(r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return errors.New("audit: log closed")
	}
	if r.Time.IsZero() {
		r.Time = l.opts.Now().UTC()
	}
	r.Version = recordVersion
	r.Params = Redact(r.Params)
	l.queue <- r
	return nil
}

// TryAppend queues a record if there is room and reports whether it did;
// a dropped record is counted (Dropped). For data-path events.
func (l *Log) TryAppend(r Record) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false
	}
	if r.Time.IsZero() {
		r.Time = l.opts.Now().UTC()
	}
	r.Version = recordVersion
	r.Params = Redact(r.Params)
	select {
	case l.queue <- r:
		return true
	default:
		l.dropped.Add(1)
		return false
	}
}

// flushReq asks the writer to sync (and with seal, to seal the segment).
type flushReq struct {
	seal bool
	done chan error
}

// Flush waits until every record queued so far is written and fsynced.
func (l *Log) Flush() error { return l.request(false) }

// Seal closes the open segment with a signed digest now.
func (l *Log) Seal() error { return l.request(true) }

func (l *Log) request(seal bool) error {
	req := flushReq{seal: seal, done: make(chan error, 1)}
	select {
	case l.flushq <- req:
	case <-l.stop:
		return nil
	}
	return <-req.done
}

// Close drains the queue, seals the open segment, delivers what it can and
// stops.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return nil
	}
	close(l.queue)
	l.mu.Unlock()
	l.wg.Wait()
	return nil
}

// writer is the single goroutine that writes records.
func (l *Log) writer() {
	defer l.wg.Done()
	defer close(l.stop)
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-l.queue:
			if !ok {
				if err := l.sealSegment(); err != nil {
					l.opts.Logger.Error("audit: sealing at close", "err", err)
				}
				return
			}
			// Batch whatever else is waiting, then sync once.
			err := l.write(r)
			if err == nil {
				err = l.drain()
			}
			if err == nil {
				err = l.sync()
			}
			if err != nil {
				l.opts.Logger.Error("audit: writing the trail", "err", err)
			}
		case req := <-l.flushq:
			// Records queued before the request are written first.
			err := l.drain()
			if err == nil {
				err = l.sync()
			}
			if err == nil && req.seal {
				err = l.sealSegment()
			}
			req.done <- err
		case <-tick.C:
			if l.seg != nil && l.opts.Now().Sub(l.seg.opened) >= l.opts.MaxSegmentAge {
				if err := l.sealSegment(); err != nil {
					l.opts.Logger.Error("audit: sealing an old segment", "err", err)
				}
			}
		}
	}
}

// drain writes the records waiting in the queue without blocking.
func (l *Log) drain() error {
	for {
		select {
		case r, ok := <-l.queue:
			if !ok {
				return nil
			}
			if err := l.write(r); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// write appends one record to the open segment, opening or rotating it.
func (l *Log) write(r Record) error {
	if l.seg != nil && (l.seg.size >= l.opts.MaxSegmentBytes || r.Time.Sub(l.seg.opened) >= l.opts.MaxSegmentAge) {
		if err := l.sealSegment(); err != nil {
			return err
		}
	}
	l.seq++
	r.Seq = l.seq
	r.Prev = l.lastHash
	h, err := r.computeHash()
	if err != nil {
		return err
	}
	r.Hash = h
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if l.seg == nil {
		name := segmentName(r.Seq)
		f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		l.seg = &segment{name: name, f: f, w: bufio.NewWriterSize(f, 64<<10), firstSeq: r.Seq, firstPrev: r.Prev, opened: r.Time}
	}
	if _, err := l.seg.w.Write(line); err != nil {
		return err
	}
	l.seg.size += int64(len(line))
	l.seg.count++
	l.lastHash = h
	return nil
}

func (l *Log) sync() error {
	if l.seg == nil {
		return nil
	}
	if err := l.seg.w.Flush(); err != nil {
		return err
	}
	return l.seg.f.Sync()
}

// sealSegment writes the open segment's signed digest and closes it.
func (l *Log) sealSegment() error {
	s := l.seg
	if s == nil {
		return nil
	}
	if err := l.sync(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	l.seg = nil
	data, err := os.ReadFile(filepath.Join(l.dir, s.name))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	d := Digest{
		Version: 1, Segment: s.name, FirstSeq: s.firstSeq, LastSeq: l.seq, Count: s.count,
		FirstPrev: s.firstPrev, LastHash: l.lastHash, FileSHA256: hex.EncodeToString(sum[:]),
		Size: int64(len(data)), Sealed: l.opts.Now().UTC(), PrevDigest: l.prevDigest,
		PublicKey: hex.EncodeToString(l.PublicKey()),
	}
	payload, err := d.payload()
	if err != nil {
		return err
	}
	d.Signature = hex.EncodeToString(ed25519.Sign(l.key, payload))
	raw, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	raw = append(raw, '\n')
	if err := fsutil.WriteFileAtomic(filepath.Join(l.dir, s.name+digestSuffix), raw, 0o600); err != nil {
		return err
	}
	dsum := sha256.Sum256(raw)
	l.prevDigest = hex.EncodeToString(dsum[:])
	l.kickUpload()
	return nil
}

func (l *Log) kickUpload() {
	select {
	case l.uploadKick <- struct{}{}:
	default:
	}
}

// uploader delivers sealed segments and applies local retention.
func (l *Log) uploader() {
	defer l.wg.Done()
	retry := time.NewTicker(time.Minute)
	defer retry.Stop()
	for {
		select {
		case <-l.uploadKick:
		case <-retry.C:
		case <-l.stop:
			// A last attempt for what the writer sealed at close.
			l.deliver()
			return
		}
		l.deliver()
	}
}

// deliver uploads every sealed, undelivered segment (digest last, so a
// bucket copy with a digest is complete) and removes expired local ones.
func (l *Log) deliver() {
	names, err := segments(l.dir)
	if err != nil {
		return
	}
	pubPath := filepath.Join(l.dir, PublicKeyFile)
	if _, err := os.Stat(pubPath + deliveredMark); err != nil && l.opts.Uploader != nil {
		if pub, err := os.ReadFile(pubPath); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := l.opts.Uploader.Upload(ctx, PublicKeyFile, pub); err != nil {
				l.opts.Logger.Warn("audit: delivering the public key", "err", err)
			} else {
				_ = os.WriteFile(pubPath+deliveredMark, nil, 0o600)
			}
			cancel()
		}
	}
	for _, name := range names {
		path := filepath.Join(l.dir, name)
		digest, err := os.ReadFile(path + digestSuffix)
		if err != nil {
			continue // not sealed
		}
		if _, err := os.Stat(path + deliveredMark); err != nil && l.opts.Uploader != nil {
			data, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			err = l.opts.Uploader.Upload(ctx, name, data)
			if err == nil {
				err = l.opts.Uploader.Upload(ctx, name+digestSuffix, digest)
			}
			cancel()
			if err != nil {
				l.opts.Logger.Warn("audit: delivering a segment; will retry", "segment", name, "err", err)
				return
			}
			_ = os.WriteFile(path+deliveredMark, nil, 0o600)
		}
		var d Digest
		if json.Unmarshal(digest, &d) == nil && l.opts.Now().Sub(d.Sealed) > l.opts.Retention {
			if _, err := os.Stat(path + deliveredMark); err == nil || l.opts.Uploader == nil {
				os.Remove(path)
				os.Remove(path + deliveredMark)
				// The digest stays: it keeps the chain of digests whole.
			}
		}
	}
}

// readLines calls fn for every line of r.
func readLines(r io.Reader, fn func(line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}
