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

// indexMagic starts every encoded tape index; its last two bytes are the
// format version.
const indexMagic = "SLTIDX01"

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

// encode serializes the index (see decodeIndex for the format).
func (x *tapeIndex) encode(dst []byte) []byte {
	dst = append(dst, indexMagic...)
	dst = binary.BigEndian.AppendUint64(dst, x.nextSeq)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(x.segs)))
	for i := range x.segs {
		s := &x.segs[i]
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

// segHeaderLen is the fixed part of one encoded segment entry.
const segHeaderLen = 8 + 8 + 8 + 4 + 4 + 4

// decodeIndex parses an encoded index:
//
//	"SLTIDX01" nextSeq:u64 nsegs:u32
//	nsegs × { seq:u64 first:u64 firstByte:u64 rawLen:u32 objLen:u32
//	          nruns:u32 nruns × { size:u32 count:u32 } }
//	crc32c:u32 (Castagnoli, of everything before it)
//
// all big-endian. It checks the checksum and that the segments are
// contiguous and consistent, and rebuilds the derived fields. Errors wrap
// ErrCorruptIndex.
func decodeIndex(b []byte) (*tapeIndex, error) {
	if len(b) < len(indexMagic)+8+4+4 || string(b[:len(indexMagic)]) != indexMagic {
		return nil, fmt.Errorf("%w: bad header", ErrCorruptIndex)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptIndex)
	}
	p := body[len(indexMagic):]
	x := &tapeIndex{nextSeq: binary.BigEndian.Uint64(p)}
	n := binary.BigEndian.Uint32(p[8:])
	p = p[12:]
	if uint64(n) > uint64(len(p)/segHeaderLen) {
		return nil, fmt.Errorf("%w: %d segments in %d bytes", ErrCorruptIndex, n, len(p))
	}
	x.segs = make([]segInfo, 0, n)
	var pos, bytes uint64
	for i := uint32(0); i < n; i++ {
		if len(p) < segHeaderLen {
			return nil, fmt.Errorf("%w: truncated segment %d", ErrCorruptIndex, i)
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
			return nil, fmt.Errorf("%w: segment %d: %d runs", ErrCorruptIndex, i, nr)
		}
		if s.first != pos || s.firstByte != bytes {
			return nil, fmt.Errorf("%w: segment %d not contiguous", ErrCorruptIndex, i)
		}
		if s.seq != 0 && s.seq >= x.nextSeq {
			return nil, fmt.Errorf("%w: segment %d: sequence %d beyond %d", ErrCorruptIndex, i, s.seq, x.nextSeq)
		}
		s.runs = make([]run, nr)
		var raw uint64
		for j := range s.runs {
			r := run{Size: binary.BigEndian.Uint32(p), Count: binary.BigEndian.Uint32(p[4:])}
			p = p[8:]
			if r.Count == 0 || (r.Size != fmSize && (r.Size == 0 || r.Size > maxRecord)) {
				return nil, fmt.Errorf("%w: segment %d run %d: bad run", ErrCorruptIndex, i, j)
			}
			s.runs[j] = r
			s.items += uint64(r.Count)
			if r.Size == fmSize {
				for k := uint64(0); k < uint64(r.Count); k++ {
					if len(x.fms) >= maxFilemarks {
						return nil, fmt.Errorf("%w: too many filemarks", ErrCorruptIndex)
					}
					x.fms = append(x.fms, pos+s.items-uint64(r.Count)+k)
				}
			} else {
				raw += uint64(r.Size) * uint64(r.Count)
			}
		}
		if raw != uint64(s.rawLen) || (s.seq == 0 && raw != 0) {
			return nil, fmt.Errorf("%w: segment %d: %d data bytes, header says %d", ErrCorruptIndex, i, raw, s.rawLen)
		}
		pos += s.items
		bytes += raw
		if pos < s.items || bytes < raw {
			return nil, fmt.Errorf("%w: segment %d: overflow", ErrCorruptIndex, i)
		}
		x.segs = append(x.segs, s)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptIndex, len(p))
	}
	return x, nil
}
