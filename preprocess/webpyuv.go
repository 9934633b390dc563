package preprocess

import "image"

// WebP colour conversion as libwebp performs it (and so PIL). VP8 stores
// limited-range BT.601 YUV, but x/image/webp returns a plain *image.YCbCr
// whose color model is full-range JFIF, so converting it with Go's color
// package washes out contrast (black comes out as 16,16,16). libwebp also
// upsamples chroma with its own "fancy" 9-3-3-1 filter (dsp/upsampling.c),
// reproduced here along with the fixed-point converters of dsp/yuv.h.

// webpToNRGBA converts a 4:2:0 VP8 frame, with an optional alpha plane.
func webpToNRGBA(m *image.YCbCr, a []byte, aStride int) *image.NRGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	if m.SubsampleRatio != image.YCbCrSubsampleRatio420 || m.Rect.Min != (image.Point{}) {
		img, _ := genericToNRGBA(m) // VP8 is always 4:2:0; defensive only
		return img
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	cw := (w + 1) / 2
	yRow := func(y int) []byte { return m.Y[y*m.YStride:][:w] }
	uRow := func(k int) []byte { return m.Cb[k*m.CStride:][:cw] }
	vRow := func(k int) []byte { return m.Cr[k*m.CStride:][:cw] }
	dRow := func(y int) []byte { return dst.Pix[y*dst.Stride:][:4*w] }
	// Row pairing of EmitFancyRGB (dec/io_dec.c): row 0 alone, then rows
	// (2k-1, 2k) between chroma rows k-1 and k, then the last row alone
	// when the height is even.
	webpUpsamplePair(yRow(0), nil, uRow(0), vRow(0), uRow(0), vRow(0), dRow(0), nil)
	y := 0
	for ; y+2 < h; y += 2 {
		k := y/2 + 1
		webpUpsamplePair(yRow(y+1), yRow(y+2), uRow(k-1), vRow(k-1), uRow(k), vRow(k), dRow(y+1), dRow(y+2))
	}
	if h&1 == 0 && h > 1 {
		k := (h - 1) / 2
		webpUpsamplePair(yRow(h-1), nil, uRow(k), vRow(k), uRow(k), vRow(k), dRow(h-1), nil)
	}
	if a != nil {
		for y := 0; y < h; y++ {
			d := dRow(y)
			for x, v := range a[y*aStride:][:w] {
				d[4*x+3] = v
			}
		}
	}
	return dst
}

// webpUpsamplePair is UPSAMPLE_FUNC from libwebp's dsp/upsampling.c for one
// pair of output rows (bottom may be nil), with u and v kept in separate
// ints instead of packed into one uint32; the arithmetic is the same.
func webpUpsamplePair(topY, botY, topU, topV, curU, curV, topDst, botDst []byte) {
	n := len(topY)
	tlU, tlV := int32(topU[0]), int32(topV[0])
	lU, lV := int32(curU[0]), int32(curV[0])
	webpRGBA(topY[0], (3*tlU+lU+2)>>2, (3*tlV+lV+2)>>2, topDst[0:4])
	if botY != nil {
		webpRGBA(botY[0], (3*lU+tlU+2)>>2, (3*lV+tlV+2)>>2, botDst[0:4])
	}
	for x := 1; x <= (n-1)>>1; x++ {
		tU, tV := int32(topU[x]), int32(topV[x])
		uU, uV := int32(curU[x]), int32(curV[x])
		avgU := tlU + tU + lU + uU + 8
		avgV := tlV + tV + lV + uV + 8
		d12U, d12V := (avgU+2*(tU+lU))>>3, (avgV+2*(tV+lV))>>3
		d03U, d03V := (avgU+2*(tlU+uU))>>3, (avgV+2*(tlV+uV))>>3
		webpRGBA(topY[2*x-1], (d12U+tlU)>>1, (d12V+tlV)>>1, topDst[4*(2*x-1):][:4])
		webpRGBA(topY[2*x], (d03U+tU)>>1, (d03V+tV)>>1, topDst[4*2*x:][:4])
		if botY != nil {
			webpRGBA(botY[2*x-1], (d03U+lU)>>1, (d03V+lV)>>1, botDst[4*(2*x-1):][:4])
			webpRGBA(botY[2*x], (d12U+uU)>>1, (d12V+uV)>>1, botDst[4*2*x:][:4])
		}
		tlU, tlV, lU, lV = tU, tV, uU, uV
	}
	if n&1 == 0 {
		webpRGBA(topY[n-1], (3*tlU+lU+2)>>2, (3*tlV+lV+2)>>2, topDst[4*(n-1):][:4])
		if botY != nil {
			webpRGBA(botY[n-1], (3*lU+tlU+2)>>2, (3*lV+tlV+2)>>2, botDst[4*(n-1):][:4])
		}
	}
}

// webpRGBA is VP8YuvToRgba (dsp/yuv.h): 14-bit multipliers, YUV_FIX2 = 6.
func webpRGBA(y byte, u, v int32, d []byte) {
	yy := (int32(y) * 19077) >> 8
	d[0] = webpClip(yy + (v*26149)>>8 - 14234)
	d[1] = webpClip(yy - (u*6419)>>8 - (v*13320)>>8 + 8708)
	d[2] = webpClip(yy + (u*33050)>>8 - 17685)
	d[3] = 0xFF
}

func webpClip(v int32) byte {
	if v&^(256<<6-1) == 0 {
		return byte(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}
