package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/sluicegw/sluice/internal/objstore"
)

// ChunkID is the content address of a chunk: the SHA-256 of its
// uncompressed bytes. The zero ChunkID marks a hole (an all-zero block that
// is never stored).
type ChunkID [32]byte

// HashChunk returns the ChunkID of raw block data.
func HashChunk(raw []byte) ChunkID { return sha256.Sum256(raw) }

// IsZero reports whether id is the hole marker.
func (id ChunkID) IsZero() bool { return id == ChunkID{} }

// String returns the id in lower-case hex.
func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }

// ParseChunkID parses the hex form String returns.
func ParseChunkID(s string) (ChunkID, error) {
	var id ChunkID
	if len(s) != 64 {
		return id, fmt.Errorf("chunk id %q: %w", s, ErrInvalid)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunk id %q: %w", s, ErrInvalid)
	}
	return id, nil
}

// Codec is the compression of stored chunks, chosen per volume.
type Codec uint8

// Codecs. The numeric values are part of the chunk and manifest formats.
const (
	// CodecNone stores chunks uncompressed.
	CodecNone Codec = 0
	// CodecZstd compresses with zstd (klauspost/compress, default level).
	CodecZstd Codec = 1
	// CodecLZ4 compresses with LZ4 block format (faster, larger).
	CodecLZ4 Codec = 2
)

// String returns "none", "zstd" or "lz4".
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	case CodecLZ4:
		return "lz4"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec parses a codec name; "" means the default, zstd.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "", "zstd":
		return CodecZstd, nil
	case "none":
		return CodecNone, nil
	case "lz4":
		return CodecLZ4, nil
	}
	return 0, fmt.Errorf("codec %q (want none, zstd or lz4): %w", s, ErrInvalid)
}

// MarshalText implements encoding.TextMarshaler.
func (c Codec) MarshalText() ([]byte, error) {
	if c > CodecLZ4 {
		return nil, fmt.Errorf("codec %d: %w", c, ErrInvalid)
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Codec) UnmarshalText(b []byte) error {
	v, err := ParseCodec(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Block size limits.
const (
	// MinBlockSize is the smallest block (and chunk) size.
	MinBlockSize = 64 << 10
	// MaxBlockSize is the largest block size.
	MaxBlockSize = 4 << 20
	// DefaultBlockSize is the block size of a volume that does not choose
	// one; snapshot/DESIGN.md explains the choice.
	DefaultBlockSize = 1 << 20
)

// ValidBlockSize reports whether n is a power of two in
// [MinBlockSize, MaxBlockSize].
func ValidBlockSize(n int) bool {
	return n >= MinBlockSize && n <= MaxBlockSize && n&(n-1) == 0
}

// Chunk object format: an 8-byte header followed by the payload.
//
//	0  2  magic "SC"
//	2  1  format version (1)
//	3  1  codec of the payload (a chunk that did not shrink is CodecNone)
//	4  4  uncompressed length, big endian
const (
	chunkHeaderLen = 8
	chunkVersion   = 1
)

// minSaving is the fraction (in 1/100) a compressed chunk must save to be
// stored compressed; otherwise it is stored raw and decompression is skipped
// on restore.
const minSaving = 3

// Coder compresses and decompresses chunk objects. It holds pooled encoder
// state and is safe for concurrent use; create one per Catalog (or cached
// volume) and share it.
type Coder struct {
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	lz4  sync.Pool
}

// NewCoder returns a Coder for up to concurrency simultaneous calls.
func NewCoder(concurrency int) (*Coder, error) {
	concurrency = max(concurrency, 1)
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(concurrency),
		zstd.WithEncoderCRC(false), // the chunk id is a stronger check
		zstd.WithWindowSize(MaxBlockSize),
		zstd.WithSingleSegment(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(concurrency),
		zstd.WithDecoderMaxMemory(MaxBlockSize),
		zstd.WithDecoderMaxWindow(MaxBlockSize),
	)
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	c := &Coder{zenc: enc, zdec: dec}
	c.lz4.New = func() any { return new(lz4.Compressor) }
	return c, nil
}

// Close releases the encoder state.
func (c *Coder) Close() {
	c.zenc.Close()
	c.zdec.Close()
}

// EncodeBound is the largest object Encode produces for n raw bytes; a
// buffer of this capacity never needs to grow.
func EncodeBound(n int) int {
	return chunkHeaderLen + max(lz4.CompressBlockBound(n), n+n/64+1024)
}

// Encode appends the chunk object for raw, compressed with codec when that
// saves at least a few percent, to dst[:0] and returns it.
func (c *Coder) Encode(dst, raw []byte, codec Codec) []byte {
	dst = append(dst[:0], 'S', 'C', chunkVersion, byte(CodecNone), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[4:], uint32(len(raw)))
	limit := len(raw) - len(raw)*minSaving/100
	switch codec {
	case CodecZstd:
		out := c.zenc.EncodeAll(raw, dst)
		if len(out)-chunkHeaderLen < limit {
			out[3] = byte(CodecZstd)
			return out
		}
		dst = out[:chunkHeaderLen]
	case CodecLZ4:
		need := chunkHeaderLen + lz4.CompressBlockBound(len(raw))
		if cap(dst) < need {
			dst = append(make([]byte, 0, need), dst...)
		}
		comp := c.lz4.Get().(*lz4.Compressor)
		n, err := comp.CompressBlock(raw, dst[chunkHeaderLen:need])
		c.lz4.Put(comp)
		if err == nil && n > 0 && n < limit {
			dst = dst[:chunkHeaderLen+n]
			dst[3] = byte(CodecLZ4)
			return dst
		}
		dst = dst[:chunkHeaderLen]
	}
	return append(dst, raw...)
}

// Decode decodes the chunk object obj into dst[:0] (which should have the
// block size as capacity), checks that its SHA-256 is id, and returns the
// raw bytes.
func (c *Coder) Decode(dst, obj []byte, id ChunkID) ([]byte, error) {
	raw, err := c.decode(dst, obj)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	if HashChunk(raw) != id {
		return nil, fmt.Errorf("chunk %s: content hash mismatch: %w", id, ErrCorrupt)
	}
	return raw, nil
}

func (c *Coder) decode(dst, obj []byte) ([]byte, error) {
	if len(obj) < chunkHeaderLen || obj[0] != 'S' || obj[1] != 'C' || obj[2] != chunkVersion {
		return nil, fmt.Errorf("bad chunk header: %w", ErrCorrupt)
	}
	n := int(binary.BigEndian.Uint32(obj[4:]))
	if n == 0 || n > MaxBlockSize {
		return nil, fmt.Errorf("chunk length %d: %w", n, ErrCorrupt)
	}
	payload := obj[chunkHeaderLen:]
	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	switch Codec(obj[3]) {
	case CodecNone:
		if len(payload) != n {
			return nil, fmt.Errorf("raw chunk length %d, header says %d: %w", len(payload), n, ErrCorrupt)
		}
		return append(dst[:0], payload...), nil
	case CodecZstd:
		out, err := c.zdec.DecodeAll(payload, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("zstd: %v: %w", err, ErrCorrupt)
		}
		if len(out) != n {
			return nil, fmt.Errorf("zstd chunk length %d, header says %d: %w", len(out), n, ErrCorrupt)
		}
		return out, nil
	case CodecLZ4:
		out := dst[:n]
		m, err := lz4.UncompressBlock(payload, out)
		if err != nil || m != n {
			return nil, fmt.Errorf("lz4 chunk (%d of %d bytes): %v: %w", m, n, err, ErrCorrupt)
		}
		return out, nil
	}
	return nil, fmt.Errorf("chunk codec %d: %w", obj[3], ErrCorrupt)
}

// ChunkStore keeps content-addressed chunk objects in an object store under
// a key prefix. It is shared by snapshots and (later) cached volumes; chunk
// objects are immutable once written.
type ChunkStore struct {
	store  objstore.Store
	root   string
	prefix string
	idx    packIndex
}

// NewChunkStore returns a chunk store that keeps chunk objects under
// prefix+"chunks/" and packs of chunks under prefix+"packs/", with their
// indexes under prefix+"packidx/".
func NewChunkStore(s objstore.Store, prefix string) *ChunkStore {
	return &ChunkStore{store: s, root: prefix, prefix: prefix + "chunks/"}
}

// Key returns the object key of a chunk: chunks/<first 2 hex digits>/<hex>,
// so that listings can be split and stores that shard by prefix spread the
// load.
func (cs *ChunkStore) Key(id ChunkID) string {
	h := id.String()
	return cs.prefix + h[:2] + "/" + h
}

// Prefix returns the key prefix under which all chunks live.
func (cs *ChunkStore) Prefix() string { return cs.prefix }

// IDFromKey parses a chunk key; ok is false for keys that are not chunks.
func (cs *ChunkStore) IDFromKey(key string) (ChunkID, bool) {
	if len(key) != len(cs.prefix)+3+64 || key[:len(cs.prefix)] != cs.prefix {
		return ChunkID{}, false
	}
	id, err := ParseChunkID(key[len(cs.prefix)+3:])
	return id, err == nil
}

// Stat reports whether a chunk exists, packed or as an object, and its
// stored size.
func (cs *ChunkStore) Stat(ctx context.Context, id ChunkID) (size int64, ok bool, err error) {
	if err := cs.ensureIndex(ctx); err != nil {
		return 0, false, err
	}
	if l, ok := cs.lookup(id); ok {
		return int64(l.len), true, nil
	}
	oi, err := cs.store.Head(ctx, cs.Key(id))
	if errors.Is(err, objstore.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("chunk %s: %w", id, err)
	}
	return oi.Size, true, nil
}

// Put stores an encoded chunk object. Writing a chunk that exists is
// harmless: the content is the same.
func (cs *ChunkStore) Put(ctx context.Context, id ChunkID, obj []byte) error {
	if _, err := cs.store.Put(ctx, cs.Key(id), bytes.NewReader(obj), int64(len(obj)), objstore.PutOptions{}); err != nil {
		return fmt.Errorf("storing chunk %s: %w", id, err)
	}
	return nil
}

// PutIfAbsent stores an encoded chunk object unless the store already has
// it (a conditional write: one request either way). created reports
// whether this call stored it.
func (cs *ChunkStore) PutIfAbsent(ctx context.Context, id ChunkID, obj []byte) (created bool, err error) {
	_, err = cs.store.Put(ctx, cs.Key(id), bytes.NewReader(obj), int64(len(obj)), objstore.PutOptions{IfNoneMatch: true})
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storing chunk %s: %w", id, err)
	}
	return true, nil
}

// GetObject reads the encoded chunk, from its pack or its own object, into
// buf[:0] and returns it. A missing chunk is reported as ErrChunkMissing.
// A chunk found in neither place, or whose pack is gone (garbage
// collection rewrote it), is looked up again after re-reading the pack
// indexes.
func (cs *ChunkStore) GetObject(ctx context.Context, id ChunkID, buf []byte) ([]byte, error) {
	if err := cs.ensureIndex(ctx); err != nil {
		return nil, err
	}
	for retried := false; ; retried = true {
		l, ok := cs.lookup(id)
		var (
			b   []byte
			err error
		)
		if ok {
			b, err = cs.readPacked(ctx, id, l, buf)
			if errors.Is(err, objstore.ErrNotFound) {
				err = fmt.Errorf("%w: %w", ErrChunkMissing, err)
			}
		} else {
			b, err = cs.getChunkObject(ctx, id, buf)
		}
		if retried || !errors.Is(err, ErrChunkMissing) {
			return b, err
		}
		if err := cs.Refresh(ctx); err != nil {
			return nil, err
		}
	}
}

func (cs *ChunkStore) getChunkObject(ctx context.Context, id ChunkID, buf []byte) ([]byte, error) {
	rc, oi, err := cs.store.Get(ctx, cs.Key(id), objstore.GetOptions{})
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, fmt.Errorf("chunk %s: %w: %w", id, ErrChunkMissing, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading chunk %s: %w", id, err)
	}
	defer rc.Close()
	if oi.Size > int64(EncodeBound(MaxBlockSize)) {
		return nil, fmt.Errorf("chunk %s is %d bytes: %w", id, oi.Size, ErrCorrupt)
	}
	if oi.Size < 0 {
		b, err := io.ReadAll(io.LimitReader(rc, int64(EncodeBound(MaxBlockSize))+1))
		if err != nil {
			return nil, fmt.Errorf("reading chunk %s: %w", id, err)
		}
		return b, nil
	}
	if int64(cap(buf)) < oi.Size {
		buf = make([]byte, oi.Size)
	}
	buf = buf[:oi.Size]
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("reading chunk %s: %w", id, err)
	}
	return buf, nil
}

// deleteMany removes chunks (GC); missing ones are ignored.
func (cs *ChunkStore) deleteMany(ctx context.Context, ids []ChunkID) error {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = cs.Key(id)
	}
	if err := deleteKeys(ctx, cs.store, keys); err != nil {
		return fmt.Errorf("chunks: %w", err)
	}
	return nil
}
