package blockcache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluicegw/sluice/snapshot"
)

// The cache index survives restarts as a checkpoint ("cache.index") plus a
// journal ("cache.journal") of the changes since. Both formats are
// big endian and checksummed with CRC-32C.
//
// Checkpoint, written atomically (temporary file, fsync, rename):
//
//	"SLCI" version(1) reserved(3) journalID(8) slotSize(4) slots(4)
//	volumes(4) × [key(8) manifestLen(4) manifest]     (snapshot manifest
//	                                                   encoding: name in
//	                                                   Volume, live block map)
//	used(4) × [slot(4) key(8) block(8) state(1)]
//	crc32c(4) of everything before it
//
// Journal: a 20-byte header "SLCJ" version(1) reserved(3) journalID(8)
// crc32c(4), then records:
//
//	length(2) type(1) payload(length) crc32c(4) of length, type and payload
//
// The journal is replayed only when its id equals the checkpoint's (a crash
// between writing a checkpoint and starting its journal leaves an old
// journal that the checkpoint already contains). Replay stops at the first
// record that is torn or fails its checksum: records are appended in order
// and each append ends with fdatasync, so what follows a bad record was
// never acknowledged. Every record is an absolute assignment, so applying a
// journal to a checkpoint is deterministic.
const (
	indexMagic     = "SLCI"
	journalMagic   = "SLCJ"
	indexVersion   = 1
	journalHdrLen  = 20
	maxRecordLen   = 1 << 12
	indexFile      = "cache.index"
	journalFile    = "cache.journal"
	cacheDataFile  = "cache.data"
	recHeaderLen   = 3
	recTrailerLen  = 4
	maxCacheVols   = 1 << 16
	maxCacheSlots  = 1 << 26
	noSlot         = ^uint32(0)
	maxVolNameLen  = 1024
	slotStateClean = 1
	slotStateDirty = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Journal record types.
const (
	// recVol registers or resizes a volume: key, size, block size, codec,
	// name.
	recVol = 1
	// recDelVol removes a volume and frees its slots: key.
	recDelVol = 2
	// recSlot assigns a slot to a block of a volume with a state (clean
	// or dirty): slot, key, block, state.
	recSlot = 3
	// recMap sets a block's chunk (after an upload, or a hole after an
	// unmap) and, unless slot is noSlot, marks the slot clean: slot, key,
	// block, chunk id, stored size.
	recMap = 4
	// recFree frees a slot: slot.
	recFree = 5
)

// journalRec is one decoded journal record; the fields used depend on typ.
type journalRec struct {
	typ   uint8
	slot  uint32
	key   uint64
	block uint64 // recVol: the volume size
	state uint8
	ref   snapshot.BlockRef
	bs    uint32
	codec snapshot.Codec
	name  string
}

// appendRecord appends the framed encoding of r to dst.
func appendRecord(dst []byte, r journalRec) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, r.typ)
	switch r.typ {
	case recVol:
		dst = binary.BigEndian.AppendUint64(dst, r.key)
		dst = binary.BigEndian.AppendUint64(dst, r.block)
		dst = binary.BigEndian.AppendUint32(dst, r.bs)
		dst = append(dst, byte(r.codec))
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.name)))
		dst = append(dst, r.name...)
	case recDelVol:
		dst = binary.BigEndian.AppendUint64(dst, r.key)
	case recSlot:
		dst = binary.BigEndian.AppendUint32(dst, r.slot)
		dst = binary.BigEndian.AppendUint64(dst, r.key)
		dst = binary.BigEndian.AppendUint64(dst, r.block)
		dst = append(dst, r.state)
	case recMap:
		dst = binary.BigEndian.AppendUint32(dst, r.slot)
		dst = binary.BigEndian.AppendUint64(dst, r.key)
		dst = binary.BigEndian.AppendUint64(dst, r.block)
		dst = append(dst, r.ref.ID[:]...)
		dst = binary.BigEndian.AppendUint32(dst, r.ref.Stored)
	case recFree:
		dst = binary.BigEndian.AppendUint32(dst, r.slot)
	}
	binary.BigEndian.PutUint16(dst[start:], uint16(len(dst)-start-recHeaderLen))
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeRecord decodes one record from the start of p and returns it with
// its encoded length.
func decodeRecord(p []byte) (journalRec, int, error) {
	var r journalRec
	bad := func(what string) (journalRec, int, error) {
		return journalRec{}, 0, fmt.Errorf("cache journal record: %s: %w", what, ErrCorrupt)
	}
	if len(p) < recHeaderLen+recTrailerLen {
		return bad("truncated")
	}
	n := int(binary.BigEndian.Uint16(p))
	if n > maxRecordLen || len(p) < recHeaderLen+n+recTrailerLen {
		return bad("truncated")
	}
	body := p[:recHeaderLen+n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(p[recHeaderLen+n:]) {
		return bad("checksum mismatch")
	}
	r.typ = p[2]
	q := body[recHeaderLen:]
	want := map[uint8]int{recDelVol: 8, recSlot: 21, recMap: 56, recFree: 4}
	switch r.typ {
	case recVol:
		if len(q) < 23 {
			return bad("short volume record")
		}
		r.key = binary.BigEndian.Uint64(q)
		r.block = binary.BigEndian.Uint64(q[8:])
		r.bs = binary.BigEndian.Uint32(q[16:])
		r.codec = snapshot.Codec(q[20])
		l := int(binary.BigEndian.Uint16(q[21:]))
		if l > maxVolNameLen || len(q) != 23+l {
			return bad("bad volume name")
		}
		r.name = string(q[23:])
		if !snapshot.ValidBlockSize(int(r.bs)) || r.block == 0 || r.block > snapshot.MaxVolumeSize || r.codec > snapshot.CodecLZ4 {
			return bad("bad volume geometry")
		}
	case recDelVol, recSlot, recMap, recFree:
		if len(q) != want[r.typ] {
			return bad("bad record length")
		}
		switch r.typ {
		case recDelVol:
			r.key = binary.BigEndian.Uint64(q)
		case recFree:
			r.slot = binary.BigEndian.Uint32(q)
		default:
			r.slot = binary.BigEndian.Uint32(q)
			r.key = binary.BigEndian.Uint64(q[4:])
			r.block = binary.BigEndian.Uint64(q[12:])
			if r.typ == recSlot {
				r.state = q[20]
				if r.state != slotStateClean && r.state != slotStateDirty || r.slot == noSlot {
					return bad("bad slot state")
				}
			} else {
				copy(r.ref.ID[:], q[20:52])
				r.ref.Stored = binary.BigEndian.Uint32(q[52:])
			}
		}
	default:
		return bad(fmt.Sprintf("unknown type %d", r.typ))
	}
	return r, len(body) + recTrailerLen, nil
}

// encodeJournalHeader returns the header of a journal with id.
func encodeJournalHeader(id uint64) []byte {
	b := make([]byte, 0, journalHdrLen)
	b = append(b, journalMagic...)
	b = append(b, indexVersion, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, id)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeJournal parses a journal: its id, the records up to the first bad
// or torn one, and the length of that valid prefix (header included).
func decodeJournal(p []byte) (id uint64, recs []journalRec, valid int, err error) {
	if len(p) < journalHdrLen || string(p[:4]) != journalMagic || p[4] != indexVersion ||
		p[5]|p[6]|p[7] != 0 || crc32.Checksum(p[:16], castagnoli) != binary.BigEndian.Uint32(p[16:]) {
		return 0, nil, 0, fmt.Errorf("cache journal header: %w", ErrCorrupt)
	}
	id = binary.BigEndian.Uint64(p[8:])
	valid = journalHdrLen
	for valid < len(p) {
		r, n, err := decodeRecord(p[valid:])
		if err != nil {
			break
		}
		recs = append(recs, r)
		valid += n
	}
	return id, recs, valid, nil
}

// indexVol is one volume of a checkpoint.
type indexVol struct {
	key  uint64
	name string
	bm   *snapshot.BlockMap
}

// indexSlot is one used slot of a checkpoint.
type indexSlot struct {
	slot  uint32
	key   uint64
	block uint64
	state uint8
}

// indexState is a decoded checkpoint.
type indexState struct {
	journalID uint64
	slotSize  uint32
	slots     uint32
	vols      []indexVol
	used      []indexSlot
}

// encodeIndex returns the checkpoint encoding of st.
func encodeIndex(st *indexState) []byte {
	b := make([]byte, 0, 64+len(st.used)*21)
	b = append(b, indexMagic...)
	b = append(b, indexVersion, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, st.journalID)
	b = binary.BigEndian.AppendUint32(b, st.slotSize)
	b = binary.BigEndian.AppendUint32(b, st.slots)
	b = binary.BigEndian.AppendUint32(b, uint32(len(st.vols)))
	for _, v := range st.vols {
		m := (&snapshot.Manifest{Volume: v.name, Created: time.Unix(0, 0), Map: *v.bm}).Encode()
		b = binary.BigEndian.AppendUint64(b, v.key)
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(st.used)))
	for _, s := range st.used {
		b = binary.BigEndian.AppendUint32(b, s.slot)
		b = binary.BigEndian.AppendUint64(b, s.key)
		b = binary.BigEndian.AppendUint64(b, s.block)
		b = append(b, s.state)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeIndex parses and checks a checkpoint. It is strict: a checkpoint
// that decodes re-encodes to the same bytes.
func decodeIndex(p []byte) (*indexState, error) {
	bad := func(what string) (*indexState, error) {
		return nil, fmt.Errorf("cache index: %s: %w", what, ErrCorrupt)
	}
	if len(p) < 32 {
		return bad("too short")
	}
	body := p[:len(p)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(p[len(p)-4:]) {
		return bad("checksum mismatch")
	}
	if string(body[:4]) != indexMagic || body[4] != indexVersion || body[5]|body[6]|body[7] != 0 {
		return bad("bad header")
	}
	st := &indexState{
		journalID: binary.BigEndian.Uint64(body[8:]),
		slotSize:  binary.BigEndian.Uint32(body[16:]),
		slots:     binary.BigEndian.Uint32(body[20:]),
	}
	if !snapshot.ValidBlockSize(int(st.slotSize)) || st.slots == 0 || st.slots > maxCacheSlots {
		return bad("bad geometry")
	}
	nv := binary.BigEndian.Uint32(body[24:])
	if nv > maxCacheVols {
		return bad("too many volumes")
	}
	rest := body[28:]
	keys := make(map[uint64]*indexVol, nv)
	for range nv {
		if len(rest) < 12 {
			return bad("truncated volume")
		}
		key := binary.BigEndian.Uint64(rest)
		l := binary.BigEndian.Uint32(rest[8:])
		if uint64(l) > uint64(len(rest)-12) {
			return bad("truncated manifest")
		}
		m, err := snapshot.DecodeManifest(rest[12 : 12+l])
		if err != nil {
			return nil, fmt.Errorf("cache index volume %x: %v: %w", key, err, ErrCorrupt)
		}
		if m.ID != "" || m.Parent != "" || m.Volume == "" || m.Created.UnixNano() != 0 || keys[key] != nil {
			return bad("bad volume entry")
		}
		st.vols = append(st.vols, indexVol{key: key, name: m.Volume, bm: &m.Map})
		keys[key] = &st.vols[len(st.vols)-1]
		rest = rest[12+l:]
	}
	if len(rest) < 4 {
		return bad("truncated slot table")
	}
	nu := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(nu)*21 != uint64(len(rest)) || nu > st.slots {
		return bad("bad slot table length")
	}
	seen := make(map[uint32]bool, nu)
	for range nu {
		s := indexSlot{slot: binary.BigEndian.Uint32(rest), key: binary.BigEndian.Uint64(rest[4:]), block: binary.BigEndian.Uint64(rest[12:]), state: rest[20]}
		rest = rest[21:]
		v := keys[s.key]
		if s.slot >= st.slots || seen[s.slot] || v == nil || int64(s.block) >= v.bm.NumBlocks() || int64(s.block) < 0 ||
			(s.state != slotStateClean && s.state != slotStateDirty) || v.bm.BlockSize > int(st.slotSize) {
			return bad("bad slot entry")
		}
		seen[s.slot] = true
		st.used = append(st.used, s)
	}
	return st, nil
}

// journal is the append side of cache.journal with group commit: records
// are buffered under the cache lock (append) and made durable by commit,
// which first fdatasyncs the cache data file (records describe slot
// contents that must be on disk before the records are) and then writes
// and fdatasyncs the buffered records. Concurrent committers share one
// sync.
type journal struct {
	f    *os.File
	data *os.File

	mu      sync.Mutex // buf, seq
	buf     []byte
	seq     uint64 // last appended record
	syncMu  sync.Mutex
	durable uint64 // guarded by syncMu; read with durableSeq
	dmu     sync.Mutex
	size    int64 // file size; guarded by syncMu
	failed  error // guarded by syncMu
	// failpoint is called before the journal write of a commit.
	failpoint func(string) error
}

// append buffers a record and returns its sequence number.
func (j *journal) append(r journalRec) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = appendRecord(j.buf, r)
	j.seq++
	return j.seq
}

// lastSeq returns the sequence number of the last appended record.
func (j *journal) lastSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq
}

func (j *journal) durableSeq() uint64 {
	j.dmu.Lock()
	defer j.dmu.Unlock()
	return j.durable
}

// commit makes every record up to seq durable (and the data they
// describe).
func (j *journal) commit(seq uint64) error {
	if j.durableSeq() >= seq {
		return nil
	}
	return j.sync(seq, false)
}

// flush makes everything written to the cache file so far durable, with
// the records appended so far: the data file is synced even when there is
// no record to write (overwrites of blocks already dirty add none).
func (j *journal) flush() error {
	return j.sync(j.lastSeq(), true)
}

func (j *journal) sync(seq uint64, force bool) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if j.failed != nil {
		return j.failed
	}
	if !force && j.durableSeq() >= seq {
		return nil
	}
	j.mu.Lock()
	b, upTo := j.buf, j.seq
	j.buf = nil
	j.mu.Unlock()
	err := fdatasync(j.data)
	if err == nil && j.failpoint != nil {
		err = j.failpoint("cache.data-synced")
	}
	if err == nil && len(b) > 0 {
		_, err = j.f.WriteAt(b, j.size)
		if err == nil {
			err = fdatasync(j.f)
		}
	}
	if err != nil {
		j.failed = fmt.Errorf("cache journal commit: %w", err)
		return j.failed
	}
	j.size += int64(len(b))
	j.dmu.Lock()
	j.durable = upTo
	j.dmu.Unlock()
	return nil
}

// reset starts a new journal file with id, dropping buffered records
// (the caller has just written a checkpoint that contains them). The
// caller holds syncMu and the cache lock.
func (j *journal) resetLocked(dir string, id uint64) error {
	hdr := encodeJournalHeader(id)
	if err := writeFileAtomic(filepath.Join(dir, journalFile), hdr); err != nil {
		return fmt.Errorf("starting cache journal: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, journalFile), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening cache journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = f
	j.size = int64(len(hdr))
	j.mu.Lock()
	j.buf = nil
	j.dmu.Lock()
	j.durable = j.seq
	j.dmu.Unlock()
	j.mu.Unlock()
	return nil
}

// readJournal reads the journal file; a missing file reads as empty.
func readJournal(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading cache journal: %w", err)
	}
	return b, nil
}
