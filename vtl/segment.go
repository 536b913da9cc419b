package vtl

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Segment codecs.
const (
	codecNone byte = 0
	codecLZ4  byte = 1
	codecZstd byte = 2
)

// segMagic starts every segment object, followed by the codec, three
// reserved bytes, the raw length and the CRC-32C of the raw data.
const segMagic = "SLTS"

// segHdrLen is the length of a segment object header.
const segHdrLen = 16

// codec compresses and decompresses segments. It is safe for concurrent
// use.
type codec struct {
	kind byte
	zenc *zstd.Encoder
	zdec *zstd.Decoder
}

func newCodec(name string) (*codec, error) {
	c := &codec{}
	switch name {
	case "", "lz4":
		c.kind = codecLZ4
	case "zstd":
		c.kind = codecZstd
	case "none":
		c.kind = codecNone
	default:
		return nil, fmt.Errorf("%w: compression %q (lz4, zstd or none)", ErrInvalid, name)
	}
	var err error
	if c.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)); err != nil {
		return nil, fmt.Errorf("vtl: zstd encoder: %w", err)
	}
	if c.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30)); err != nil {
		return nil, fmt.Errorf("vtl: zstd decoder: %w", err)
	}
	return c, nil
}

func (c *codec) close() {
	c.zenc.Close()
	c.zdec.Close()
}

// bound is the largest compressed body for n raw bytes.
func (c *codec) bound(n int) int {
	return max(lz4.CompressBlockBound(n), n+n/64+1024)
}

// sampleLen is how much of a segment is compressed first to decide
// whether the rest is worth compressing.
const sampleLen = 256 << 10

// encode builds the segment object for raw: the header and the body,
// which is either compressed into buf (grown as needed, returned for
// reuse) or raw itself when the data does not shrink (a sample of the
// segment is tried first, so incompressible data costs little).
func (c *codec) encode(buf, raw []byte) (hdr [segHdrLen]byte, body, outBuf []byte) {
	kind := c.kind
	if kind != codecNone && len(raw) > 2*sampleLen {
		need := c.bound(sampleLen)
		if cap(buf) < need {
			buf = make([]byte, need)
		}
		if n := c.compress(kind, buf[:need], raw[:sampleLen]); n == 0 || n > sampleLen*97/100 {
			kind = codecNone
		}
	}
	if kind != codecNone {
		need := c.bound(len(raw))
		if cap(buf) < need {
			buf = make([]byte, need)
		}
		if n := c.compress(kind, buf[:need], raw); n > 0 && n < len(raw) {
			body = buf[:n]
		} else {
			kind = codecNone
		}
	}
	if kind == codecNone {
		body = raw
	}
	copy(hdr[:], segMagic)
	hdr[4] = kind
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(raw)))
	binary.BigEndian.PutUint32(hdr[12:], crc32.Checksum(raw, castagnoli))
	return hdr, body, buf
}

// compress compresses src into dst with kind and returns the compressed
// length, or 0 when it failed or did not fit.
func (c *codec) compress(kind byte, dst, src []byte) int {
	switch kind {
	case codecLZ4:
		var lc lz4.Compressor
		n, err := lc.CompressBlock(src, dst)
		if err != nil {
			return 0
		}
		return n
	case codecZstd:
		out := c.zenc.EncodeAll(src, dst[:0])
		if len(out) > len(dst) || (len(out) > 0 && &out[0] != &dst[0]) {
			return 0
		}
		return len(out)
	}
	return 0
}

// decode checks and decompresses the segment object obj into dst (grown
// as needed) and returns the raw data, which must be want bytes long.
func (c *codec) decode(dst, obj []byte, want uint32) ([]byte, error) {
	if len(obj) < segHdrLen || string(obj[:4]) != segMagic {
		return nil, fmt.Errorf("%w: bad segment header", ErrCorruptIndex)
	}
	rawLen := binary.BigEndian.Uint32(obj[8:])
	if rawLen < want || rawLen > maxSegment {
		return nil, fmt.Errorf("%w: segment holds %d bytes, index needs %d", ErrCorruptIndex, rawLen, want)
	}
	if cap(dst) < int(rawLen) {
		dst = make([]byte, rawLen)
	}
	dst = dst[:rawLen]
	body := obj[segHdrLen:]
	switch obj[4] {
	case codecNone:
		if len(body) != int(rawLen) {
			return nil, fmt.Errorf("%w: stored segment length", ErrCorruptIndex)
		}
		copy(dst, body)
	case codecLZ4:
		n, err := lz4.UncompressBlock(body, dst)
		if err != nil || n != int(rawLen) {
			return nil, fmt.Errorf("%w: lz4: %d bytes, %v", ErrCorruptIndex, n, err)
		}
	case codecZstd:
		out, err := c.zdec.DecodeAll(body, dst[:0])
		if err != nil || len(out) != int(rawLen) {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorruptIndex, err)
		}
		dst = out
	default:
		return nil, fmt.Errorf("%w: codec %d", ErrCorruptIndex, obj[4])
	}
	if crc32.Checksum(dst, castagnoli) != binary.BigEndian.Uint32(obj[12:]) {
		return nil, fmt.Errorf("%w: segment checksum mismatch", ErrCorruptIndex)
	}
	return dst[:want], nil
}

// maxSegment bounds a segment's raw size.
const maxSegment = 1 << 30

// uploader compresses and uploads sealed segments in the background, at
// most conc at a time, and hands back raw buffers for reuse. Errors are
// sticky: once an upload failed, wait reports it until reset.
type uploader struct {
	store objstore.Store
	codec *codec
	// sem holds one token per upload in flight.
	sem  chan struct{}
	raw  chan []byte // free raw segment buffers
	comp chan []byte // free compressed buffers
	wg   sync.WaitGroup

	mu   sync.Mutex
	err  error
	lens map[uint64]uint32 // object sizes of finished uploads, by seq
}

func newUploader(store objstore.Store, c *codec, conc int) *uploader {
	return &uploader{
		store: store, codec: c,
		sem:  make(chan struct{}, conc),
		raw:  make(chan []byte, conc+1),
		comp: make(chan []byte, conc),
		lens: make(map[uint64]uint32),
	}
}

// buffer returns a free raw buffer of capacity size, waiting for an upload
// to finish when all are in use (this is what bounds a drive's memory).
func (u *uploader) buffer(ctx context.Context, size int) ([]byte, error) {
	select {
	case b := <-u.raw:
		return b[:0], nil
	default:
	}
	if len(u.sem) < cap(u.sem) {
		return make([]byte, 0, size), nil
	}
	select {
	case b := <-u.raw:
		return b[:0], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// submit uploads raw as key in the background; raw returns to the buffer
// pool afterwards. ctx is the command's; background derives the upload's
// own context from it.
func (u *uploader) submit(ctx context.Context, background func(context.Context) (context.Context, func()), key string, seq uint64, raw []byte, fail func(string) error) error {
	select {
	case u.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	bg, done := background(ctx)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.sem }()
		defer done()
		ctx := bg
		var cb []byte
		select {
		case cb = <-u.comp:
		default:
		}
		hdr, body, cb := u.codec.encode(cb, raw)
		aliased := len(body) > 0 && &body[0] == &raw[0]
		if !aliased {
			u.release(raw)
		}
		size := int64(len(hdr) + len(body))
		err := fail("vtl/segment-upload")
		if err == nil {
			r := io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(body))
			_, err = u.store.Put(ctx, key, r, size, objstore.PutOptions{ContentType: "application/octet-stream"})
		}
		if aliased {
			u.release(raw)
		}
		select {
		case u.comp <- cb[:0]:
		default:
		}
		u.mu.Lock()
		if err != nil && u.err == nil {
			u.err = fmt.Errorf("vtl: upload %s: %w", key, err)
		}
		if err == nil {
			u.lens[seq] = uint32(size)
		}
		u.mu.Unlock()
	}()
	return nil
}

// wait blocks until every upload finished and returns the first error.
func (u *uploader) wait() error {
	u.wg.Wait()
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// release returns a raw buffer to the pool.
func (u *uploader) release(raw []byte) {
	select {
	case u.raw <- raw[:0]:
	default:
	}
}

// failed returns the sticky upload error without waiting.
func (u *uploader) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// objLen returns (and forgets) the object size of an uploaded segment.
func (u *uploader) objLen(seq uint64) (uint32, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, ok := u.lens[seq]
	delete(u.lens, seq)
	return n, ok
}

// reset clears a sticky error.
func (u *uploader) reset() {
	u.mu.Lock()
	u.err = nil
	clear(u.lens)
	u.mu.Unlock()
}

// fetchSegment reads a whole segment object into buf (grown as needed).
func fetchSegment(ctx context.Context, store objstore.Store, key string, size uint32, buf []byte) ([]byte, error) {
	rc, _, err := store.Get(ctx, key, objstore.GetOptions{})
	if err != nil {
		return buf, fmt.Errorf("vtl: get %s: %w", key, err)
	}
	defer rc.Close()
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(rc, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: segment %s shorter than %d bytes", ErrCorruptIndex, key, size)
		}
		return buf, fmt.Errorf("vtl: read %s: %w", key, err)
	}
	return buf, nil
}
