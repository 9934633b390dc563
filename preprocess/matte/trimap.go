package matte

import (
	"image"
)

// Trimap values, as rembg writes them before dividing by 255.
const (
	Background = 0
	Unknown    = 128
	Foreground = 255
)

// Trimap is rembg's trimap for alpha_matting_cutout:
//
//	is_foreground = binary_erosion(mask > fg, structure)
//	is_background = binary_erosion(mask < bg, structure, border_value=1)
//	trimap = 128; trimap[is_foreground] = 255; trimap[is_background] = 0
//
// with structure = ones((erode, erode)), or, for erode 0, scipy's default
// 3x3 cross. scipy centres an even-sized structure one past its middle: a
// pixel is kept when every pixel at offsets -erode/2 ... erode-1-erode/2
// (each axis) is set. Outside the image counts as unset for the foreground
// and as set for the background, so the border belongs to neither unless
// it is background. Where both erosions hold (only possible when fg < bg),
// background wins, as in rembg. The result is a new image.
func Trimap(mask *image.Gray, fg, bg, erode int) *image.Gray {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	isFG := make([]bool, w*h)
	isBG := make([]bool, w*h)
	for y := 0; y < h; y++ {
		row := mask.Pix[mask.PixOffset(mask.Rect.Min.X, mask.Rect.Min.Y+y):][:w]
		for x, v := range row {
			isFG[y*w+x] = int(v) > fg
			isBG[y*w+x] = int(v) < bg
		}
	}
	isFG = erodeBinary(isFG, w, h, erode, false)
	isBG = erodeBinary(isBG, w, h, erode, true)
	t := image.NewGray(image.Rect(0, 0, w, h))
	for i := range t.Pix {
		switch {
		case isBG[i]:
			t.Pix[i] = Background
		case isFG[i]:
			t.Pix[i] = Foreground
		default:
			t.Pix[i] = Unknown
		}
	}
	return t
}

// erodeBinary is scipy.ndimage.binary_erosion with an n x n square of ones
// (n >= 1) or, for n == 0, the 3x3 cross, and the given border value.
func erodeBinary(in []bool, w, h, n int, border bool) []bool {
	if n == 0 {
		out := make([]bool, len(in))
		at := func(x, y int) bool {
			if x < 0 || y < 0 || x >= w || y >= h {
				return border
			}
			return in[y*w+x]
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out[y*w+x] = in[y*w+x] && at(x-1, y) && at(x+1, y) && at(x, y-1) && at(x, y+1)
			}
		}
		return out
	}
	// A square is separable: erode the rows, then the columns of the result.
	lo, hi := -(n / 2), n-1-n/2
	tmp := make([]bool, len(in))
	line := make([]bool, max(w, h))
	res := make([]bool, max(w, h))
	for y := 0; y < h; y++ {
		erode1D(res[:w], in[y*w:y*w+w], lo, hi, border)
		copy(tmp[y*w:], res[:w])
	}
	out := make([]bool, len(in))
	for x := 0; x < w; x++ {
		for y := 0; y < h; y++ {
			line[y] = tmp[y*w+x]
		}
		erode1D(res[:h], line[:h], lo, hi, border)
		for y := 0; y < h; y++ {
			out[y*w+x] = res[y]
		}
	}
	return out
}

// erode1D sets dst[i] when src[i+lo..i+hi] are all set, counting positions
// outside src as border. It counts unset samples with a prefix sum, so its
// cost does not grow with the structure size.
func erode1D(dst, src []bool, lo, hi int, border bool) {
	n := len(src)
	zeros := make([]int32, n+1)
	for i, v := range src {
		zeros[i+1] = zeros[i]
		if !v {
			zeros[i+1]++
		}
	}
	for i := range dst {
		a, b := i+lo, i+hi
		if !border && (a < 0 || b >= n) {
			dst[i] = false
			continue
		}
		a, b = max(a, 0), min(b, n-1)
		dst[i] = a > b || zeros[b+1]-zeros[a] == 0
	}
}
