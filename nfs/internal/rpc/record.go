package rpc

import (
	"encoding/binary"
	"fmt"
	"io"
)

const lastFragment = 1 << 31

// ReadRecord reads one record (RFC 5531 section 11: one or more fragments,
// each with a four-byte header whose top bit marks the last fragment) and
// returns its bytes. A record longer than max bytes in total fails with
// ErrRecordTooLarge before any of the oversized fragment is read, so a
// hostile length costs nothing. buf is reused when it is large enough.
func ReadRecord(r io.Reader, max int, buf []byte) ([]byte, error) {
	rec := buf[:0]
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if len(rec) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h &^ lastFragment)
		if n > max-len(rec) {
			return nil, fmt.Errorf("%w: fragment of %d bytes after %d (limit %d)", ErrRecordTooLarge, n, len(rec), max)
		}
		start := len(rec)
		if cap(rec) < start+n {
			grown := make([]byte, start, start+n)
			copy(grown, rec)
			rec = grown
		}
		rec = rec[:start+n]
		if _, err := io.ReadFull(r, rec[start:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if h&lastFragment != 0 {
			return rec, nil
		}
	}
}

// FrameRecord prepends a single last-fragment header to a message whose
// first four bytes were reserved for it, and returns the framed bytes.
func FrameRecord(msg []byte) []byte {
	return FrameRecordExtra(msg, 0)
}

// FrameRecordExtra is FrameRecord for a record whose last extra bytes are
// sent separately, after msg.
func FrameRecordExtra(msg []byte, extra int) []byte {
	binary.BigEndian.PutUint32(msg, uint32(len(msg)-4+extra)|lastFragment)
	return msg
}
