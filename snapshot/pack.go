package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Packs: a run that stores many new chunks writes them into pack objects
// of about PackSize bytes instead of one object per chunk, because an
// object store's cost per object (requests, metadata, fsync; on S3 the
// price per PUT) dominates at 1 MiB. Each pack has an index object; the
// ChunkStore keeps the locations of packed chunks in memory, so readers
// see no difference between a packed chunk and a chunk object (DESIGN.md,
// "Packs").
//
// Pack object (packs/<32 hex>): the chunk objects one after another, then a
// copy of the pack's index, then a footer: the index length (u32, big
// endian) and "SPK1". The copy makes a pack self-describing if its index
// object is lost.
//
// Index object (packidx/<32 hex>), big endian:
//
//	0   4  magic "SPIX"
//	4   1  version (1)
//	5   3  reserved, zero
//	8   4  chunk count n (1..maxPackChunks)
//	12  n × [chunk id (32) | stored length (u32)]   chunks in pack order,
//	        each starting where the previous ended, the first at offset 0
//	..  32 SHA-256 of everything before
const (
	packIndexVersion   = 1
	packIndexHeaderLen = 12
	packEntryLen       = 36
	packFooterLen      = 8
	// DefaultPackSize is the size at which a pack is closed and stored.
	DefaultPackSize = 16 << 20
	// maxPackChunks bounds the chunks of one pack (the writer closes a
	// pack when it reaches it; the decoder refuses more).
	maxPackChunks = 1 << 16
	// maxPackData bounds the chunk bytes of one pack.
	maxPackData = 256 << 20
)

// packEntry locates one chunk in a pack.
type packEntry struct {
	ID  ChunkID
	Off uint32
	Len uint32
}

// encodePackIndex returns the index object for entries, which must be
// contiguous from offset 0.
func encodePackIndex(entries []packEntry) []byte {
	b := make([]byte, packIndexHeaderLen, packIndexHeaderLen+len(entries)*packEntryLen+sha256.Size)
	copy(b, "SPIX")
	b[4] = packIndexVersion
	binary.BigEndian.PutUint32(b[8:], uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.ID[:]...)
		b = binary.BigEndian.AppendUint32(b, e.Len)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// decodePackIndex parses and checks an index object.
func decodePackIndex(b []byte) ([]packEntry, error) {
	if len(b) < packIndexHeaderLen+sha256.Size || string(b[:4]) != "SPIX" {
		return nil, fmt.Errorf("pack index: bad header: %w", ErrCorrupt)
	}
	if b[4] != packIndexVersion || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, fmt.Errorf("pack index: version %d: %w", b[4], ErrCorrupt)
	}
	n := int(binary.BigEndian.Uint32(b[8:]))
	if n < 1 || n > maxPackChunks || len(b) != packIndexHeaderLen+n*packEntryLen+sha256.Size {
		return nil, fmt.Errorf("pack index: %d chunks in %d bytes: %w", n, len(b), ErrCorrupt)
	}
	body := b[:len(b)-sha256.Size]
	if sha256.Sum256(body) != [32]byte(b[len(body):]) {
		return nil, fmt.Errorf("pack index: checksum mismatch: %w", ErrCorrupt)
	}
	return decodeEntries(body[packIndexHeaderLen:], n)
}

// decodeEntries decodes n index entries (chunk id, length) from p, which
// holds exactly them, giving each its offset in the pack.
func decodeEntries(p []byte, n int) ([]packEntry, error) {
	entries := make([]packEntry, n)
	var off uint64
	for i := range entries {
		q := p[i*packEntryLen:]
		e := &entries[i]
		copy(e.ID[:], q[:32])
		e.Len = binary.BigEndian.Uint32(q[32:])
		if e.ID.IsZero() || e.Len <= chunkHeaderLen || int64(e.Len) > int64(EncodeBound(MaxBlockSize)) {
			return nil, fmt.Errorf("pack index: chunk %d: id %s, %d bytes: %w", i, e.ID, e.Len, ErrCorrupt)
		}
		e.Off = uint32(off)
		off += uint64(e.Len)
		if off > maxPackData {
			return nil, fmt.Errorf("pack index: over %d bytes of chunks: %w", maxPackData, ErrCorrupt)
		}
	}
	return entries, nil
}

// Merged index object (packidx/all-<32 hex>), written by garbage
// collection to describe many packs in one object, big endian:
//
//	0   4  magic "SPIM"
//	4   1  version (1)
//	5   3  reserved, zero
//	8   4  pack count m (1..maxMergedPacks)
//	12  m × [pack id (16) | chunk count n (u32) | n × (chunk id (32) | length (u32))],
//	        packs in increasing id order
//	..  32 SHA-256 of everything before
const (
	mergedPrefix = "all-"
	// maxMergedPacks and maxMergedBytes bound a merged index; GC starts a
	// new one before either is reached.
	maxMergedPacks = 1 << 14
	maxMergedBytes = 64 << 20
	mergedTarget   = 8 << 20
)

// encodeMergedIndex returns the merged index object for packs, which must
// be sorted by id.
func encodeMergedIndex(packs []*packInfo) []byte {
	b := make([]byte, packIndexHeaderLen, mergedIndexSize(packs))
	copy(b, "SPIM")
	b[4] = packIndexVersion
	binary.BigEndian.PutUint32(b[8:], uint32(len(packs)))
	for _, p := range packs {
		id, _ := hex.DecodeString(p.id)
		b = append(b, id...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(p.entries)))
		for _, e := range p.entries {
			b = append(b, e.ID[:]...)
			b = binary.BigEndian.AppendUint32(b, e.Len)
		}
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// mergedIndexSize is the size of the merged index of packs.
func mergedIndexSize(packs []*packInfo) int {
	n := packIndexHeaderLen + sha256.Size
	for _, p := range packs {
		n += 20 + len(p.entries)*packEntryLen
	}
	return n
}

// decodeMergedIndex parses and checks a merged index object.
func decodeMergedIndex(b []byte) ([]*packInfo, error) {
	if len(b) < packIndexHeaderLen+sha256.Size || len(b) > maxMergedBytes || string(b[:4]) != "SPIM" {
		return nil, fmt.Errorf("merged pack index: bad header: %w", ErrCorrupt)
	}
	if b[4] != packIndexVersion || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, fmt.Errorf("merged pack index: version %d: %w", b[4], ErrCorrupt)
	}
	m := int(binary.BigEndian.Uint32(b[8:]))
	if m < 1 || m > maxMergedPacks {
		return nil, fmt.Errorf("merged pack index: %d packs: %w", m, ErrCorrupt)
	}
	body := b[:len(b)-sha256.Size]
	if sha256.Sum256(body) != [32]byte(b[len(body):]) {
		return nil, fmt.Errorf("merged pack index: checksum mismatch: %w", ErrCorrupt)
	}
	p := body[packIndexHeaderLen:]
	packs := make([]*packInfo, m)
	for i := range packs {
		if len(p) < 20 {
			return nil, fmt.Errorf("merged pack index: pack %d truncated: %w", i, ErrCorrupt)
		}
		id := hex.EncodeToString(p[:16])
		n := int(binary.BigEndian.Uint32(p[16:]))
		if i > 0 && id <= packs[i-1].id {
			return nil, fmt.Errorf("merged pack index: pack %s out of order: %w", id, ErrCorrupt)
		}
		if n < 1 || n > maxPackChunks || len(p)-20 < n*packEntryLen {
			return nil, fmt.Errorf("merged pack index: pack %s: %d chunks: %w", id, n, ErrCorrupt)
		}
		entries, err := decodeEntries(p[20:20+n*packEntryLen], n)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", id, err)
		}
		packs[i] = &packInfo{id: id, entries: entries}
		p = p[20+n*packEntryLen:]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("merged pack index: %d bytes after the last pack: %w", len(p), ErrCorrupt)
	}
	return packs, nil
}

// newPackID returns a random pack id (32 hex digits). Packs are not
// content addressed: hashing 16 MiB again would cost CPU for nothing, since
// every chunk in it carries its own hash.
func newPackID() string {
	var r [16]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

func validPackID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// packInfo is one loaded pack index.
type packInfo struct {
	id      string
	entries []packEntry
}

// chunkLoc is where a packed chunk lives.
type chunkLoc struct {
	pack     *packInfo
	off, len uint32
}

// packIndex is the ChunkStore's in-memory view of the pack indexes.
type packIndex struct {
	mu     sync.RWMutex
	loaded bool
	// sources maps each index object, by its name under packidx/, to the
	// packs it describes: one for a pack's own index, many for a merged
	// one. packs is their union by pack id.
	sources map[string][]*packInfo
	packs   map[string]*packInfo
	loc     map[ChunkID]chunkLoc
	// bad holds indexes that failed to decode: their packs' chunks are
	// missing to readers, and GC refuses to run (it would take the pack
	// for an orphan).
	bad map[string]error
	// refreshMu serialises refreshes. started numbers them as they begin
	// and done is the number of the last one that finished, so a caller
	// can tell whether a refresh that began after it asked has finished
	// (whose listing therefore saw everything stored before it asked).
	refreshMu     sync.Mutex
	started, done uint64
}

func (cs *ChunkStore) packKey(id string) string    { return cs.root + "packs/" + id }
func (cs *ChunkStore) indexKey(name string) string { return cs.root + "packidx/" + name }

// validIndexName accepts the names of index objects: a pack id, or
// mergedPrefix and a random id.
func validIndexName(name string) bool {
	return validPackID(name) || strings.HasPrefix(name, mergedPrefix) && validPackID(name[len(mergedPrefix):])
}

// lookup returns a packed chunk's location.
func (cs *ChunkStore) lookup(id ChunkID) (chunkLoc, bool) {
	cs.idx.mu.RLock()
	defer cs.idx.mu.RUnlock()
	l, ok := cs.idx.loc[id]
	return l, ok
}

// ticket returns the number of refreshes begun so far; a refresh numbered
// above it began later.
func (cs *ChunkStore) ticket() uint64 {
	cs.idx.mu.RLock()
	defer cs.idx.mu.RUnlock()
	return cs.idx.started
}

// ensureIndex loads the pack indexes the first time they are needed.
func (cs *ChunkStore) ensureIndex(ctx context.Context) error {
	cs.idx.mu.RLock()
	loaded := cs.idx.loaded
	cs.idx.mu.RUnlock()
	if loaded {
		return nil
	}
	return cs.refreshIndex(ctx, cs.ticket())
}

// Refresh re-reads the pack indexes: packs stored by other processes
// become visible, and packs garbage collection removed are forgotten. When
// it returns, the view includes every index stored before it was called.
func (cs *ChunkStore) Refresh(ctx context.Context) error {
	return cs.refreshIndex(ctx, cs.ticket())
}

// refreshIndex re-reads the list of pack indexes: new ones are loaded,
// vanished ones (GC rewrote or removed their packs) dropped. If a refresh
// that began after ticket was taken has finished meanwhile, it does
// nothing: that one's view is as fresh as the caller needs.
func (cs *ChunkStore) refreshIndex(ctx context.Context, ticket uint64) error {
	ix := &cs.idx
	ix.refreshMu.Lock()
	defer ix.refreshMu.Unlock()
	ix.mu.Lock()
	if ix.loaded && ix.done > ticket {
		ix.mu.Unlock()
		return nil
	}
	ix.started++
	me := ix.started
	old := maps.Clone(ix.sources) // addPack adds to ix.sources meanwhile
	ix.mu.Unlock()

	prefix := cs.root + "packidx/"
	var names []string
	err := objstore.ListAll(ctx, cs.store, prefix, func(o objstore.ObjectInfo) error {
		if name := strings.TrimPrefix(o.Key, prefix); validIndexName(name) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing pack indexes: %w", err)
	}
	sources := make(map[string][]*packInfo, len(names))
	var load []string
	for _, name := range names {
		if ps, ok := old[name]; ok {
			sources[name] = ps
		} else {
			load = append(load, name)
		}
	}
	loaded := make([][]*packInfo, len(load))
	bad := make([]error, len(load))
	err = parallel(ctx, 8, len(load), func(ctx context.Context, i int) error {
		ps, err := cs.readIndex(ctx, load[i])
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			return nil // removed since the listing
		case errors.Is(err, ErrCorrupt):
			bad[i] = err
			return nil
		case err != nil:
			return err
		}
		loaded[i] = ps
		return nil
	})
	if err != nil {
		return err
	}
	badIdx := make(map[string]error)
	for i, ps := range loaded {
		if ps != nil {
			sources[load[i]] = ps
		}
		if bad[i] != nil {
			badIdx[load[i]] = bad[i]
		}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	// Packs this process stored while the listing ran exist; keep them.
	for name, ps := range ix.sources {
		if _, ok := old[name]; !ok {
			sources[name] = ps
		}
	}
	packs := make(map[string]*packInfo, len(ix.packs))
	loc := make(map[ChunkID]chunkLoc, len(ix.loc))
	for _, ps := range sources {
		for _, p := range ps {
			if _, dup := packs[p.id]; dup {
				continue // described twice (GC merging indexes)
			}
			packs[p.id] = p
			for _, e := range p.entries {
				loc[e.ID] = chunkLoc{pack: p, off: e.Off, len: e.Len}
			}
		}
	}
	ix.sources, ix.packs, ix.loc, ix.bad, ix.loaded, ix.done = sources, packs, loc, badIdx, true, me
	return nil
}

// badIndexes returns the indexes the last refresh could not decode.
func (cs *ChunkStore) badIndexes() map[string]error {
	cs.idx.mu.RLock()
	defer cs.idx.mu.RUnlock()
	return cs.idx.bad
}

// readIndex reads and decodes one index object: a pack's own, or a merged
// one.
func (cs *ChunkStore) readIndex(ctx context.Context, name string) ([]*packInfo, error) {
	rc, _, err := cs.store.Get(ctx, cs.indexKey(name), objstore.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading pack index %s: %w", name, err)
	}
	defer rc.Close()
	limit := int64(packIndexHeaderLen + maxPackChunks*packEntryLen + sha256.Size)
	if !validPackID(name) {
		limit = maxMergedBytes
	}
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading pack index %s: %w", name, err)
	}
	if !validPackID(name) {
		ps, err := decodeMergedIndex(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return ps, nil
	}
	entries, err := decodePackIndex(b)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", name, err)
	}
	return []*packInfo{{id: name, entries: entries}}, nil
}

// addPack records a pack this process stored, with its own index.
func (cs *ChunkStore) addPack(id string, entries []packEntry) {
	p := &packInfo{id: id, entries: entries}
	cs.idx.mu.Lock()
	defer cs.idx.mu.Unlock()
	if cs.idx.packs == nil {
		cs.idx.sources = make(map[string][]*packInfo)
		cs.idx.packs = make(map[string]*packInfo)
		cs.idx.loc = make(map[ChunkID]chunkLoc)
	}
	cs.idx.sources[id] = []*packInfo{p}
	cs.idx.packs[id] = p
	for _, e := range entries {
		cs.idx.loc[e.ID] = chunkLoc{pack: p, off: e.Off, len: e.Len}
	}
}

// loadedSources returns the loaded index objects (by name) and the packs
// each describes.
func (cs *ChunkStore) loadedSources() map[string][]*packInfo {
	cs.idx.mu.RLock()
	defer cs.idx.mu.RUnlock()
	return maps.Clone(cs.idx.sources)
}

// loadedPacks returns the loaded pack indexes, sorted by pack id.
func (cs *ChunkStore) loadedPacks() []*packInfo {
	cs.idx.mu.RLock()
	defer cs.idx.mu.RUnlock()
	out := slices.Collect(maps.Values(cs.idx.packs))
	slices.SortFunc(out, func(a, b *packInfo) int { return strings.Compare(a.id, b.id) })
	return out
}

// readPacked reads a packed chunk's bytes into buf[:0].
func (cs *ChunkStore) readPacked(ctx context.Context, id ChunkID, l chunkLoc, buf []byte) ([]byte, error) {
	rc, _, err := cs.store.Get(ctx, cs.packKey(l.pack.id), objstore.GetOptions{Range: &objstore.Range{Offset: int64(l.off), Length: int64(l.len)}})
	if err != nil {
		return nil, fmt.Errorf("reading chunk %s from pack %s: %w", id, l.pack.id, err)
	}
	defer rc.Close()
	if cap(buf) < int(l.len) {
		buf = make([]byte, l.len)
	}
	buf = buf[:l.len]
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("reading chunk %s from pack %s: %w", id, l.pack.id, err)
	}
	return buf, nil
}

// packWriter gathers encoded chunks into packs and stores each pack, then
// its index, when it is full. It bounds memory: at most slots packs exist
// at once (the one being filled and those being stored); a writer that
// needs a new pack while all are taken waits, which holds back the
// workers feeding it.
type packWriter struct {
	cs        *ChunkStore
	size      int
	slots     chan struct{}
	bufs      *sync.Pool
	failpoint func(string) error

	mu   sync.Mutex
	cur  *openPack
	have map[ChunkID]uint32 // chunks this writer packed -> stored length
}

// openPack is a pack being filled.
type openPack struct {
	buf     *[]byte
	entries []packEntry
}

// newPackWriter returns a writer closing packs at size bytes with at most
// inFlight packs in memory.
func newPackWriter(cs *ChunkStore, size, inFlight int, bufs *sync.Pool, failpoint func(string) error) *packWriter {
	return &packWriter{
		cs: cs, size: size, slots: make(chan struct{}, max(inFlight, 1)), bufs: bufs,
		failpoint: failpoint, have: make(map[ChunkID]uint32),
	}
}

// packed reports whether this writer has packed id, and its length.
func (w *packWriter) packed(id ChunkID) (uint32, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, ok := w.have[id]
	return n, ok
}

// add appends the encoded chunk obj unless this writer packed id already
// (added is false then). When the pack is full, add stores it before it
// returns; the chunk counts as stored only once the writer is flushed.
func (w *packWriter) add(ctx context.Context, id ChunkID, obj []byte) (n uint32, added bool, err error) {
	w.mu.Lock()
	if n, ok := w.have[id]; ok {
		w.mu.Unlock()
		return n, false, nil
	}
	if w.cur == nil {
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			w.mu.Unlock()
			return 0, false, ctx.Err()
		}
		w.cur = &openPack{buf: w.getBuf()}
	}
	p := w.cur
	off := len(*p.buf)
	*p.buf = append(*p.buf, obj...)
	n = uint32(len(obj))
	p.entries = append(p.entries, packEntry{ID: id, Off: uint32(off), Len: n})
	w.have[id] = n
	var full *openPack
	if len(*p.buf) >= w.size || len(p.entries) == maxPackChunks {
		full, w.cur = p, nil
	}
	w.mu.Unlock()
	if full != nil {
		err = w.store(ctx, full)
	}
	return n, true, err
}

// flush stores the pack being filled, if any.
func (w *packWriter) flush(ctx context.Context) error {
	w.mu.Lock()
	p := w.cur
	w.cur = nil
	w.mu.Unlock()
	if p == nil {
		return nil
	}
	return w.store(ctx, p)
}

// discard drops the pack being filled (the run failed).
func (w *packWriter) discard() {
	w.mu.Lock()
	p := w.cur
	w.cur = nil
	w.mu.Unlock()
	if p != nil {
		w.release(p)
	}
}

func (w *packWriter) getBuf() *[]byte {
	if b, ok := w.bufs.Get().(*[]byte); ok && cap(*b) >= w.size+EncodeBound(MaxBlockSize) {
		*b = (*b)[:0]
		return b
	}
	// Room for the chunk that overflows size, and the index and footer
	// of a pack of ordinary chunks (packs of tiny chunks grow it once).
	b := make([]byte, 0, w.size+EncodeBound(MaxBlockSize)+64<<10)
	return &b
}

func (w *packWriter) release(p *openPack) {
	w.bufs.Put(p.buf)
	<-w.slots
}

// store writes a full pack, then its index, and records it in the chunk
// store. It must not take w.mu: add holds it while it waits for the slot
// store frees. A crash between the two leaves a pack without an index, which
// no reader uses and GC removes after its grace period.
func (w *packWriter) store(ctx context.Context, p *openPack) error {
	defer w.release(p)
	id := newPackID()
	idx := encodePackIndex(p.entries)
	body := append(*p.buf, idx...)
	body = binary.BigEndian.AppendUint32(body, uint32(len(idx)))
	body = append(body, "SPK1"...)
	*p.buf = body[:0]
	if _, err := w.cs.store.Put(ctx, w.cs.packKey(id), bytes.NewReader(body), int64(len(body)), objstore.PutOptions{}); err != nil {
		return fmt.Errorf("storing pack %s: %w", id, err)
	}
	if w.failpoint != nil {
		if err := w.failpoint("pack.stored"); err != nil {
			return fmt.Errorf("failpoint pack.stored: %w", err)
		}
	}
	if _, err := w.cs.store.Put(ctx, w.cs.indexKey(id), bytes.NewReader(idx), int64(len(idx)), objstore.PutOptions{}); err != nil {
		return fmt.Errorf("storing index of pack %s: %w", id, err)
	}
	w.cs.addPack(id, p.entries)
	return nil
}

// listedChunks is a sorted list of chunk objects found by one listing, for
// runs that pack: a conditional PUT no longer tells them whether a chunk
// exists. 36 bytes per chunk.
type listedChunks []listedChunk

type listedChunk struct {
	id   ChunkID
	size uint32
}

func (cs *ChunkStore) listChunks(ctx context.Context) (listedChunks, error) {
	var l listedChunks
	err := objstore.ListAll(ctx, cs.store, cs.prefix, func(o objstore.ObjectInfo) error {
		if id, ok := cs.IDFromKey(o.Key); ok {
			l = append(l, listedChunk{id: id, size: uint32(min(o.Size, 1<<32-1))})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing chunks: %w", err)
	}
	// Listings come in key order, which is id order; check rather than
	// trust it.
	byID := func(a, b listedChunk) int { return bytes.Compare(a.id[:], b.id[:]) }
	if !slices.IsSortedFunc(l, byID) {
		slices.SortFunc(l, byID)
	}
	return l, nil
}

func (l listedChunks) find(id ChunkID) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(l, id, func(e listedChunk, id ChunkID) int { return bytes.Compare(e.id[:], id[:]) })
	if !ok {
		return 0, false
	}
	return l[i].size, true
}
