//go:build libdeflate

package preprocess

/*
#cgo pkg-config: libdeflate
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <libdeflate.h>

enum { IMGSERVE_PNG_OK, IMGSERVE_PNG_CORRUPT, IMGSERVE_PNG_SHORT, IMGSERVE_PNG_FILTER };

// imgserve_paeth is PNG's Paeth predictor with p = a+b-c folded into the
// distances, written so that the compiler emits conditional moves: the
// branches of the textbook form mispredict on photos.
static inline uint8_t imgserve_paeth(int a, int b, int c) {
	int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
	int ab = pb < pa ? b : a;
	int pab = pb < pa ? pb : pa;
	return pc < pab ? c : ab;
}

// imgserve_png_decode inflates the zlib stream z into raw (exactly
// h*(1+w*ch) bytes: one filter byte per row), undoes each row's filter in
// place and writes the rows into pix as non-premultiplied RGBA. ch is 1
// (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA), 8 bits each. *translucent
// is set when any alpha is below 255.
static int imgserve_png_decode(const uint8_t *z, size_t zlen, uint8_t *raw, size_t rawlen,
		int w, int h, int ch, uint8_t *pix, size_t stride, int *translucent) {
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	size_t got = 0;
	enum libdeflate_result r;
	if (!d) return IMGSERVE_PNG_CORRUPT;
	r = libdeflate_zlib_decompress(d, z, zlen, raw, rawlen, &got);
	libdeflate_free_decompressor(d);
	if (r == LIBDEFLATE_SHORT_OUTPUT || (r == LIBDEFLATE_SUCCESS && got != rawlen)) return IMGSERVE_PNG_SHORT;
	if (r != LIBDEFLATE_SUCCESS) return IMGSERVE_PNG_CORRUPT;
	size_t n = (size_t)w * ch;
	uint8_t alpha = 255;
	for (int y = 0; y < h; y++) {
		uint8_t *row = raw + (size_t)y * (n + 1);
		uint8_t *cur = row + 1;
		const uint8_t *up = y > 0 ? raw + (size_t)(y - 1) * (n + 1) + 1 : NULL;
		size_t i;
		switch (row[0]) {
		case 0:
			break;
		case 1: // Sub
			for (i = ch; i < n; i++) cur[i] += cur[i - ch];
			break;
		case 2: // Up
			if (up) for (i = 0; i < n; i++) cur[i] += up[i];
			break;
		case 3: // Average
			for (i = 0; i < (size_t)ch; i++) cur[i] += (up ? up[i] : 0) >> 1;
			for (; i < n; i++) cur[i] += (uint8_t)(((unsigned)cur[i - ch] + (up ? up[i] : 0)) >> 1);
			break;
		case 4: // Paeth; on the first row it is Sub
			if (!up) {
				for (i = ch; i < n; i++) cur[i] += cur[i - ch];
				break;
			}
			for (i = 0; i < (size_t)ch; i++) cur[i] += up[i];
			for (; i < n; i++) cur[i] += imgserve_paeth(cur[i - ch], up[i], up[i - ch]);
			break;
		default:
			return IMGSERVE_PNG_FILTER;
		}
		uint8_t *o = pix + (size_t)y * stride;
		switch (ch) {
		case 1:
			for (i = 0; i < (size_t)w; i++) { o[4*i] = o[4*i+1] = o[4*i+2] = cur[i]; o[4*i+3] = 255; }
			break;
		case 2:
			for (i = 0; i < (size_t)w; i++) {
				o[4*i] = o[4*i+1] = o[4*i+2] = cur[2*i]; o[4*i+3] = cur[2*i+1]; alpha &= cur[2*i+1];
			}
			break;
		case 3:
			for (i = 0; i < (size_t)w; i++) {
				o[4*i] = cur[3*i]; o[4*i+1] = cur[3*i+1]; o[4*i+2] = cur[3*i+2]; o[4*i+3] = 255;
			}
			break;
		case 4:
			memcpy(o, cur, n);
			for (i = 3; i < n; i += 4) alpha &= cur[i];
			break;
		}
	}
	*translucent = alpha != 255;
	return IMGSERVE_PNG_OK;
}
*/
import "C"

import (
	"fmt"
	"image"
	"io"
	"unsafe"
)

// nativePNG: 8-bit PNGs inflate with libdeflate and unfilter in C.
const nativePNG = true

func pngDecoderName() string { return "libdeflate + C unfilter (8-bit), image/png otherwise" }

func decodePNGNative(data []byte, w, h int) (*image.NRGBA, bool, error) {
	hdr, idat, err := parsePNG(data)
	if err != nil {
		return nil, false, err
	}
	if hdr.w != w || hdr.h != h {
		return nil, false, fmt.Errorf("%w: png: IHDR %dx%d, header said %dx%d", ErrCorrupt, hdr.w, hdr.h, w, h)
	}
	ch := hdr.channels()
	if ch == 0 {
		return nil, false, errNativeUnsupported
	}
	raw := make([]byte, h*(1+w*ch))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	var translucent C.int
	rc := C.imgserve_png_decode((*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(idat))), C.size_t(len(idat)),
		(*C.uint8_t)(unsafe.Pointer(&raw[0])), C.size_t(len(raw)), C.int(w), C.int(h), C.int(ch),
		(*C.uint8_t)(unsafe.Pointer(&img.Pix[0])), C.size_t(img.Stride), &translucent)
	switch rc {
	case C.IMGSERVE_PNG_OK:
		return img, translucent != 0, nil
	case C.IMGSERVE_PNG_SHORT:
		return nil, false, fmt.Errorf("%w: png: pixel data: %w", ErrCorrupt, io.ErrUnexpectedEOF)
	case C.IMGSERVE_PNG_FILTER:
		return nil, false, fmt.Errorf("%w: png: bad filter type", ErrCorrupt)
	}
	return nil, false, fmt.Errorf("%w: png: invalid deflate data", ErrCorrupt)
}
