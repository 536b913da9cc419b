package vtl

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"
)

// fmSize is the run size that marks filemarks in a run list.
const fmSize = ^uint32(0)

// maxRecord bounds a record size in the index (SSC variable-length blocks
// are at most 2^24-1 bytes).
const maxRecord = 1<<24 - 1

// maxFilemarks bounds the filemarks on one tape, so that a small index
// cannot describe a huge filemark list.
const maxFilemarks = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// run is Count consecutive logical objects of the same kind: records of
// Size bytes, or filemarks when Size is fmSize.
type run struct {
	Size, Count uint32
}

// segInfo describes one segment of a tape.
type segInfo struct {
	// seq names the segment object; 0 means the segment has no object
	// (it holds only filemarks).
	seq uint64
	// first is the logical object number of its first object.
	first uint64
	// firstByte is the number of record bytes before the segment.
	firstByte uint64
	// rawLen is the number of record bytes in the segment.
	rawLen uint32
	// objLen is the size of the segment object.
	objLen uint32
	runs   []run
	// items is the number of logical objects (derived from runs).
	items uint64
}

// tapeIndex maps logical object numbers to segments. It is the decoded
// form of the index object.
type tapeIndex struct {
	nextSeq uint64
	segs    []segInfo
	// chunks are the index chunk objects of the last commit; nextChunk
	// names the next one written.
	chunks    []chunkRef
	nextChunk uint64
	// dirtyFrom is the first segment changed since the last commit.
	dirtyFrom int
	// chunkSegs is the number of segments per chunk object.
	chunkSegs int
	// fms lists the logical object numbers of the filemarks, ascending
	// (derived).
	fms []uint64
}

// eod is the logical object number of end-of-data.
func (x *tapeIndex) eod() uint64 {
	if len(x.segs) == 0 {
		return 0
	}
	s := &x.segs[len(x.segs)-1]
	return s.first + s.items
}

// usedBytes is the number of record bytes on the tape.
func (x *tapeIndex) usedBytes() uint64 {
	if len(x.segs) == 0 {
		return 0
	}
	s := &x.segs[len(x.segs)-1]
	return s.firstByte + uint64(s.rawLen)
}

// fmBefore returns the number of filemarks at logical object numbers below
// pos.
func (x *tapeIndex) fmBefore(pos uint64) uint64 {
	return uint64(sort.Search(len(x.fms), func(i int) bool { return x.fms[i] >= pos }))
}

// nextFM returns the first filemark at or after pos.
func (x *tapeIndex) nextFM(pos uint64) (uint64, bool) {
	i := sort.Search(len(x.fms), func(i int) bool { return x.fms[i] >= pos })
	if i == len(x.fms) {
		return 0, false
	}
	return x.fms[i], true
}

// prevFM returns the last filemark below pos.
func (x *tapeIndex) prevFM(pos uint64) (uint64, bool) {
	i := sort.Search(len(x.fms), func(i int) bool { return x.fms[i] >= pos })
	if i == 0 {
		return 0, false
	}
	return x.fms[i-1], true
}

// cursor locates one logical object inside the index.
type cursor struct {
	seg, run int
	inRun    uint32 // objects of the run before the object
	off      uint32 // byte offset of the object in the segment data
}

// seek returns the cursor of logical object pos, which must be below eod.
func (x *tapeIndex) seek(pos uint64) cursor {
	i := sort.Search(len(x.segs), func(i int) bool { return x.segs[i].first+x.segs[i].items > pos })
	s := &x.segs[i]
	rel := pos - s.first
	var off uint64
	for r, rn := range s.runs {
		if rel < uint64(rn.Count) {
			if rn.Size != fmSize {
				off += rel * uint64(rn.Size)
			}
			return cursor{seg: i, run: r, inRun: uint32(rel), off: uint32(off)}
		}
		rel -= uint64(rn.Count)
		if rn.Size != fmSize {
			off += uint64(rn.Count) * uint64(rn.Size)
		}
	}
	panic("vtl: index seek past segment end")
}

// object returns the size of the object at c (fmSize for a filemark).
func (x *tapeIndex) object(c cursor) uint32 { return x.segs[c.seg].runs[c.run].Size }

// advance moves c to the next object.
func (x *tapeIndex) advance(c *cursor) {
	s := &x.segs[c.seg]
	rn := s.runs[c.run]
	if rn.Size != fmSize {
		c.off += rn.Size
	}
	c.inRun++
	if c.inRun < rn.Count {
		return
	}
	c.inRun = 0
	c.run++
	if c.run < len(s.runs) {
		return
	}
	c.run, c.off = 0, 0
	c.seg++
}

// truncate drops every object at or after pos (pos <= eod). The segment
// that contains pos keeps its object; only its prefix stays referenced.
func (x *tapeIndex) truncate(pos uint64) {
	if pos >= x.eod() {
		return
	}
	c := x.seek(pos)
	x.touch(c.seg)
	s := &x.segs[c.seg]
	if c.run == 0 && c.inRun == 0 {
		x.segs = x.segs[:c.seg]
	} else {
		runs := s.runs[:c.run+1]
		if c.inRun == 0 {
			runs = runs[:c.run]
		} else {
			runs[c.run].Count = c.inRun
		}
		s.runs = runs
		s.rawLen = c.off
		s.items = pos - s.first
		x.segs = x.segs[:c.seg+1]
	}
	x.fms = x.fms[:x.fmBefore(pos)]
}

// touch records that segment i (and everything after it) changed.
func (x *tapeIndex) touch(i int) {
	x.dirtyFrom = min(x.dirtyFrom, i)
}

// appendRun adds n objects of size to segment s, merging with its last run.
func (s *segInfo) appendRun(size, n uint32) {
	if k := len(s.runs); k > 0 && s.runs[k-1].Size == size && s.runs[k-1].Count <= ^uint32(0)-n {
		s.runs[k-1].Count += n
	} else {
		s.runs = append(s.runs, run{Size: size, Count: n})
	}
	s.items += uint64(n)
	if size != fmSize {
		s.rawLen += size * n
	}
}

// defaultChunkSegs is the number of segments per index chunk object. A
// commit rewrites only the chunks from the first changed segment on, plus
// the small root, so its cost does not grow with the tape.
const defaultChunkSegs = 4096

// maxChunkSegs bounds the chunk size a root may declare.
const maxChunkSegs = 1 << 16

// Magic strings of the two index object kinds; the last two bytes are the
// format version.
const (
	rootMagic  = "SLTIDX02"
	chunkMagic = "SLTCHK01"
)

// chunkRef names one index chunk object.
type chunkRef struct {
	id   uint64
	size uint32
}

// segHeaderLen is the fixed part of one encoded segment entry.
const segHeaderLen = 8 + 8 + 8 + 4 + 4 + 4

// encodeRoot serializes the root index object:
//
//	"SLTIDX02" nextSeq:u64 nextChunk:u64 chunkSegs:u32 nchunks:u32
//	nchunks × { id:u64 size:u32 }
//	crc32c:u32 (Castagnoli, of everything before it)
//
// all big-endian. Chunk i holds segments [i*chunkSegs, (i+1)*chunkSegs).
func encodeRoot(dst []byte, x *tapeIndex, chunks []chunkRef) []byte {
	dst = append(dst, rootMagic...)
	dst = binary.BigEndian.AppendUint64(dst, x.nextSeq)
	dst = binary.BigEndian.AppendUint64(dst, x.nextChunk)
	dst = binary.BigEndian.AppendUint32(dst, uint32(x.chunkSegs))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(chunks)))
	for _, c := range chunks {
		dst = binary.BigEndian.AppendUint64(dst, c.id)
		dst = binary.BigEndian.AppendUint32(dst, c.size)
	}
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst, castagnoli))
}

// checkSum verifies and strips the trailing CRC-32C of an index object
// that starts with magic.
func checkSum(b []byte, magic string, min int) ([]byte, error) {
	if len(b) < len(magic)+min+4 || string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: bad header", ErrCorruptIndex)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptIndex)
	}
	return body[len(magic):], nil
}

// decodeRoot parses a root index object (see encodeRoot) into an index
// without segments and the list of its chunks.
func decodeRoot(b []byte) (*tapeIndex, []chunkRef, error) {
	p, err := checkSum(b, rootMagic, 24)
	if err != nil {
		return nil, nil, err
	}
	x := &tapeIndex{nextSeq: binary.BigEndian.Uint64(p), nextChunk: binary.BigEndian.Uint64(p[8:])}
	x.chunkSegs = int(binary.BigEndian.Uint32(p[16:]))
	n := binary.BigEndian.Uint32(p[20:])
	p = p[24:]
	if x.chunkSegs < 1 || x.chunkSegs > maxChunkSegs {
		return nil, nil, fmt.Errorf("%w: %d segments per chunk", ErrCorruptIndex, x.chunkSegs)
	}
	if uint64(len(p)) != uint64(n)*12 {
		return nil, nil, fmt.Errorf("%w: %d chunks in %d bytes", ErrCorruptIndex, n, len(p))
	}
	chunks := make([]chunkRef, n)
	for i := range chunks {
		chunks[i] = chunkRef{id: binary.BigEndian.Uint64(p), size: binary.BigEndian.Uint32(p[8:])}
		p = p[12:]
		if chunks[i].id >= x.nextChunk {
			return nil, nil, fmt.Errorf("%w: chunk %d id %d beyond %d", ErrCorruptIndex, i, chunks[i].id, x.nextChunk)
		}
	}
	return x, chunks, nil
}

// encodeChunk serializes segments segs of x as a chunk object:
//
//	"SLTCHK01" nsegs:u32
//	nsegs × { seq:u64 first:u64 firstByte:u64 rawLen:u32 objLen:u32
//	          nruns:u32 nruns × { size:u32 count:u32 } }
//	crc32c:u32
func encodeChunk(dst []byte, segs []segInfo) []byte {
	dst = append(dst, chunkMagic...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(segs)))
	for i := range segs {
		s := &segs[i]
		dst = binary.BigEndian.AppendUint64(dst, s.seq)
		dst = binary.BigEndian.AppendUint64(dst, s.first)
		dst = binary.BigEndian.AppendUint64(dst, s.firstByte)
		dst = binary.BigEndian.AppendUint32(dst, s.rawLen)
		dst = binary.BigEndian.AppendUint32(dst, s.objLen)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(s.runs)))
		for _, r := range s.runs {
			dst = binary.BigEndian.AppendUint32(dst, r.Size)
			dst = binary.BigEndian.AppendUint32(dst, r.Count)
		}
	}
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst, castagnoli))
}

// decodeChunk parses a chunk object (see encodeChunk) and appends its
// segments to x, checking that they continue x contiguously and are
// consistent, and rebuilding the derived fields. Errors wrap
// ErrCorruptIndex.
func (x *tapeIndex) decodeChunk(b []byte) error {
	p, err := checkSum(b, chunkMagic, 4)
	if err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(n) > uint64(len(p)/segHeaderLen) || n > maxChunkSegs {
		return fmt.Errorf("%w: %d segments in %d bytes", ErrCorruptIndex, n, len(p))
	}
	pos, bytes := x.eod(), x.usedBytes()
	for i := uint32(0); i < n; i++ {
		if len(p) < segHeaderLen {
			return fmt.Errorf("%w: truncated segment %d", ErrCorruptIndex, i)
		}
		s := segInfo{
			seq:       binary.BigEndian.Uint64(p),
			first:     binary.BigEndian.Uint64(p[8:]),
			firstByte: binary.BigEndian.Uint64(p[16:]),
			rawLen:    binary.BigEndian.Uint32(p[24:]),
			objLen:    binary.BigEndian.Uint32(p[28:]),
		}
		nr := binary.BigEndian.Uint32(p[32:])
		p = p[segHeaderLen:]
		if uint64(nr) > uint64(len(p)/8) || nr == 0 {
			return fmt.Errorf("%w: segment %d: %d runs", ErrCorruptIndex, i, nr)
		}
		if s.first != pos || s.firstByte != bytes {
			return fmt.Errorf("%w: segment %d not contiguous", ErrCorruptIndex, i)
		}
		if s.seq != 0 && s.seq >= x.nextSeq {
			return fmt.Errorf("%w: segment %d: sequence %d beyond %d", ErrCorruptIndex, i, s.seq, x.nextSeq)
		}
		s.runs = make([]run, nr)
		var raw uint64
		for j := range s.runs {
			r := run{Size: binary.BigEndian.Uint32(p), Count: binary.BigEndian.Uint32(p[4:])}
			p = p[8:]
			if r.Count == 0 || (r.Size != fmSize && (r.Size == 0 || r.Size > maxRecord)) {
				return fmt.Errorf("%w: segment %d run %d: bad run", ErrCorruptIndex, i, j)
			}
			s.runs[j] = r
			s.items += uint64(r.Count)
			if r.Size == fmSize {
				if uint64(len(x.fms))+uint64(r.Count) > maxFilemarks {
					return fmt.Errorf("%w: too many filemarks", ErrCorruptIndex)
				}
				for k := uint64(0); k < uint64(r.Count); k++ {
					x.fms = append(x.fms, pos+s.items-uint64(r.Count)+k)
				}
			} else {
				raw += uint64(r.Size) * uint64(r.Count)
			}
		}
		if raw != uint64(s.rawLen) || (s.seq == 0 && raw != 0) {
			return fmt.Errorf("%w: segment %d: %d data bytes, header says %d", ErrCorruptIndex, i, raw, s.rawLen)
		}
		pos += s.items
		bytes += raw
		if pos < s.items || bytes < raw {
			return fmt.Errorf("%w: segment %d: overflow", ErrCorruptIndex, i)
		}
		x.segs = append(x.segs, s)
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorruptIndex, len(p))
	}
	return nil
}
