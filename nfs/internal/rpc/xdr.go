package rpc

import (
	"encoding/binary"
	"fmt"
)

// Decoder reads XDR values from a byte slice. The first error sticks: after
// it every read returns zero values and Err reports it, so callers can
// decode a whole structure and check once.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder returns a decoder over b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Err returns the first decoding error.
func (d *Decoder) Err() error { return d.err }

// Remaining returns the bytes not yet decoded.
func (d *Decoder) Remaining() []byte { return d.b }

func (d *Decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

// Uint32 reads an unsigned 32-bit integer.
func (d *Decoder) Uint32() uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail(ErrShort)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

// Uint64 reads an unsigned 64-bit integer (XDR unsigned hyper).
func (d *Decoder) Uint64() uint64 {
	hi := d.Uint32()
	lo := d.Uint32()
	return uint64(hi)<<32 | uint64(lo)
}

// Bool reads an XDR boolean; any non-zero value is true.
func (d *Decoder) Bool() bool { return d.Uint32() != 0 }

// Fixed reads n bytes of fixed-length opaque data (padded to 4 bytes). The
// result aliases the input.
func (d *Decoder) Fixed(n int) []byte {
	if d.err != nil {
		return nil
	}
	padded := (n + 3) &^ 3
	if n < 0 || len(d.b) < padded {
		d.fail(ErrShort)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[padded:]
	return v
}

// Opaque reads variable-length opaque data of at most max bytes. The
// result aliases the input.
func (d *Decoder) Opaque(max int) []byte {
	n := d.Uint32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) {
		d.fail(fmt.Errorf("%w: %d > %d", ErrTooLong, n, max))
		return nil
	}
	return d.Fixed(int(n))
}

// String reads a string of at most max bytes.
func (d *Decoder) String(max int) string { return string(d.Opaque(max)) }

// Encoder appends XDR values to a byte slice.
type Encoder struct {
	B []byte
}

// Uint32 appends an unsigned 32-bit integer.
func (e *Encoder) Uint32(v uint32) { e.B = binary.BigEndian.AppendUint32(e.B, v) }

// Uint64 appends an unsigned 64-bit integer.
func (e *Encoder) Uint64(v uint64) { e.B = binary.BigEndian.AppendUint64(e.B, v) }

// Bool appends an XDR boolean.
func (e *Encoder) Bool(v bool) {
	if v {
		e.Uint32(1)
	} else {
		e.Uint32(0)
	}
}

// Fixed appends fixed-length opaque data with its padding.
func (e *Encoder) Fixed(b []byte) {
	e.B = append(e.B, b...)
	if pad := (4 - len(b)%4) % 4; pad > 0 {
		e.B = append(e.B, make([]byte, pad)...)
	}
}

// Opaque appends variable-length opaque data.
func (e *Encoder) Opaque(b []byte) {
	e.Uint32(uint32(len(b)))
	e.Fixed(b)
}

// String appends a string.
func (e *Encoder) String(s string) {
	e.Uint32(uint32(len(s)))
	e.B = append(e.B, s...)
	if pad := (4 - len(s)%4) % 4; pad > 0 {
		e.B = append(e.B, make([]byte, pad)...)
	}
}
