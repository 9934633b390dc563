package inpaint

import (
	"image"
	"math"

	"github.com/nfnt/resize"
)

// Resampling goes through github.com/nfnt/resize, not preprocess's resizer:
// that one is a bit-exact port of Pillow for the models validated on PIL's
// output, while IOPaint scales LaMa's inputs and results with OpenCV
// (cv2.INTER_CUBIC both ways), which neither reproduces, so PIL parity buys
// nothing here. nfnt's Bicubic is the same family (Keys cubic, a = -0.5
// where OpenCV uses -0.75) and, unlike OpenCV, low-passes when it shrinks,
// so large windows do not alias.
const filter = resize.Bicubic

// unitLUT maps an 8-bit sample to the model's 0..1 input.
var unitLUT = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// pixels are 8-bit RGBx samples, 4 per pixel, from the image's origin:
// *image.NRGBA and *image.RGBA share this layout, and the colour of an
// opaque pixel means the same in both.
type pixels struct {
	pix    []byte
	stride int
}

func pixelsOf(img image.Image) pixels {
	switch m := img.(type) {
	case *image.NRGBA:
		return pixels{m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y):], m.Stride}
	case *image.RGBA:
		return pixels{m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y):], m.Stride}
	}
	panic("inpaint: unexpected image type from the resampler") // nfnt returns *image.RGBA for both inputs
}

func (p pixels) row(y, w int) []byte { return p.pix[y*p.stride:][:4*w] }

// opaqueWindow is the window of img as nfnt should see it: an
// *image.RGBA, whose path in nfnt is twice as fast as *image.NRGBA's, and
// opaque. nfnt premultiplies an *image.NRGBA by its alpha, which would turn
// the hidden colour of transparent pixels black; LaMa sees colour only
// (IOPaint drops the alpha channel and re-attaches it afterwards). An
// opaque window's bytes mean the same premultiplied or not, so it is
// viewed as RGBA without a copy; any other is copied with its alpha set
// opaque.
func opaqueWindow(img *image.NRGBA, win image.Rectangle) *image.RGBA {
	src := img.SubImage(win).(*image.NRGBA)
	w, h := win.Dx(), win.Dy()
	p := pixelsOf(src)
	opaque := true
	for y := 0; y < h && opaque; y++ {
		row := p.row(y, w)
		for x := 3; x < len(row); x += 4 {
			if row[x] != 255 {
				opaque = false
				break
			}
		}
	}
	if opaque {
		return &image.RGBA{Pix: src.Pix, Stride: src.Stride, Rect: src.Rect}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		d := dst.Pix[y*dst.Stride:][:4*w]
		copy(d, p.row(y, w))
		for x := 3; x < len(d); x += 4 {
			d[x] = 255
		}
	}
	return dst
}

// packCrop writes crop c of img and mask into one batch row of the model's
// inputs: pix holds planar RGB in 0..1 ([3][model.Y][model.X]), hole the
// mask in {0, 1} ([model.Y][model.X]). The window is scaled to c.fit at the
// top left; the rest of the image plane mirrors it (numpy's "symmetric"
// padding, as IOPaint's pad_img_to_modulo) and the rest of the mask is 0,
// so the padding is context, never hole.
func packCrop(img *image.NRGBA, mask *image.Gray, c crop, model image.Point, pix, hole []float32) {
	var src pixels
	if c.fit == c.win.Size() {
		src = pixelsOf(img.SubImage(c.win))
	} else {
		src = pixelsOf(resize.Resize(uint(c.fit.X), uint(c.fit.Y), opaqueWindow(img, c.win), filter))
	}
	plane := model.X * model.Y
	r, g, b := pix[:plane], pix[plane:2*plane], pix[2*plane:3*plane]
	xs := make([]int, model.X)
	for x := range xs {
		xs[x] = 4 * mirror(x, c.fit.X)
	}
	for y := 0; y < model.Y; y++ {
		row := src.row(mirror(y, c.fit.Y), c.fit.X)
		o := y * model.X
		rr, gg, bb := r[o:o+model.X], g[o:o+model.X], b[o:o+model.X]
		for x, sx := range xs {
			p := row[sx : sx+3 : sx+3]
			rr[x], gg[x], bb[x] = unitLUT[p[0]], unitLUT[p[1]], unitLUT[p[2]]
		}
	}
	holeMask(mask, c.win, c.fit, hole, model.X)
}

// filterSupport is the reach of the bicubic kernel in model pixels, both
// when a window shrinks into the model (the kernel widens with the scale)
// and when the result grows back.
const filterSupport = 2

// holeMask writes the window of mask, at fit, into the top left of hole
// (rows of stride values) as 0 or 1, and zeroes the rest of hole.
//
// A model pixel is a hole when any mask pixel it covers is set: an
// interpolating filter would round thin strokes away. When the window is
// scaled, the hole then grows by the kernel's reach, so that no model
// pixel outside it was blended from a masked pixel, and no pixel pasted
// back is blended from a model pixel outside it: what the mask covers
// (a watermark) can neither leak into the model's context nor back into
// the result.
func holeMask(mask *image.Gray, win image.Rectangle, fit image.Point, hole []float32, stride int) {
	small := shrinkMask(mask, win, fit)
	if fit != win.Size() {
		dilate(small, filterSupport)
	}
	clear(hole)
	for y := 0; y < fit.Y; y++ {
		dst := hole[y*stride:][:fit.X]
		for x, v := range small.Pix[y*small.Stride:][:fit.X] {
			if v != 0 {
				dst[x] = 1
			}
		}
	}
}

// shrinkMask reduces the window of mask to fit: an output pixel is set when
// any mask pixel under its footprint is.
func shrinkMask(mask *image.Gray, win image.Rectangle, fit image.Point) *image.Gray {
	out := image.NewGray(image.Rectangle{Max: fit})
	W, H := win.Dx(), win.Dy()
	// Output column x covers source columns [lo[x], hi[x]): the pixels its
	// footprint [x*W/fit.X, (x+1)*W/fit.X) touches.
	lo, hi := make([]int, fit.X), make([]int, fit.X)
	for x := range lo {
		lo[x] = x * W / fit.X
		hi[x] = max(lo[x]+1, ((x+1)*W+fit.X-1)/fit.X)
	}
	acc := make([]byte, W)
	for y := 0; y < fit.Y; y++ {
		y0 := y * H / fit.Y
		y1 := max(y0+1, ((y+1)*H+fit.Y-1)/fit.Y)
		clear(acc)
		for sy := y0; sy < y1; sy++ {
			row := mask.Pix[mask.PixOffset(win.Min.X, win.Min.Y+sy):][:W]
			for i, v := range row {
				acc[i] |= v
			}
		}
		dst := out.Pix[y*out.Stride:][:fit.X]
		for x := range dst {
			for _, v := range acc[lo[x]:hi[x]] {
				if v != 0 {
					dst[x] = 255
					break
				}
			}
		}
	}
	return out
}

// mirror maps index i of a padded axis onto [0, n) as numpy's "symmetric"
// padding does: ... 2 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...
func mirror(i, n int) int {
	if i < n {
		return i
	}
	m := i % (2 * n)
	if m < n {
		return m
	}
	return 2*n - 1 - m
}

// unpackCrop turns the model's output ([3][model.Y][model.X], white at
// scale) back into an image of the crop's window: the fitted area is cut out
// of the padding, rounded to 8 bits and scaled back up to the window.
func unpackCrop(out []float32, scale float32, c crop, model image.Point) pixels {
	res := image.NewRGBA(image.Rectangle{Max: c.fit})
	plane := model.X * model.Y
	k := 255 / scale
	for y := 0; y < c.fit.Y; y++ {
		o := y * model.X
		r, g, b := out[o:o+c.fit.X], out[plane+o:plane+o+c.fit.X], out[2*plane+o:2*plane+o+c.fit.X]
		d := res.Pix[y*res.Stride:][:4*c.fit.X]
		for x := range r {
			p := d[4*x : 4*x+4 : 4*x+4]
			p[0], p[1], p[2], p[3] = to8(r[x]*k), to8(g[x]*k), to8(b[x]*k), 255
		}
	}
	if c.fit == c.win.Size() {
		return pixelsOf(res)
	}
	return pixelsOf(resize.Resize(uint(c.win.Dx()), uint(c.win.Dy()), res, filter))
}

// to8 rounds to the nearest level, where IOPaint truncates (astype(uint8)):
// a model that returns 254.99998 for white means 255.
func to8(v float32) byte {
	switch {
	case v >= 255:
		return 255
	case v > 0: // false for NaN too
		return byte(math.Round(float64(v)))
	}
	return 0
}

// paste copies the colour of the given regions' pixels from res (the
// crop's window) into img. Alpha stays the input's, as IOPaint re-attaches
// the original alpha channel.
func paste(img *image.NRGBA, res pixels, win image.Rectangle, regions []region, which []int) {
	for _, i := range which {
		for _, s := range regions[i].spans {
			y := int(s.y)
			d := img.Pix[img.PixOffset(int(s.x0), y):][:4*int(s.x1-s.x0)]
			src := res.pix[(y-win.Min.Y)*res.stride+4*(int(s.x0)-win.Min.X):][:len(d)]
			for x := 0; x < len(d); x += 4 {
				d[x], d[x+1], d[x+2] = src[x], src[x+1], src[x+2]
			}
		}
	}
}
