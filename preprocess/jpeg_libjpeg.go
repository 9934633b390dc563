//go:build libjpeg

package preprocess

/*
#cgo pkg-config: libjpeg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

#define IMGSERVE_STR2(x) #x
#define IMGSERVE_STR(x) IMGSERVE_STR2(x)
static const char *imgserve_jpeg_version(void) { return IMGSERVE_STR(LIBJPEG_TURBO_VERSION); }

typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	int truncated;
} imgserve_jpeg_err;

static void imgserve_jpeg_error_exit(j_common_ptr c) {
	longjmp(((imgserve_jpeg_err *)c->err)->jb, 1);
}

// Warnings are counted, never printed. Running out of data is one: libjpeg
// then pads the image with grey, where PIL and Go refuse the file.
static void imgserve_jpeg_emit(j_common_ptr c, int level) {
	if (level < 0) {
		if (c->err->msg_code == JWRN_JPEG_EOF) ((imgserve_jpeg_err *)c->err)->truncated = 1;
		c->err->num_warnings++;
	}
}

enum { IMGSERVE_JPEG_OK, IMGSERVE_JPEG_ERROR, IMGSERVE_JPEG_TRUNCATED, IMGSERVE_JPEG_OTHER_SPACE, IMGSERVE_JPEG_SIZE };

// imgserve_jpeg_decode decodes into pix (RGBA, w*h*4 bytes at the given
// stride) with PIL's settings: ISLOW IDCT and fancy upsampling, which are
// libjpeg's defaults, set here so that no library default can change them.
// denom > 1 decodes at 1/denom scale in the IDCT. CMYK and YCCK files are
// left to the caller (IMGSERVE_JPEG_OTHER_SPACE).
static int imgserve_jpeg_decode(const unsigned char *data, unsigned long size, int denom,
		unsigned char *pix, int stride, int w, int h, char *msg) {
	struct jpeg_decompress_struct cinfo;
	imgserve_jpeg_err err;
	JSAMPROW rows[16];
	int rc = IMGSERVE_JPEG_OK;
	volatile int created = 0;
	memset(&cinfo, 0, sizeof cinfo);
	cinfo.err = jpeg_std_error(&err.pub);
	err.pub.error_exit = imgserve_jpeg_error_exit;
	err.pub.emit_message = imgserve_jpeg_emit;
	err.truncated = 0;
	if (setjmp(err.jb)) {
		(*cinfo.err->format_message)((j_common_ptr)&cinfo, msg);
		if (created) jpeg_destroy_decompress(&cinfo);
		return IMGSERVE_JPEG_ERROR;
	}
	jpeg_create_decompress(&cinfo);
	created = 1;
	jpeg_mem_src(&cinfo, data, size);
	jpeg_read_header(&cinfo, TRUE);
	switch (cinfo.jpeg_color_space) {
	case JCS_GRAYSCALE: case JCS_RGB: case JCS_YCbCr:
		break;
	default:
		jpeg_destroy_decompress(&cinfo);
		return IMGSERVE_JPEG_OTHER_SPACE;
	}
	cinfo.out_color_space = JCS_EXT_RGBA;
	cinfo.dct_method = JDCT_ISLOW;
	cinfo.do_fancy_upsampling = TRUE;
	cinfo.do_block_smoothing = TRUE;
	cinfo.scale_num = 1;
	cinfo.scale_denom = denom;
	jpeg_calc_output_dimensions(&cinfo);
	if ((int)cinfo.output_width != w || (int)cinfo.output_height != h) {
		snprintf(msg, JMSG_LENGTH_MAX, "decoder reports %ux%u, expected %dx%d", cinfo.output_width, cinfo.output_height, w, h);
		jpeg_destroy_decompress(&cinfo);
		return IMGSERVE_JPEG_SIZE;
	}
	jpeg_start_decompress(&cinfo);
	while (cinfo.output_scanline < cinfo.output_height && !err.truncated) {
		int n = 0;
		while (n < 16 && cinfo.output_scanline + n < cinfo.output_height) {
			rows[n] = pix + (size_t)(cinfo.output_scanline + n) * stride;
			n++;
		}
		jpeg_read_scanlines(&cinfo, rows, n);
	}
	if (err.truncated) {
		rc = IMGSERVE_JPEG_TRUNCATED;
		jpeg_abort_decompress(&cinfo);
	} else {
		jpeg_finish_decompress(&cinfo);
		if (err.truncated) rc = IMGSERVE_JPEG_TRUNCATED;
	}
	jpeg_destroy_decompress(&cinfo);
	return rc;
}
*/
import "C"

import (
	"fmt"
	"image"
	"io"
	"unsafe"
)

// nativeJPEG: JPEG decodes with libjpeg-turbo, the library PIL decodes
// with, so pixels equal rembg's exactly.
const nativeJPEG = true

// JPEGDecoder names the JPEG decoder this binary was built with.
func JPEGDecoder() string {
	return "libjpeg-turbo " + C.GoString(C.imgserve_jpeg_version()) + " (ISLOW IDCT, fancy upsampling, as PIL)"
}

// decodeJPEGNative decodes into a new w x h NRGBA, or reports
// errNativeUnsupported for the colour spaces left to image/jpeg. scale is
// 1, 2, 4 or 8 (libjpeg's DCT scaling); w and h are the scaled size.
func decodeJPEGNative(data []byte, scale, w, h int) (*image.NRGBA, error) {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	var msg [C.JMSG_LENGTH_MAX]C.char
	rc := C.imgserve_jpeg_decode((*C.uchar)(unsafe.Pointer(unsafe.SliceData(data))), C.ulong(len(data)), C.int(scale),
		(*C.uchar)(unsafe.Pointer(&img.Pix[0])), C.int(img.Stride), C.int(w), C.int(h), &msg[0])
	switch rc {
	case C.IMGSERVE_JPEG_OK:
		return img, nil
	case C.IMGSERVE_JPEG_OTHER_SPACE:
		return nil, errNativeUnsupported
	case C.IMGSERVE_JPEG_TRUNCATED:
		return nil, fmt.Errorf("%w: jpeg: %w", ErrCorrupt, io.ErrUnexpectedEOF)
	}
	return nil, fmt.Errorf("%w: jpeg: %s", ErrCorrupt, C.GoString(&msg[0]))
}
