package inference

import (
	"math/bits"
	"sync"
)

// bufferPool recycles batch buffers by power-of-two capacity class, so the
// hot path does not allocate a batch-sized buffer per run. Capacity is at
// most twice the request, which bounds the waste.
type bufferPool struct {
	classes [64]sync.Pool
}

func (p *bufferPool) get(n int) *[]byte {
	c := sizeClass(n)
	if v := p.classes[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *bufferPool) put(b *[]byte) {
	p.classes[sizeClass(cap(*b))].Put(b)
}

func sizeClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}
