package preprocess

import (
	"fmt"
	"image"
	"math"
)

// OpenCV's warpAffine with INTER_LINEAR and BORDER_CONSTANT (value 0),
// which rembg's SAM session uses to scale the image into the encoder's
// 684x1024 frame and the decoder's masks back (cv2 4.x, imgwarp.cpp):
// the matrix is inverted in float64, each destination pixel's source
// position is computed in fixed point with 10 fractional bits (AB_BITS),
// rounded to 1/32 of a pixel (INTER_BITS), and the four neighbours are
// blended with weights from a 32x32 table, 15-bit integers for 8-bit
// images and float32 for float images. Taps outside the source read 0.

const (
	interBits    = 5
	interTabSize = 1 << interBits
	abBits       = 10
	abScale      = 1 << abBits
	remapBits    = 15
)

// affineMap is the per-pixel source position of a warp: the integer
// position and the 1/32 fractions, as warpAffine hands them to remap.
type affineMap struct {
	m      [6]float64 // inverse matrix, destination -> source
	adelta []int32
	bdelta []int32
}

// newAffineMap inverts the forward 2x3 matrix m as warpAffine does when
// WARP_INVERSE_MAP is not set.
func newAffineMap(m [6]float64, dstW int) *affineMap {
	d := m[0]*m[4] - m[1]*m[3]
	if d != 0 {
		d = 1 / d
	}
	a11, a22 := m[4]*d, m[0]*d
	m[0] = a11
	m[1] *= -d
	m[3] *= -d
	m[4] = a22
	b1 := -m[0]*m[2] - m[1]*m[5]
	b2 := -m[3]*m[2] - m[4]*m[5]
	m[2], m[5] = b1, b2
	am := &affineMap{m: m, adelta: make([]int32, dstW), bdelta: make([]int32, dstW)}
	for x := range dstW {
		am.adelta[x] = cvRound(m[0] * float64(x) * abScale)
		am.bdelta[x] = cvRound(m[3] * float64(x) * abScale)
	}
	return am
}

// cvRound is saturate_cast<int>(double): round half to even, saturated.
func cvRound(v float64) int32 {
	r := math.RoundToEven(v)
	switch {
	case r >= math.MaxInt32:
		return math.MaxInt32
	case r <= math.MinInt32 || math.IsNaN(r):
		return math.MinInt32
	}
	return int32(r)
}

// at returns the source pixel (sx, sy) and the table index of the
// fractions for destination pixel (x, y).
func (am *affineMap) at(x, y int) (sx, sy, frac int) {
	const roundDelta = abScale / interTabSize / 2
	x0 := cvRound((am.m[1]*float64(y)+am.m[2])*abScale) + roundDelta
	y0 := cvRound((am.m[4]*float64(y)+am.m[5])*abScale) + roundDelta
	xx := (x0 + am.adelta[x]) >> (abBits - interBits)
	yy := (y0 + am.bdelta[x]) >> (abBits - interBits)
	return saturateShort(xx >> interBits), saturateShort(yy >> interBits), int((yy&(interTabSize-1))*interTabSize + xx&(interTabSize-1))
}

func saturateShort(v int32) int {
	return int(max(math.MinInt16, min(math.MaxInt16, v)))
}

// bilinearTab holds, per fraction pair, the weights of the four taps:
// (1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx with f = i/32, as float32 (exact:
// multiples of 1/1024) and as 15-bit integers (which sum to exactly 32768).
var bilinearTab = func() (t [interTabSize * interTabSize][4]float32) {
	for i := range interTabSize {
		fy := float32(i) / interTabSize
		for j := range interTabSize {
			fx := float32(j) / interTabSize
			t[i*interTabSize+j] = [4]float32{(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx}
		}
	}
	return t
}()

// WarpAffineRGB is cv2.warpAffine(rgb, m, (dstW, dstH), flags=INTER_LINEAR)
// on the RGB channels of src, with a constant black border. It returns
// packed RGB, dstW*dstH*3 bytes. m maps source to destination coordinates.
func WarpAffineRGB(src *image.NRGBA, m [6]float64, dstW, dstH int) ([]byte, error) {
	if dstW <= 0 || dstH <= 0 || src.Rect.Empty() {
		return nil, fmt.Errorf("%w: WarpAffineRGB: %v to %dx%d", ErrSize, src.Rect.Size(), dstW, dstH)
	}
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	am := newAffineMap(m, dstW)
	dst := make([]byte, 3*dstW*dstH)
	forBands(dstH, 3*dstW*dstH, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			for x := range dstW {
				sx, sy, frac := am.at(x, y)
				w := bilinearTab[frac]
				wi := [4]int32{int32(w[0] * (1 << remapBits)), int32(w[1] * (1 << remapBits)), int32(w[2] * (1 << remapBits)), int32(w[3] * (1 << remapBits))}
				var taps [4][]byte
				for k := range 4 {
					tx, ty := sx+k%2, sy+k/2
					if tx >= 0 && ty >= 0 && tx < sw && ty < sh {
						taps[k] = src.Pix[src.PixOffset(src.Rect.Min.X+tx, src.Rect.Min.Y+ty):]
					}
				}
				d := dst[3*(y*dstW+x):][:3]
				for c := range 3 {
					var sum int32
					for k, t := range taps {
						if t != nil {
							sum += int32(t[c]) * wi[k]
						}
					}
					d[c] = byte(min(255, max(0, (sum+1<<(remapBits-1))>>remapBits)))
				}
			}
		}
	})
	return dst, nil
}

// WarpAffineFloat is cv2.warpAffine on a single-channel float32 image of
// sw x sh values, with INTER_LINEAR and a constant 0 border.
func WarpAffineFloat(src []float32, sw, sh int, m [6]float64, dstW, dstH int) ([]float32, error) {
	if dstW <= 0 || dstH <= 0 || sw <= 0 || sh <= 0 || len(src) != sw*sh {
		return nil, fmt.Errorf("%w: WarpAffineFloat: %d values for %dx%d to %dx%d", ErrSize, len(src), sw, sh, dstW, dstH)
	}
	am := newAffineMap(m, dstW)
	dst := make([]float32, dstW*dstH)
	forBands(dstH, 4*dstW*dstH, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			for x := range dstW {
				sx, sy, frac := am.at(x, y)
				w := bilinearTab[frac]
				var v [4]float32
				for k := range 4 {
					tx, ty := sx+k%2, sy+k/2
					if tx >= 0 && ty >= 0 && tx < sw && ty < sh {
						v[k] = src[ty*sw+tx]
					}
				}
				dst[y*dstW+x] = float32(float32(float32(v[0]*w[0])+float32(v[1]*w[1]))+float32(v[2]*w[2])) + float32(v[3]*w[3])
			}
		}
	})
	return dst, nil
}
