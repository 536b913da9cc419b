package iscsi

import (
	"math/bits"
	"sync"
)

// Buffer size classes: powers of two from 4 KiB to maxPooled.
const (
	minClassShift = 12
	maxClassShift = 24
	maxPooled     = 1 << maxClassShift
)

// bufPool hands out data buffers in power-of-two size classes so the data
// path reuses memory instead of allocating per command.
type bufPool struct {
	classes [maxClassShift - minClassShift + 1]sync.Pool
}

func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// get returns a buffer of length n. Buffers up to maxPooled come from the
// pool; larger ones are allocated (and dropped by put).
func (p *bufPool) get(n int) *[]byte {
	if n > maxPooled {
		b := make([]byte, n)
		return &b
	}
	c := classOf(n)
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<(c+minClassShift))
	return &b
}

// put returns a buffer obtained from get.
func (p *bufPool) put(b *[]byte) {
	if b == nil || cap(*b) > maxPooled {
		return
	}
	c := classOf(cap(*b))
	if cap(*b) != 1<<(c+minClassShift) {
		return
	}
	p.classes[c].Put(b)
}
