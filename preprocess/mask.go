package preprocess

import (
	"fmt"
	"image"
	"math"
)

// MaskFromPrediction turns one w x h plane of a salient-object model's
// output (U²-Net, ISNet: output 0, channel 0) into an 8-bit mask of size
// outW x outH, as rembg's sessions do:
//
//	pred = (pred - mi) / (ma - mi)                          # float32
//	mask = Image.fromarray((pred * 255).astype("uint8"))    # truncates
//	mask = mask.resize(img.size, Image.Resampling.LANCZOS)
//
// A constant or non-finite plane, where numpy would produce NaN, gives an
// all-zero mask.
func MaskFromPrediction(pred []float32, w, h, outW, outH int) (*image.Gray, error) {
	if w <= 0 || h <= 0 || len(pred) != w*h {
		return nil, fmt.Errorf("%w: MaskFromPrediction: %d values for a %dx%d plane", ErrSize, len(pred), w, h)
	}
	if outW <= 0 || outH <= 0 {
		return nil, fmt.Errorf("%w: MaskFromPrediction: output size %dx%d", ErrSize, outW, outH)
	}
	mi, ma := pred[0], pred[0]
	for _, v := range pred {
		if v != v { // NaN propagates through numpy's min/max
			mi, ma = v, v
			break
		}
		mi, ma = min(mi, v), max(ma, v)
	}
	m := image.NewGray(image.Rect(0, 0, w, h))
	d := ma - mi
	if d > 0 && !math.IsInf(float64(d), 0) {
		for i, v := range pred {
			s := (v - mi) / d * 255 // float32 throughout, as numpy
			m.Pix[i] = byte(s)      // s is in [0, 255]: truncation as astype
		}
	}
	if outW == w && outH == h {
		return m, nil
	}
	return ResizeGray(m, outW, outH, Lanczos3), nil
}

// Sigmoid is rembg's BiRefNet sigmoid, 1 / (1 + exp(-x)), on float32 as
// numpy computes it (the exponential is rounded to float32 first). It
// returns a new slice.
func Sigmoid(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		e := float32(math.Exp(float64(-v)))
		out[i] = 1 / (1 + e)
	}
	return out
}

// PostProcessMask is rembg's post_process (bg.py), used when the request
// asks for post_process_mask:
//
//	mask = morphologyEx(mask, MORPH_OPEN, getStructuringElement(MORPH_ELLIPSE, (3, 3)))
//	mask = GaussianBlur(mask, (5, 5), sigmaX=2, sigmaY=2, borderType=BORDER_DEFAULT)
//	mask = np.where(mask < 127, 0, 255)
//
// with OpenCV's semantics: the 3x3 ellipse is a cross; erosion and
// dilation ignore pixels outside the image; the blur uses BORDER_REFLECT_101
// and OpenCV's bit-exact 8-bit fixed-point path, whose error-diffused
// kernel for sigma 2 is [39 57 64 57 39]/256. The result is a new image.
func PostProcessMask(m *image.Gray) *image.Gray {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	src := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		copy(src.Pix[y*w:][:w], m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):])
	}
	if w == 0 || h == 0 {
		return src
	}
	tmp := image.NewGray(src.Rect)
	crossMorph(tmp.Pix, src.Pix, w, h, false) // erode
	crossMorph(src.Pix, tmp.Pix, w, h, true)  // dilate
	gaussianBlur5(tmp.Pix, src.Pix, w, h)
	for i, v := range tmp.Pix {
		if v < 127 {
			tmp.Pix[i] = 0
		} else {
			tmp.Pix[i] = 255
		}
	}
	return tmp
}

// crossMorph applies a 3x3 cross min (erode) or max (dilate) filter.
// Missing neighbours at the border are replaced by the pixel itself, which
// leaves a min or max unchanged: OpenCV's default morphology border.
func crossMorph(dst, src []byte, w, h int, dilate bool) {
	for y := 0; y < h; y++ {
		row := src[y*w : y*w+w]
		up, down := row, row
		if y > 0 {
			up = src[(y-1)*w : y*w]
		}
		if y+1 < h {
			down = src[(y+1)*w : (y+2)*w]
		}
		out := dst[y*w : y*w+w]
		if dilate {
			for x := range out {
				out[x] = max(row[max(x-1, 0)], row[x], row[min(x+1, w-1)], up[x], down[x])
			}
		} else {
			for x := range out {
				out[x] = min(row[max(x-1, 0)], row[x], row[min(x+1, w-1)], up[x], down[x])
			}
		}
	}
}

var gaussK = [5]uint32{39, 57, 64, 57, 39}

// reflect101 is OpenCV's borderInterpolate for BORDER_REFLECT_101.
func reflect101(p, n int) int {
	if n == 1 {
		return 0
	}
	for p < 0 || p >= n {
		if p < 0 {
			p = -p
		} else {
			p = 2*n - 2 - p
		}
	}
	return p
}

// gaussianBlur5 is cv2.GaussianBlur(src, (5, 5), 2) on 8-bit data in
// OpenCV's fixed point: row sums exact with 8 fractional bits, column sums
// with 16, rounded half up to 8 bits.
func gaussianBlur5(dst, src []byte, w, h int) {
	rows := make([]uint16, w*h) // row sums, at most 256*255: fits 16 bits
	for y := 0; y < h; y++ {
		s := src[y*w : y*w+w]
		r := rows[y*w : y*w+w]
		for x := range r {
			if x >= 2 && x+2 < w {
				q := s[x-2 : x+3 : x+3]
				r[x] = uint16(gaussK[0]*uint32(q[0]) + gaussK[1]*uint32(q[1]) + gaussK[2]*uint32(q[2]) +
					gaussK[3]*uint32(q[3]) + gaussK[4]*uint32(q[4]))
				continue
			}
			var acc uint32
			for k := -2; k <= 2; k++ {
				acc += gaussK[k+2] * uint32(s[reflect101(x+k, w)])
			}
			r[x] = uint16(acc)
		}
	}
	for y := 0; y < h; y++ {
		var r [5][]uint16
		for k := -2; k <= 2; k++ {
			yy := reflect101(y+k, h)
			r[k+2] = rows[yy*w : yy*w+w]
		}
		out := dst[y*w : y*w+w]
		r0, r1, r2, r3, r4 := r[0][:len(out)], r[1][:len(out)], r[2][:len(out)], r[3][:len(out)], r[4][:len(out)]
		for x := range out {
			acc := gaussK[0]*uint32(r0[x]) + gaussK[1]*uint32(r1[x]) + gaussK[2]*uint32(r2[x]) +
				gaussK[3]*uint32(r3[x]) + gaussK[4]*uint32(r4[x])
			out[x] = byte((acc + 1<<15) >> 16)
		}
	}
}
