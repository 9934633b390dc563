//go:build !purego

package index

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// useAVX2 selects the assembly kernels; CPUs without AVX2 and FMA (and
// purego builds) use the portable Go ones in kernels.go.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func dotF32AVX2(a, b *float32, n int) float32

//go:noescape
func dotF32I8AVX2(q *float32, c *int8, n int) float32

//go:noescape
func dotI8AVX2(a, b *int8, n int) int32

//go:noescape
func dotF32NibAVX2(q *float32, nib *uint8, n int) float32

//go:noescape
func prefetch(p *byte, n int)

// dotF32Nib returns q·r for 4-bit signed residuals packed two per byte.
func dotF32Nib(q []float32, nib []uint8) float32 {
	n := len(q) &^ 15
	if !useAVX2 || n == 0 {
		return dotF32NibGo(q, nib)
	}
	_ = nib[n/2-1]
	return dotF32NibAVX2(&q[0], &nib[0], n) + dotF32NibGo(q[n:], nib[n/2:])
}

// dotF32 returns a·b over len(a) elements (b at least as long).
func dotF32(a, b []float32) float32 {
	if useAVX2 && len(a) > 0 {
		_ = b[len(a)-1]
		return dotF32AVX2(&a[0], &b[0], len(a))
	}
	return dotF32Go(a, b)
}

// dotF32I8 returns q·c with c's int8 codes taken as float32.
func dotF32I8(q []float32, c []int8) float32 {
	if useAVX2 && len(q) > 0 {
		_ = c[len(q)-1]
		return dotF32I8AVX2(&q[0], &c[0], len(q))
	}
	return dotF32I8Go(q, c)
}

// dotI8 returns the exact integer dot product of two code vectors.
func dotI8(a, b []int8) int32 {
	if useAVX2 && len(a) > 0 {
		_ = b[len(a)-1]
		return dotI8AVX2(&a[0], &b[0], len(a))
	}
	return dotI8Go(a, b)
}

// prefetchF32 and prefetchI8 hint that a row is about to be read; graph
// search visits rows in an order the hardware prefetcher cannot guess.
func prefetchF32(v []float32) {
	if len(v) > 0 {
		prefetch((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	}
}

func prefetchI8(v []int8) {
	if len(v) > 0 {
		prefetch((*byte)(unsafe.Pointer(&v[0])), len(v))
	}
}
