//go:build cgo

package preprocess

/*
#cgo CFLAGS: -O2
#include "composite_avx2.h"
*/
import "C"

import (
	"image"
	"unsafe"
)

// The cutout PNG's rows are composited and Up-filtered by AVX2 code where
// the CPU has it (composite_avx2.h): in Go these two loops took about
// two fifths of the encoder's time on a 1.5 MP cutout.
func init() {
	if C.imgserve_composite_has_avx2() != 0 {
		cutoutBand = cutoutBandAVX2
	}
}

func cutoutBandAVX2(f []byte, img *image.NRGBA, mask *image.Gray, lo, hi int, cur, prev []byte) {
	w := img.Rect.Dx()
	if lo >= hi || w == 0 {
		return
	}
	n := 4 * w
	pix := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y):]
	m := mask.Pix[mask.PixOffset(mask.Rect.Min.X, mask.Rect.Min.Y):]
	// Bounds the C code relies on: the last row it reads of each image,
	// the band's scanlines, the scratch rows.
	_ = pix[(hi-1)*img.Stride+n-1]
	_ = m[(hi-1)*mask.Stride+w-1]
	_ = f[(hi-lo)*(1+n)-1]
	_, _ = cur[n-1], prev[n-1]
	C.imgserve_cutout_up((*C.uint8_t)(unsafe.Pointer(&f[0])), (*C.uint8_t)(unsafe.Pointer(&pix[0])), C.long(img.Stride),
		(*C.uint8_t)(unsafe.Pointer(&m[0])), C.long(mask.Stride), C.int(w), C.int(lo), C.int(hi),
		(*C.uint8_t)(unsafe.Pointer(&cur[0])), (*C.uint8_t)(unsafe.Pointer(&prev[0])))
}
