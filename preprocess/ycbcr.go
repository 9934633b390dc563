package preprocess

import "image"

// JPEG colour conversion as libjpeg-turbo performs it, which is what PIL
// (and therefore rembg) sees. Go's image/jpeg leaves chroma subsampled and
// its YCbCr.At replicates each chroma sample (box upsampling); libjpeg's
// default "fancy" upsampling interpolates them (a triangle filter). On
// 4:2:0 photos the difference reaches 30+ levels on colour edges; with the
// code below the only remaining difference is the IDCT (max 3 levels, <3%
// of samples on the rembg test images).

// libjpeg's jdcolor.c tables: SCALEBITS=16 fixed point, ONE_HALF rounding;
// rangeLimit clamps y+offset (offset by 256, masked to 10 bits so the
// compiler drops the bounds check) like libjpeg's range_limit table.
var (
	jpegCrR, jpegCbB, jpegCrG, jpegCbG [256]int32
	rangeLimit                         [1024]byte
)

func init() {
	const oneHalf = 1 << 15
	fix := func(x float64) int32 { return int32(x*(1<<16) + 0.5) }
	for i := 0; i < 256; i++ {
		x := int32(i - 128)
		jpegCrR[i] = (fix(1.40200)*x + oneHalf) >> 16
		jpegCbB[i] = (fix(1.77200)*x + oneHalf) >> 16
		jpegCrG[i] = -fix(0.71414) * x
		jpegCbG[i] = -fix(0.34414)*x + oneHalf
	}
	for i := range rangeLimit {
		rangeLimit[i] = clamp8(int32(i - 256))
	}
}

func clamp8(v int32) byte {
	if uint32(v) <= 255 {
		return byte(v)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// jpegYCbCrToNRGBA converts with libjpeg-turbo's h2v1, h2v2 and h1v2 fancy
// upsampling (jdsample.c), and box replication for the other ratios, as
// libjpeg does.
func jpegYCbCrToNRGBA(m *image.YCbCr) *image.NRGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	if m.Rect.Min != (image.Point{}) {
		// Decoders always return zero-based images; anything else takes the
		// slow but correct path.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := m.YCbCrAt(m.Rect.Min.X+x, m.Rect.Min.Y+y)
				o := y*dst.Stride + 4*x
				dst.Pix[o], dst.Pix[o+1], dst.Pix[o+2], dst.Pix[o+3] = jpegRGB(c.Y, c.Cb, c.Cr)
			}
		}
		return dst
	}
	cw, ch := chromaSize(m.SubsampleRatio, w, h)
	hx, vy := 1, 1 // luma pixels per chroma sample
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		hx = 2
	case image.YCbCrSubsampleRatio420:
		hx, vy = 2, 2
	case image.YCbCrSubsampleRatio440:
		vy = 2
	case image.YCbCrSubsampleRatio411:
		hx = 4
	case image.YCbCrSubsampleRatio410:
		hx, vy = 4, 2
	}
	fancyH := hx == 2 && cw > 2 // libjpeg: downsampled_width > 2
	fancyV := vy == 2 && (hx == 1 || fancyH)
	forBands(h, 5*w*h, func(lo, hi int) {
		cb := make([]byte, hx*cw)
		cr := make([]byte, hx*cw)
		colsum := make([]int32, cw)
		for y := lo; y < hi; y++ {
			var cbRow, crRow []byte
			switch {
			case hx == 1 && vy == 1:
				cbRow, crRow = m.Cb[y*m.CStride:][:w], m.Cr[y*m.CStride:][:w]
			case fancyV:
				cbRow = upsampleV(m.Cb, m.CStride, cw, ch, y, fancyH, colsum, cb)
				crRow = upsampleV(m.Cr, m.CStride, cw, ch, y, fancyH, colsum, cr)
			case fancyH: // h2v1
				cbRow = upsampleH2V1(m.Cb[y*m.CStride:][:cw], cb)
				crRow = upsampleH2V1(m.Cr[y*m.CStride:][:cw], cr)
			default: // box replication
				cy := y / vy
				cbRow = replicate(m.Cb[cy*m.CStride:][:cw], hx, cb[:0])
				crRow = replicate(m.Cr[cy*m.CStride:][:cw], hx, cr[:0])
			}
			ycbcrRow(dst.Pix[y*dst.Stride:][:4*w], m.Y[y*m.YStride:][:w], cbRow[:w], crRow[:w])
		}
	})
	return dst
}

// ycbcrRow is libjpeg's ycc_rgb_convert for one row.
func ycbcrRow(d, yRow, cbRow, crRow []byte) {
	cbRow, crRow = cbRow[:len(yRow)], crRow[:len(yRow)]
	for x, v := range yRow {
		yy := int32(v) + 256
		cb, cr := cbRow[x], crRow[x]
		p := d[4*x : 4*x+4 : 4*x+4]
		p[0] = rangeLimit[(yy+jpegCrR[cr])&1023]
		p[1] = rangeLimit[(yy+(jpegCbG[cb]+jpegCrG[cr])>>16)&1023]
		p[2] = rangeLimit[(yy+jpegCbB[cb])&1023]
		p[3] = 0xFF
	}
}

func jpegRGB(y, cb, cr byte) (r, g, b, a byte) {
	yy := int32(y)
	return clamp8(yy + jpegCrR[cr]),
		clamp8(yy + (jpegCbG[cb]+jpegCrG[cr])>>16),
		clamp8(yy + jpegCbB[cb]),
		0xFF
}

func chromaSize(r image.YCbCrSubsampleRatio, w, h int) (int, int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// upsampleV produces output row y of a vertically 2x subsampled plane:
// libjpeg's h1v2_fancy_upsample (h2 false) or h2v2_fancy_upsample (h2
// true). The nearer chroma row weighs 3/4, the other 1/4; above the first
// and below the last row the edge row repeats (jdmainct.c context rows).
func upsampleV(p []byte, stride, cw, ch, y int, h2 bool, colsum []int32, out []byte) []byte {
	near := y / 2
	far := near + 1
	if y&1 == 0 {
		far = near - 1
	}
	far = max(0, min(far, ch-1))
	r0, r1 := p[near*stride:][:cw], p[far*stride:][:cw]
	if !h2 {
		bias := int32(2)
		if y&1 == 0 {
			bias = 1
		}
		out = out[:cw]
		for i := range out {
			out[i] = byte((3*int32(r0[i]) + int32(r1[i]) + bias) >> 2)
		}
		return out
	}
	colsum = colsum[:cw]
	for i := range colsum {
		colsum[i] = 3*int32(r0[i]) + int32(r1[i])
	}
	// Interior columns without edge tests; the first and last use their
	// own sample as the missing neighbour, as libjpeg's special cases do.
	out = out[:2*cw]
	out[0] = byte((4*colsum[0] + 8) >> 4)
	out[2*cw-1] = byte((4*colsum[cw-1] + 7) >> 4)
	for c := 1; c < cw; c++ {
		last, this := colsum[c-1], colsum[c]
		o := out[2*c-1 : 2*c+1 : 2*c+1]
		o[0] = byte((3*last + this + 7) >> 4) // odd column of sample c-1
		o[1] = byte((3*this + last + 8) >> 4) // even column of sample c
	}
	return out
}

// upsampleH2V1 is libjpeg's h2v1_fancy_upsample.
func upsampleH2V1(in, out []byte) []byte {
	out = out[:2*len(in)]
	last := int32(in[0])
	for c, v := range in {
		this := int32(v)
		next := this
		if c+1 < len(in) {
			next = int32(in[c+1])
		}
		out[2*c] = byte((3*this + last + 1) >> 2)
		out[2*c+1] = byte((3*this + next + 2) >> 2)
		last = this
	}
	return out
}

func replicate(in []byte, n int, out []byte) []byte {
	for _, v := range in {
		for k := 0; k < n; k++ {
			out = append(out, v)
		}
	}
	return out
}
