package vtl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/internal/objstore"
)

// tapeIO is a tape opened in a drive: its index, the segment being filled,
// the background uploader and the read cache. It is not safe for concurrent
// use; the drive serializes access.
type tapeIO struct {
	store   objstore.Store
	codec   *codec
	prefix  string // "<...>tapes/<barcode>/"
	segSize int
	fail    func(string) error

	x       *tapeIndex
	dirty   bool     // index changed since the last commit
	garbage []uint64 // segment objects no longer referenced
	// garbageChunks are index chunks replaced by the last commit.
	garbageChunks []uint64

	// write side
	up   *uploader
	open []byte // data of the last segment while it is being filled
	// stop is closed when the tape closes; it cancels background uploads
	// and read-ahead (see background).
	stop   chan struct{}
	idxBuf []byte

	// read side
	readAhead int
	cur       segData
	ahead     []pending // read-ahead in segment order
	spares    []segData // free buffers
}

// segData is a decoded segment held by the read cache.
type segData struct {
	idx  int
	seq  uint64
	raw  []byte
	comp []byte
	err  error
}

func segKey(prefix string, seq uint64) string {
	return prefix + "seg-" + fmt.Sprintf("%016x", seq)
}

// openTape loads the index of the tape stored under prefix (an empty tape
// when there is none). With gc it deletes segment objects the index does
// not reference (left by a crash before a commit).
func openTape(ctx context.Context, store objstore.Store, c *codec, prefix string, segSize, conc, readAhead, chunkSegs int, gc bool, fail func(string) error) (*tapeIO, error) {
	t := &tapeIO{store: store, codec: c, prefix: prefix, segSize: segSize, fail: fail, readAhead: readAhead}
	t.cur.idx = -1
	x, err := loadIndex(ctx, store, prefix, chunkSegs)
	if err != nil {
		return nil, err
	}
	t.x = x
	if gc {
		ref := make(map[uint64]bool, len(x.segs))
		for _, s := range x.segs {
			ref[s.seq] = true
		}
		var del []string
		chunks := make(map[uint64]bool, len(x.chunks))
		for _, c := range x.chunks {
			chunks[c.id] = true
		}
		err := objstore.ListAll(ctx, store, prefix, func(o objstore.ObjectInfo) error {
			name := strings.TrimPrefix(o.Key, prefix)
			if s, ok := strings.CutPrefix(name, "seg-"); ok {
				if seq, perr := strconv.ParseUint(s, 16, 64); perr == nil && !ref[seq] {
					del = append(del, o.Key)
				}
			}
			if s, ok := strings.CutPrefix(name, "idx-"); ok {
				if id, perr := strconv.ParseUint(s, 16, 64); perr == nil && !chunks[id] {
					del = append(del, o.Key)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("vtl: list segments: %w", err)
		}
		if err := deleteKeys(ctx, store, del); err != nil {
			return nil, err
		}
	}
	t.up = newUploader(store, c, conc)
	t.stop = make(chan struct{})
	return t, nil
}

func chunkKey(prefix string, id uint64) string {
	return prefix + "idx-" + fmt.Sprintf("%016x", id)
}

// getAll reads a whole small object.
func getAll(ctx context.Context, store objstore.Store, key string) ([]byte, error) {
	rc, _, err := store.Get(ctx, key, objstore.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("vtl: get %s: %w", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("vtl: read %s: %w", key, err)
	}
	return b, nil
}

// loadIndex reads and decodes the index of the tape under prefix: the
// root object, then its chunks. A missing root is an empty tape.
func loadIndex(ctx context.Context, store objstore.Store, prefix string, chunkSegs int) (*tapeIndex, error) {
	b, err := getAll(ctx, store, prefix+"index")
	if errors.Is(err, objstore.ErrNotFound) {
		return &tapeIndex{nextSeq: 1, nextChunk: 1, chunkSegs: chunkSegs}, nil
	}
	if err != nil {
		return nil, err
	}
	x, chunks, err := decodeRoot(b)
	if err != nil {
		return nil, err
	}
	x.chunks = chunks
	for i, c := range x.chunks {
		b, err := getAll(ctx, store, chunkKey(prefix, c.id))
		if err != nil {
			return nil, err
		}
		if len(b) != int(c.size) {
			return nil, fmt.Errorf("%w: chunk %d is %d bytes, root says %d", ErrCorruptIndex, c.id, len(b), c.size)
		}
		before := len(x.segs)
		if err := x.decodeChunk(b); err != nil {
			return nil, err
		}
		if n := len(x.segs) - before; n != x.chunkSegs && i != len(x.chunks)-1 || n == 0 {
			return nil, fmt.Errorf("%w: chunk %d holds %d segments", ErrCorruptIndex, c.id, n)
		}
	}
	x.dirtyFrom = len(x.segs)
	return x, nil
}

func deleteKeys(ctx context.Context, store objstore.Store, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), objstore.MaxDeleteBatch)
		failed, err := store.DeleteMany(ctx, keys[:n])
		if err != nil {
			return fmt.Errorf("vtl: delete: %w", err)
		}
		for k, e := range failed {
			return fmt.Errorf("vtl: delete %s: %w", k, e)
		}
		keys = keys[n:]
	}
	return nil
}

// background returns a context for work a command starts and that
// outlives it (an upload, a read-ahead): it keeps the command's values but
// not its cancellation, and ends when the tape closes. The caller must call
// done when the work is over.
func (t *tapeIO) background(ctx context.Context) (bg context.Context, done func()) {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-t.stop:
			cancel()
		case <-bg.Done():
		}
	}()
	return bg, cancel
}

// writing reports whether a segment is being filled.
func (t *tapeIO) writing() bool { return t.open != nil }

// prepareWrite truncates the tape at pos before new objects are written
// there.
func (t *tapeIO) prepareWrite(pos uint64) {
	if pos >= t.x.eod() {
		return
	}
	if t.open != nil {
		last := &t.x.segs[len(t.x.segs)-1]
		if pos > last.first {
			t.x.truncate(pos)
			t.open = t.open[:last.rawLen]
			t.dirty = true
			return
		}
		// The open segment disappears entirely.
		select {
		case t.up.raw <- t.open:
		default:
		}
		t.open = nil
	}
	eodSegs := len(t.x.segs)
	t.x.truncate(pos)
	t.x.touch(len(t.x.segs))
	for _, s := range t.x.segs[len(t.x.segs):eodSegs] {
		if s.seq != 0 {
			t.garbage = append(t.garbage, s.seq)
		}
	}
	t.dirty = true
}

// writeRecord appends one record at the end of the tape.
func (t *tapeIO) writeRecord(ctx context.Context, data []byte) error {
	if t.open != nil && len(t.open)+len(data) > cap(t.open) {
		if err := t.seal(ctx); err != nil {
			return err
		}
	}
	if t.open == nil {
		b, err := t.up.buffer(ctx, max(t.segSize, len(data)))
		if err != nil {
			return err
		}
		if cap(b) < len(data) {
			b = make([]byte, 0, len(data))
		}
		t.open = b
		t.x.segs = append(t.x.segs, segInfo{seq: t.x.nextSeq, first: t.x.eod(), firstByte: t.x.usedBytes()})
		t.x.nextSeq++
	}
	t.open = append(t.open, data...)
	t.x.touch(len(t.x.segs) - 1)
	t.x.segs[len(t.x.segs)-1].appendRun(uint32(len(data)), 1)
	t.dirty = true
	return nil
}

// writeFilemarks appends n filemarks at the end of the tape.
func (t *tapeIO) writeFilemarks(n uint32) error {
	if uint64(len(t.x.fms))+uint64(n) > maxFilemarks {
		return fmt.Errorf("%w: more than %d filemarks", ErrInvalid, maxFilemarks)
	}
	eod := t.x.eod()
	k := len(t.x.segs)
	if t.open == nil && (k == 0 || t.x.segs[k-1].seq != 0) {
		t.x.segs = append(t.x.segs, segInfo{first: eod, firstByte: t.x.usedBytes()})
		k++
	}
	t.x.touch(k - 1)
	t.x.segs[k-1].appendRun(fmSize, n)
	for i := uint64(0); i < uint64(n); i++ {
		t.x.fms = append(t.x.fms, eod+i)
	}
	t.dirty = true
	return nil
}

// seal hands the open segment to the uploader.
func (t *tapeIO) seal(ctx context.Context) error {
	if t.open == nil {
		return nil
	}
	s := &t.x.segs[len(t.x.segs)-1]
	raw := t.open
	t.open = nil
	return t.up.submit(ctx, t.background, segKey(t.prefix, s.seq), s.seq, raw, t.fail)
}

// commit makes everything written durable: it uploads the open segment,
// waits for every upload, then writes the index. This is the durability
// point (see the package documentation).
func (t *tapeIO) commit(ctx context.Context) error {
	if !t.dirty && t.open == nil {
		return nil
	}
	if err := t.seal(ctx); err != nil {
		return err
	}
	if err := t.up.wait(); err != nil {
		return err
	}
	for i := len(t.x.segs) - 1; i >= 0; i-- {
		s := &t.x.segs[i]
		if s.seq == 0 {
			continue
		}
		if s.objLen != 0 {
			break
		}
		n, ok := t.up.objLen(s.seq)
		if !ok {
			return fmt.Errorf("vtl: segment %d was never uploaded", s.seq)
		}
		s.objLen = n
	}
	if err := t.fail("vtl/index-commit"); err != nil {
		return fmt.Errorf("vtl: commit index: %w", err)
	}
	x := t.x
	cs := x.chunkSegs
	first := min(x.dirtyFrom, len(x.segs)) / cs
	nChunks := (len(x.segs) + cs - 1) / cs
	chunks := append([]chunkRef(nil), x.chunks[:min(first, len(x.chunks))]...)
	for k := first; k < nChunks; k++ {
		t.idxBuf = encodeChunk(t.idxBuf[:0], x.segs[k*cs:min((k+1)*cs, len(x.segs))])
		id := x.nextChunk
		x.nextChunk++
		if _, err := t.store.Put(ctx, chunkKey(t.prefix, id), bytes.NewReader(t.idxBuf), int64(len(t.idxBuf)), objstore.PutOptions{ContentType: "application/octet-stream"}); err != nil {
			return fmt.Errorf("vtl: commit index chunk: %w", err)
		}
		chunks = append(chunks, chunkRef{id: id, size: uint32(len(t.idxBuf))})
	}
	t.idxBuf = encodeRoot(t.idxBuf[:0], x, chunks)
	if _, err := t.store.Put(ctx, t.prefix+"index", bytes.NewReader(t.idxBuf), int64(len(t.idxBuf)), objstore.PutOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("vtl: commit index: %w", err)
	}
	for _, c := range x.chunks[min(first, len(x.chunks)):] {
		t.garbageChunks = append(t.garbageChunks, c.id)
	}
	x.chunks = chunks
	x.dirtyFrom = len(x.segs)
	t.dirty = false
	if len(t.garbage)+len(t.garbageChunks) > 0 {
		keys := make([]string, 0, len(t.garbage)+len(t.garbageChunks))
		for _, seq := range t.garbage {
			keys = append(keys, segKey(t.prefix, seq))
		}
		for _, id := range t.garbageChunks {
			keys = append(keys, chunkKey(t.prefix, id))
		}
		t.garbage, t.garbageChunks = t.garbage[:0], t.garbageChunks[:0]
		// Unreferenced objects are also removed at the next load, so a
		// failure here loses nothing.
		_ = deleteKeys(ctx, t.store, keys)
	}
	return nil
}

// readObject returns the object at c: the record data (valid until the
// next call), or isFM for a filemark.
func (t *tapeIO) readObject(ctx context.Context, c cursor) ([]byte, bool, error) {
	size := t.x.object(c)
	if size == fmSize {
		return nil, true, nil
	}
	raw, err := t.segment(ctx, c.seg)
	if err != nil {
		return nil, false, err
	}
	return raw[c.off : c.off+size], false, nil
}

// pending is a segment being read ahead.
type pending struct {
	idx int
	seq uint64
	ch  chan segData
}

// segment returns the decoded data of segment i, from the cache, the
// read-ahead queue or the store, and keeps up to readAhead following
// segments on their way.
func (t *tapeIO) segment(ctx context.Context, i int) ([]byte, error) {
	s := &t.x.segs[i]
	if t.cur.idx == i && t.cur.seq == s.seq && t.cur.err == nil {
		return t.cur.raw[:s.rawLen], nil
	}
	var d segData
	got := false
	if len(t.ahead) > 0 && t.ahead[0].idx == i && t.ahead[0].seq == s.seq {
		d = <-t.ahead[0].ch
		t.ahead = t.ahead[1:]
		got = d.err == nil
		if !got {
			t.spares = append(t.spares, d)
		}
	} else {
		t.drainAhead()
	}
	if !got {
		d = t.spareData()
		d.seq = s.seq
		var err error
		d.comp, err = fetchSegment(ctx, t.store, segKey(t.prefix, s.seq), s.objLen, d.comp)
		if err == nil {
			var raw []byte
			raw, err = t.codec.decode(d.raw, d.comp, s.rawLen)
			if raw != nil {
				d.raw = raw[:cap(raw)]
			}
		}
		if err != nil {
			d.idx = -1
			t.spares = append(t.spares, d)
			return nil, err
		}
	}
	d.idx = i
	if t.cur.raw != nil || t.cur.comp != nil {
		t.cur.idx = -1
		t.spares = append(t.spares, t.cur)
	}
	t.cur = d
	t.fillAhead(ctx, i)
	return t.cur.raw[:s.rawLen], nil
}

// spareData returns a free segment buffer pair.
func (t *tapeIO) spareData() segData {
	if n := len(t.spares); n > 0 {
		d := t.spares[n-1]
		t.spares = t.spares[:n-1]
		d.err = nil
		return d
	}
	return segData{idx: -1}
}

// fillAhead starts reading the segments after i, up to the read-ahead
// depth.
func (t *tapeIO) fillAhead(ctx context.Context, i int) {
	next := i + 1
	if n := len(t.ahead); n > 0 {
		next = t.ahead[n-1].idx + 1
	}
	for len(t.ahead) < t.readAhead && next < len(t.x.segs) {
		s := t.x.segs[next]
		next++
		if s.seq == 0 || s.objLen == 0 {
			continue
		}
		p := pending{idx: next - 1, seq: s.seq, ch: make(chan segData, 1)}
		t.ahead = append(t.ahead, p)
		d := t.spareData()
		bg, done := t.background(ctx)
		go func() {
			defer done()
			ctx := bg
			d.idx, d.seq = p.idx, s.seq
			d.comp, d.err = fetchSegment(ctx, t.store, segKey(t.prefix, s.seq), s.objLen, d.comp)
			if d.err == nil {
				var raw []byte
				raw, d.err = t.codec.decode(d.raw, d.comp, s.rawLen)
				if raw != nil {
					d.raw = raw[:cap(raw)]
				}
			}
			p.ch <- d
		}()
	}
}

// drainAhead waits for every read-ahead and keeps the buffers.
func (t *tapeIO) drainAhead() {
	for _, p := range t.ahead {
		d := <-p.ch
		d.idx = -1
		t.spares = append(t.spares, d)
	}
	t.ahead = t.ahead[:0]
}

// close commits (when commitFirst) and stops background work.
func (t *tapeIO) close(ctx context.Context, commitFirst bool) error {
	var err error
	if commitFirst {
		err = t.commit(ctx)
	}
	close(t.stop)
	t.up.wait()
	t.drainAhead()
	return err
}

// dropReadCache forgets cached segment data (before the tape changes).
func (t *tapeIO) dropReadCache() {
	t.drainAhead()
	t.cur.idx = -1
}
