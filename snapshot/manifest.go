package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// BlockRef is one entry of a block map: the chunk that holds the block's
// content, or the zero ChunkID for a hole (an all-zero block), and the size
// of the stored chunk object (for accounting; 0 for holes).
type BlockRef struct {
	ID     ChunkID
	Stored uint32
}

// BlockMap is a volume's block map at one point in time: for every block,
// the chunk holding it. It is the unit snapshots store in their manifest and
// the durable state a cached volume will keep, so it depends on nothing but
// the chunk format.
type BlockMap struct {
	// BlockSize is the size of every block but possibly the last.
	BlockSize int
	// Size is the volume size in bytes.
	Size int64
	// Codec is the codec chunks were written with (informational: each
	// chunk records its own).
	Codec Codec
	// Blocks has one entry per block, NumBlocks of them.
	Blocks []BlockRef
}

// NewBlockMap returns an all-hole block map.
func NewBlockMap(size int64, blockSize int, codec Codec) (*BlockMap, error) {
	if !ValidBlockSize(blockSize) || size < 0 || size > MaxVolumeSize {
		return nil, fmt.Errorf("block map of %d bytes in %d-byte blocks: %w", size, blockSize, ErrInvalid)
	}
	m := &BlockMap{BlockSize: blockSize, Size: size, Codec: codec}
	m.Blocks = make([]BlockRef, m.NumBlocks())
	return m, nil
}

// MaxVolumeSize is the largest volume a block map describes (64 TiB).
const MaxVolumeSize = 64 << 40

// maxManifestBlocks bounds the entries a decoded manifest may describe.
const maxManifestBlocks = MaxVolumeSize / MinBlockSize

// NumBlocks returns the number of blocks, the last possibly short.
func (m *BlockMap) NumBlocks() int64 {
	return (m.Size + int64(m.BlockSize) - 1) / int64(m.BlockSize)
}

// BlockLen returns the length of block i.
func (m *BlockMap) BlockLen(i int64) int {
	off := i * int64(m.BlockSize)
	return int(min(int64(m.BlockSize), m.Size-off))
}

// Stats returns the logical bytes (bytes of non-hole blocks), the stored
// bytes of the distinct chunks referenced, and the number of distinct
// chunks.
func (m *BlockMap) Stats() (logical, stored int64, chunks int) {
	seen := make(map[ChunkID]struct{})
	for i, b := range m.Blocks {
		if b.ID.IsZero() {
			continue
		}
		logical += int64(m.BlockLen(int64(i)))
		if _, ok := seen[b.ID]; !ok {
			seen[b.ID] = struct{}{}
			stored += int64(b.Stored)
		}
	}
	return logical, stored, len(seen)
}

// Manifest is a snapshot's stored description: its identity and block map.
type Manifest struct {
	ID      string
	Volume  string
	Parent  string
	Created time.Time
	Map     BlockMap
}

// Manifest format, version 1 (all integers big endian, varints are
// encoding/binary unsigned varints):
//
//	"SLMF" version(1) codec(1) reserved(2)
//	blockSize(4) size(8) createdUnixNano(8)
//	id, volume, parent: each length(2) + bytes
//	block runs until every block is described:
//	    holes(uvarint) data(uvarint) then data × [chunk id(32) stored(uvarint)]
//	SHA-256 of all preceding bytes (32)
const (
	manifestMagic   = "SLMF"
	manifestVersion = 1
	maxNameLen      = 1024
)

// Encode returns the binary manifest.
func (m *Manifest) Encode() []byte {
	var b bytes.Buffer
	b.Grow(64 + len(m.ID) + len(m.Volume) + len(m.Parent) + len(m.Map.Blocks)*34)
	hdr := make([]byte, 28)
	copy(hdr, manifestMagic)
	hdr[4] = manifestVersion
	hdr[5] = byte(m.Map.Codec)
	binary.BigEndian.PutUint32(hdr[8:], uint32(m.Map.BlockSize))
	binary.BigEndian.PutUint64(hdr[12:], uint64(m.Map.Size))
	binary.BigEndian.PutUint64(hdr[20:], uint64(m.Created.UnixNano()))
	b.Write(hdr)
	for _, s := range []string{m.ID, m.Volume, m.Parent} {
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(s)))
		b.Write(l[:])
		b.WriteString(s)
	}
	var vb [binary.MaxVarintLen64]byte
	blocks := m.Map.Blocks
	for i := 0; i < len(blocks); {
		h := i
		for h < len(blocks) && blocks[h].ID.IsZero() {
			h++
		}
		d := h
		for d < len(blocks) && !blocks[d].ID.IsZero() {
			d++
		}
		b.Write(vb[:binary.PutUvarint(vb[:], uint64(h-i))])
		b.Write(vb[:binary.PutUvarint(vb[:], uint64(d-h))])
		for _, r := range blocks[h:d] {
			b.Write(r.ID[:])
			b.Write(vb[:binary.PutUvarint(vb[:], uint64(r.Stored))])
		}
		i = d
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// DecodeManifest parses and checks a binary manifest.
func DecodeManifest(p []byte) (*Manifest, error) {
	return decodeManifest(p, maxManifestBlocks)
}

func decodeManifest(p []byte, maxBlocks int64) (*Manifest, error) {
	bad := func(what string) error { return fmt.Errorf("manifest: %s: %w", what, ErrCorrupt) }
	if len(p) < 28+6+sha256.Size {
		return nil, bad("too short")
	}
	body, sum := p[:len(p)-sha256.Size], p[len(p)-sha256.Size:]
	if s := sha256.Sum256(body); !bytes.Equal(s[:], sum) {
		return nil, bad("checksum mismatch")
	}
	if string(body[:4]) != manifestMagic {
		return nil, bad("bad magic")
	}
	if body[4] != manifestVersion {
		return nil, bad(fmt.Sprintf("unknown version %d", body[4]))
	}
	if body[6] != 0 || body[7] != 0 {
		return nil, bad("reserved bytes set")
	}
	m := &Manifest{}
	m.Map.Codec = Codec(body[5])
	if m.Map.Codec > CodecLZ4 {
		return nil, bad("unknown codec")
	}
	m.Map.BlockSize = int(binary.BigEndian.Uint32(body[8:]))
	size := binary.BigEndian.Uint64(body[12:])
	if !ValidBlockSize(m.Map.BlockSize) || size > MaxVolumeSize {
		return nil, bad("bad block size or volume size")
	}
	m.Map.Size = int64(size)
	m.Created = time.Unix(0, int64(binary.BigEndian.Uint64(body[20:]))).UTC()
	rest := body[28:]
	for _, dst := range []*string{&m.ID, &m.Volume, &m.Parent} {
		if len(rest) < 2 {
			return nil, bad("truncated name")
		}
		l := int(binary.BigEndian.Uint16(rest))
		if l > maxNameLen || len(rest) < 2+l {
			return nil, bad("bad name length")
		}
		*dst = string(rest[2 : 2+l])
		rest = rest[2+l:]
	}
	n := m.Map.NumBlocks()
	if n > maxBlocks {
		return nil, bad("too many blocks")
	}
	m.Map.Blocks = make([]BlockRef, n)
	uv := func() (uint64, error) {
		v, k := binary.Uvarint(rest)
		var tmp [binary.MaxVarintLen64]byte
		if k <= 0 || k != binary.PutUvarint(tmp[:], v) {
			return 0, bad("bad varint")
		}
		rest = rest[k:]
		return v, nil
	}
	for i := int64(0); i < n; {
		holes, err := uv()
		if err != nil {
			return nil, err
		}
		data, err := uv()
		if err != nil {
			return nil, err
		}
		if holes > uint64(n-i) || data > uint64(n-i)-holes {
			return nil, bad("bad block run")
		}
		// Runs are canonical: only the first may start with data, only
		// the last may end without data.
		if (holes == 0 && i != 0) || (data == 0 && i+int64(holes) != n) || holes+data == 0 {
			return nil, bad("non-canonical block run")
		}
		i += int64(holes)
		for end := i + int64(data); i < end; i++ {
			if len(rest) < 32 {
				return nil, bad("truncated block entry")
			}
			r := &m.Map.Blocks[i]
			copy(r.ID[:], rest)
			rest = rest[32:]
			if r.ID.IsZero() {
				return nil, bad("zero chunk id in a data run")
			}
			st, err := uv()
			if err != nil {
				return nil, err
			}
			if st > uint64(EncodeBound(MaxBlockSize)) {
				return nil, bad("stored size out of range")
			}
			r.Stored = uint32(st)
		}
	}
	if len(rest) != 0 {
		return nil, bad("trailing bytes")
	}
	return m, nil
}
