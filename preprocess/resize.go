package preprocess

import (
	"fmt"
	"image"
	"math"
	"sync"
)

// The resampler is a port of Pillow's Resample.c (ImagingResample for 8-bit
// images), not a call into github.com/nfnt/resize, because the models here
// were trained and are validated on PIL's output: rembg resizes with
// PIL LANCZOS, the Hugging Face CLIP processor with PIL BICUBIC. nfnt
// truncates its weights to 8 bits, renormalises at run time and repeats edge
// pixels where PIL drops out-of-range taps, so it differs from PIL by several
// levels per pixel; this port is bit-exact with Pillow (see resize_test.go,
// which also benchmarks nfnt), and faster because it works on the packed
// bytes with no interface calls and no goroutine fan-out.
//
// Pillow's algorithm: separable, horizontal pass first into an 8-bit
// intermediate, then vertical. Each output sample's weights come from the
// kernel stretched by the downscale factor (antialiasing), are normalised to
// sum to one, and are rounded to 22-bit fixed point; sums are rounded and
// clipped back to 8 bits.

// Filter selects the resampling kernel, with PIL's definitions.
type Filter int

// The filters rembg, CLIP, ViT and ISNet pipelines use.
const (
	Lanczos3 Filter = iota // PIL Image.LANCZOS: sinc windowed by sinc, a=3
	Bicubic                // PIL Image.BICUBIC: Keys cubic, a=-0.5
	Bilinear               // PIL Image.BILINEAR: triangle
)

func (f Filter) String() string {
	switch f {
	case Lanczos3:
		return "lanczos3"
	case Bicubic:
		return "bicubic"
	case Bilinear:
		return "bilinear"
	}
	return fmt.Sprintf("Filter(%d)", int(f))
}

const precisionBits = 32 - 8 - 2 // Pillow: 8 bits of result, 2 of headroom

// Explicit float64() conversions below stop the compiler from fusing
// multiply-adds (allowed by the Go spec, done on GOAMD64=v3), which would
// round differently from Pillow's C.
func (f Filter) kernel() (support float64, fn func(float64) float64) {
	switch f {
	case Bicubic:
		return 2, func(x float64) float64 {
			const a = -0.5
			x = math.Abs(x)
			if x < 1 {
				return float64(float64(float64((a+2)*x)-(a+3))*x*x) + 1
			}
			if x < 2 {
				return (float64(float64(float64((x-5)*x)+8)*x) - 4) * a
			}
			return 0
		}
	case Bilinear:
		return 1, func(x float64) float64 {
			x = math.Abs(x)
			if x < 1 {
				return 1 - x
			}
			return 0
		}
	}
	return 3, func(x float64) float64 {
		if -3 <= x && x < 3 {
			return sinc(x) * sinc(x/3)
		}
		return 0
	}
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return math.Sin(x) / x
}

// coeffs are one axis's weights: output sample i reads n=bounds[2i+1]
// input samples from bounds[2i] with weights k[i*ksize:][:n].
type coeffs struct {
	ksize  int
	bounds []int
	k      []int32
}

// precomputeCoeffs is Pillow's precompute_coeffs + normalize_coeffs_8bpc.
func precomputeCoeffs(inSize, outSize int, f Filter) coeffs {
	support, fn := f.kernel()
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support *= filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := coeffs{ksize: ksize, bounds: make([]int, 2*outSize), k: make([]int32, outSize*ksize)}
	w := make([]float64, ksize)
	ss := 1 / filterscale
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w[x] = fn((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		k := c.k[xx*ksize:][:ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		c.bounds[2*xx], c.bounds[2*xx+1] = xmin, xmax
	}
	return c
}

// rows returns the first input row and the row count the pass reads.
func (c *coeffs) rows() (first, n int) {
	last := len(c.bounds) - 2
	return c.bounds[0], c.bounds[last] + c.bounds[last+1] - c.bounds[0]
}

func clipFixed(v int32) byte {
	v >>= precisionBits
	if uint32(v) <= 255 {
		return byte(v)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// scratch buffers for the intermediate image, reused across calls.
var bytePool = sync.Pool{New: func() any { return new([]byte) }}

func getBytes(n int) *[]byte {
	p := bytePool.Get().(*[]byte)
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	*p = (*p)[:n]
	return p
}

// ResizeRGB resizes the colour channels of src to w x h, ignoring alpha: the
// result equals PIL's src.convert("RGB").resize((w, h), f), with alpha 255.
func ResizeRGB(src *image.NRGBA, w, h int, f Filter) *image.NRGBA {
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	if w <= 0 || h <= 0 || src.Rect.Empty() {
		return dst
	}
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	hc := precomputeCoeffs(sw, w, f)
	vc := precomputeCoeffs(sh, h, f)
	first, n := vc.rows()
	tmp := getBytes(3 * w * n)
	defer bytePool.Put(tmp)
	horizontalRGB(*tmp, src, first, n, &hc)
	acc := make([]int32, 3*w)
	for yy := 0; yy < h; yy++ {
		verticalRow(acc, *tmp, 3*w, &vc, yy, first)
		d := dst.Pix[yy*dst.Stride:][:4*w]
		for x := 0; x < w; x++ {
			a := acc[3*x : 3*x+3]
			d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = clipFixed(a[0]), clipFixed(a[1]), clipFixed(a[2]), 0xFF
		}
	}
	return dst
}

// ResizeGray resizes an 8-bit single-channel image as PIL does for mode "L".
func ResizeGray(src *image.Gray, w, h int, f Filter) *image.Gray {
	dst := image.NewGray(image.Rect(0, 0, w, h))
	if w <= 0 || h <= 0 || src.Rect.Empty() {
		return dst
	}
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	hc := precomputeCoeffs(sw, w, f)
	vc := precomputeCoeffs(sh, h, f)
	first, n := vc.rows()
	tmp := getBytes(w * n)
	defer bytePool.Put(tmp)
	horizontalGray(*tmp, src, first, n, &hc)
	acc := make([]int32, w)
	for yy := 0; yy < h; yy++ {
		verticalRow(acc, *tmp, w, &vc, yy, first)
		d := dst.Pix[yy*dst.Stride:][:w]
		for x, a := range acc {
			d[x] = clipFixed(a)
		}
	}
	return dst
}

// horizontalRGB resamples rows [first, first+n) of src into tmp, packed RGB.
func horizontalRGB(tmp []byte, src *image.NRGBA, first, n int, c *coeffs) {
	w := len(c.bounds) / 2
	for y := 0; y < n; y++ {
		srow := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+first+y):][:4*src.Rect.Dx()]
		drow := tmp[3*w*y:][:3*w]
		for xx := 0; xx < w; xx++ {
			xmin, xn := c.bounds[2*xx], c.bounds[2*xx+1]
			k := c.k[xx*c.ksize:][:xn]
			p := srow[4*xmin:][:4*xn]
			s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
			for i, kv := range k {
				q := p[4*i : 4*i+3]
				s0 += int32(q[0]) * kv
				s1 += int32(q[1]) * kv
				s2 += int32(q[2]) * kv
			}
			drow[3*xx], drow[3*xx+1], drow[3*xx+2] = clipFixed(s0), clipFixed(s1), clipFixed(s2)
		}
	}
}

func horizontalGray(tmp []byte, src *image.Gray, first, n int, c *coeffs) {
	w := len(c.bounds) / 2
	for y := 0; y < n; y++ {
		srow := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+first+y):][:src.Rect.Dx()]
		drow := tmp[w*y:][:w]
		for xx := range drow {
			xmin, xn := c.bounds[2*xx], c.bounds[2*xx+1]
			k := c.k[xx*c.ksize:][:xn]
			p := srow[xmin:][:xn]
			s := int32(1 << (precisionBits - 1))
			for i, kv := range k {
				s += int32(p[i]) * kv
			}
			drow[xx] = clipFixed(s)
		}
	}
}

// verticalRow accumulates output row yy over the intermediate rows, one
// whole row per tap so the inner loop streams through memory. Integer sums
// are exact, so the order does not change the result.
func verticalRow(acc []int32, tmp []byte, rowLen int, c *coeffs, yy, first int) {
	for i := range acc {
		acc[i] = 1 << (precisionBits - 1)
	}
	ymin, yn := c.bounds[2*yy]-first, c.bounds[2*yy+1]
	for j, kv := range c.k[yy*c.ksize:][:yn] {
		if kv == 0 {
			continue
		}
		row := tmp[(ymin+j)*rowLen:][:len(acc)]
		for i, v := range row {
			acc[i] += int32(v) * kv
		}
	}
}

// ResizeShortestEdgeCenterCrop resizes src so its shorter side is size
// (the longer side is truncated, size*long/short, as Hugging Face's
// get_resize_output_image_size does), then crops the centre size x size
// square, starting at floor((dim-size)/2) as its center_crop does. This is
// the CLIP image processor's resize + crop.
func ResizeShortestEdgeCenterCrop(src *image.NRGBA, size int, f Filter) *image.NRGBA {
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	if size <= 0 || sw <= 0 || sh <= 0 {
		return image.NewNRGBA(image.Rect(0, 0, max(size, 0), max(size, 0)))
	}
	w, h := size, size
	if sw < sh {
		h = int(int64(size) * int64(sh) / int64(sw))
	} else {
		w = int(int64(size) * int64(sw) / int64(sh))
	}
	r := ResizeRGB(src, w, h, f)
	left, top := (w-size)/2, (h-size)/2
	dst := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		copy(dst.Pix[y*dst.Stride:][:4*size], r.Pix[r.PixOffset(left, top+y):])
	}
	return dst
}
