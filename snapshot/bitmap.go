package snapshot

import "math/bits"

// Bitmap is a set of block indexes, one bit per block. Changed-block
// tracking hands one to Create to say which blocks changed since the parent
// snapshot. It is not safe for concurrent mutation.
type Bitmap struct {
	n     int64
	words []uint64
}

// NewBitmap returns an empty bitmap for n blocks.
func NewBitmap(n int64) *Bitmap {
	return &Bitmap{n: n, words: make([]uint64, (n+63)/64)}
}

// FullBitmap returns a bitmap for n blocks with every bit set.
func FullBitmap(n int64) *Bitmap {
	b := NewBitmap(n)
	for i := range b.words {
		b.words[i] = ^uint64(0)
	}
	b.clearTail()
	return b
}

func (b *Bitmap) clearTail() {
	if r := b.n % 64; r != 0 {
		b.words[len(b.words)-1] &= (1 << r) - 1
	}
}

// Len returns the number of blocks the bitmap covers.
func (b *Bitmap) Len() int64 { return b.n }

// Set adds block i.
func (b *Bitmap) Set(i int64) { b.words[i>>6] |= 1 << (i & 63) }

// Clear removes block i.
func (b *Bitmap) Clear(i int64) { b.words[i>>6] &^= 1 << (i & 63) }

// Test reports whether block i is in the set.
func (b *Bitmap) Test(i int64) bool { return b.words[i>>6]&(1<<(i&63)) != 0 }

// Count returns the number of blocks in the set.
func (b *Bitmap) Count() int64 {
	var n int
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// Next returns the first block >= i in the set, or -1.
func (b *Bitmap) Next(i int64) int64 {
	if i < 0 {
		i = 0
	}
	if i >= b.n {
		return -1
	}
	wi := i >> 6
	w := b.words[wi] >> (i & 63)
	if w != 0 {
		return i + int64(bits.TrailingZeros64(w))
	}
	for wi++; wi < int64(len(b.words)); wi++ {
		if b.words[wi] != 0 {
			return wi<<6 + int64(bits.TrailingZeros64(b.words[wi]))
		}
	}
	return -1
}

// Or adds every block of o (which must cover the same number of blocks).
func (b *Bitmap) Or(o *Bitmap) {
	for i := range b.words {
		if i < len(o.words) {
			b.words[i] |= o.words[i]
		}
	}
	b.clearTail()
}

// Clone returns a copy.
func (b *Bitmap) Clone() *Bitmap {
	return &Bitmap{n: b.n, words: append([]uint64(nil), b.words...)}
}

// Bytes returns the bitmap as little-endian bytes, (Len+7)/8 of them: bit i
// is bit i%8 of byte i/8.
func (b *Bitmap) Bytes() []byte {
	out := make([]byte, (b.n+7)/8)
	for i := range out {
		out[i] = byte(b.words[i/8] >> (8 * (i % 8)))
	}
	return out
}

// BitmapFromBytes builds a bitmap for n blocks from the Bytes form; bits
// beyond n are ignored and missing bytes read as zero.
func BitmapFromBytes(n int64, p []byte) *Bitmap {
	b := NewBitmap(n)
	for i, v := range p {
		if int64(i) >= (n+7)/8 {
			break
		}
		b.words[i/8] |= uint64(v) << (8 * (i % 8))
	}
	b.clearTail()
	return b
}
