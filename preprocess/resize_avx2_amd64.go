//go:build cgo

package preprocess

// #include "resize_avx2.h"
import "C"

import (
	"image"
	"unsafe"
)

// avx2Kernels are the resampler's loops in AVX2 (see avx2_amd64.go).
var avx2Kernels = kernels{name: "avx2", hRGB: horizontalRGBAVX2, hGray: horizontalGrayAVX2, vertical: verticalAVX2}

func horizontalRGBAVX2(tmp []byte, src *image.NRGBA, first, lo, hi int, c *coeffs) {
	w := len(c.bounds) / 2
	if lo >= hi || w == 0 {
		return
	}
	row0 := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+first):]
	// The last row read is hi-1; C sees rows [lo, hi) from row0.
	_ = row0[(hi-1)*src.Stride+4*src.Rect.Dx()-1]
	_ = tmp[3*w*hi-1]
	kq, groups := c.avx2Weights()
	C.imgserve_h_rgba((*C.uint8_t)(unsafe.Pointer(&row0[0])), C.long(src.Stride), C.int(src.Rect.Dx()), C.int(lo), C.int(hi),
		(*C.uint8_t)(unsafe.Pointer(&tmp[0])), C.int(w),
		(*C.long)(unsafe.Pointer(&c.bounds[0])), (*C.int16_t)(unsafe.Pointer(&kq[0])), C.int(groups))
}

// avx2Weights makes (once per coeffs) the layouts of k the AVX2 kernels
// read, and returns split16's.
func (c *coeffs) avx2Weights() ([]int16, int) {
	c.simd.once.Do(func() {
		c.simd.k, c.simd.groups = c.split16()
		c.simd.k8, c.simd.ksize8 = c.padded8()
	})
	return c.simd.k, c.simd.groups
}

// split16 lays k out for imgserve_h_rgba: each weight split as
// kh*2048 + kl (0 <= kl < 2048, so both fit 16 bits), in groups of four
// taps, 16 kl then 16 kh a group, paired as the pixels are.
func (c *coeffs) split16() ([]int16, int) {
	groups := (c.ksize + 3) / 4
	n := len(c.bounds) / 2
	kq := make([]int16, n*groups*32)
	for x := 0; x < n; x++ {
		k := c.k[x*c.ksize:][:c.bounds[2*x+1]]
		for t, v := range k {
			g := kq[(x*groups+t/4)*32:][:32]
			lane := 8 * ((t % 4) / 2) // taps 0, 1 in the low lane, 2, 3 in the high
			for i := t % 2; i < 8; i += 2 {
				g[lane+i] = int16(v & 2047)
				g[16+lane+i] = int16(v >> 11)
			}
		}
	}
	return kq, groups
}

func horizontalGrayAVX2(tmp []byte, src *image.Gray, first, lo, hi int, c *coeffs) {
	w := len(c.bounds) / 2
	if lo >= hi || w == 0 {
		return
	}
	sw := src.Rect.Dx()
	row0 := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+first):]
	_ = row0[(hi-1)*src.Stride+sw-1]
	_ = tmp[w*hi-1]
	c.avx2Weights()
	k8, ksize8 := c.simd.k8, c.simd.ksize8
	C.imgserve_h_gray((*C.uint8_t)(unsafe.Pointer(&row0[0])), C.long(src.Stride), C.int(sw), C.int(lo), C.int(hi),
		(*C.uint8_t)(unsafe.Pointer(&tmp[0])), C.int(w),
		(*C.long)(unsafe.Pointer(&c.bounds[0])), (*C.int32_t)(unsafe.Pointer(&k8[0])), C.int(ksize8))
}

// verticalAVX2 writes output rows [lo, hi), n bytes each, stride apart in
// out, from tmp's n-byte rows.
func verticalAVX2(out []byte, stride, n int, tmp []byte, c *coeffs, first, lo, hi int) {
	if lo >= hi || n == 0 {
		return
	}
	_ = out[(hi-1)*stride+n-1]
	f, rows := c.rows()
	_ = tmp[(f-first+rows)*n-1]
	C.imgserve_v((*C.uint8_t)(unsafe.Pointer(&out[0])), C.long(stride), (*C.uint8_t)(unsafe.Pointer(&tmp[0])), C.int(n),
		C.int(lo), C.int(hi), C.int(first), (*C.long)(unsafe.Pointer(&c.bounds[0])), (*C.int32_t)(unsafe.Pointer(&c.k[0])), C.int(c.ksize))
}

// padded8 is k with each sample's weights padded with zeros to a multiple
// of 8, for the eight-tap loads of imgserve_h_gray.
func (c *coeffs) padded8() ([]int32, int) {
	ksize8 := (c.ksize + 7) &^ 7
	n := len(c.bounds) / 2
	k8 := make([]int32, n*ksize8)
	for i := 0; i < n; i++ {
		copy(k8[i*ksize8:][:c.ksize], c.k[i*c.ksize:][:c.ksize])
	}
	return k8, ksize8
}
