//go:build cgo

package preprocess

// #include "composite_avx2.h"
import "C"

import (
	"image"
	"unsafe"
)

// cutoutBandAVX2 is cutoutBand in AVX2 (see avx2_amd64.go).
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
