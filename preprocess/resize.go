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
// levels per pixel (max 9 on 1152x864 -> 320x320, most samples off by
// one or more; TestNfntDiffersFromPIL). This port is bit-exact with Pillow
// (resize_test.go) and, working on packed bytes with no interface calls,
// needs about half nfnt's CPU time for that resize; its inner loops run in
// AVX2 where the CPU has it, with the same bytes (avx2_amd64.go). Large
// images are split into bands of rows, one per core (see forBands).
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
// input samples from bounds[2i] with weights k[i*ksize:][:n]. They are
// shared through coeffCache and never change once made.
type coeffs struct {
	ksize  int
	bounds []int
	k      []int32
	// simd is k laid out for the AVX2 kernels, made on first use.
	simd struct {
		once   sync.Once
		k      []int16 // split16: for the RGBA horizontal pass
		groups int
		k8     []int32 // padded8: for the gray horizontal pass
		ksize8 int
	}
}

// The weights of the sizes resized last are kept: a model's requests all
// resize to its input size, mostly from a few photo sizes, and computing
// them (two sines a tap) took ~1 ms of a 1.5 MP request's resize and mask,
// on one core before the bands start. coeffCacheBytes bounds the memory.
type coeffKey struct {
	in, out int
	f       Filter
}

const coeffCacheBytes = 8 << 20

var coeffCache struct {
	sync.Mutex
	m     map[coeffKey]*coeffs
	bytes int
}

// cachedCoeffs is precomputeCoeffs, from the cache when it has them.
func cachedCoeffs(inSize, outSize int, f Filter) *coeffs {
	key := coeffKey{inSize, outSize, f}
	coeffCache.Lock()
	c, ok := coeffCache.m[key]
	coeffCache.Unlock()
	if ok {
		return c
	}
	c = precomputeCoeffs(inSize, outSize, f)
	size := 8*len(c.bounds) + 4*len(c.k)*6 // with the AVX2 layouts: ~5x k
	coeffCache.Lock()
	defer coeffCache.Unlock()
	if coeffCache.m == nil || coeffCache.bytes+size > coeffCacheBytes {
		coeffCache.m, coeffCache.bytes = map[coeffKey]*coeffs{}, 0
	}
	if size <= coeffCacheBytes {
		coeffCache.m[key] = c
		coeffCache.bytes += size
	}
	return c
}

// precomputeCoeffs is Pillow's precompute_coeffs + normalize_coeffs_8bpc.
func precomputeCoeffs(inSize, outSize int, f Filter) *coeffs {
	support, fn := f.kernel()
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support *= filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := &coeffs{ksize: ksize, bounds: make([]int, 2*outSize), k: make([]int32, outSize*ksize)}
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
	if w <= 0 || h <= 0 || src.Rect.Empty() {
		return image.NewNRGBA(image.Rectangle{})
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	hc := cachedCoeffs(sw, w, f)
	vc := cachedCoeffs(sh, h, f)
	first, n := vc.rows()
	tmp := getBytes(3 * w * n)
	defer bytePool.Put(tmp)
	rgb := getBytes(3 * w * h)
	defer bytePool.Put(rgb)
	kern := resizeKernels
	forBands(n, 3*w*n*hc.ksize, func(lo, hi int) { kern.hRGB(*tmp, src, first, lo, hi, hc) })
	forBands(h, 3*w*h*vc.ksize, func(lo, hi int) {
		kern.vertical(*rgb, 3*w, 3*w, *tmp, vc, first, lo, hi)
		for yy := lo; yy < hi; yy++ {
			row := (*rgb)[3*w*yy:][:3*w]
			d := dst.Pix[yy*dst.Stride:][:4*w]
			for x := 0; x < w; x++ {
				p := d[4*x : 4*x+4 : 4*x+4]
				p[0], p[1], p[2], p[3] = row[3*x], row[3*x+1], row[3*x+2], 0xFF
			}
		}
	})
	return dst
}

// ResizeGray resizes an 8-bit single-channel image as PIL does for mode "L".
func ResizeGray(src *image.Gray, w, h int, f Filter) *image.Gray {
	if w <= 0 || h <= 0 || src.Rect.Empty() {
		return image.NewGray(image.Rectangle{})
	}
	dst := image.NewGray(image.Rect(0, 0, w, h))
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	hc := cachedCoeffs(sw, w, f)
	vc := cachedCoeffs(sh, h, f)
	first, n := vc.rows()
	tmp := getBytes(w * n)
	defer bytePool.Put(tmp)
	kern := resizeKernels
	forBands(n, w*n*hc.ksize, func(lo, hi int) { kern.hGray(*tmp, src, first, lo, hi, hc) })
	forBands(h, w*h*vc.ksize, func(lo, hi int) { kern.vertical(dst.Pix, dst.Stride, w, *tmp, vc, first, lo, hi) })
	return dst
}

// kernels are the resampler's inner loops: Go's below, or the same
// arithmetic in AVX2 where the CPU has it (resize_avx2_amd64.go). Both give
// the same bytes.
type kernels struct {
	name  string
	hRGB  func(tmp []byte, src *image.NRGBA, first, lo, hi int, c *coeffs)
	hGray func(tmp []byte, src *image.Gray, first, lo, hi int, c *coeffs)
	// vertical writes output rows [lo, hi), n bytes each and stride apart
	// in out, from the horizontal pass's n-byte rows in tmp.
	vertical func(out []byte, stride, n int, tmp []byte, c *coeffs, first, lo, hi int)
}

var goKernels = kernels{name: "go", hRGB: horizontalRGB, hGray: horizontalGray, vertical: verticalGo}

// resizeKernels are the kernels in use.
var resizeKernels = goKernels

// ResizeKernels names the resampler's inner loops in use, "go" or "avx2",
// for start-up logs and benchmarks.
func ResizeKernels() string { return resizeKernels.name }

func verticalGo(out []byte, stride, n int, tmp []byte, c *coeffs, first, lo, hi int) {
	acc := make([]int32, n)
	for yy := lo; yy < hi; yy++ {
		verticalRow(out[yy*stride:][:n], tmp, c, yy, first, acc)
	}
}

const half = 1 << (precisionBits - 1) // rounding term of each sum

// horizontalRGB resamples rows first+[lo, hi) of src into rows [lo, hi) of
// tmp, packed RGB.
// Taps go two at a time: it saves ~15% over the plain loop (a packed
// two-samples-per-multiply variant was slower: multiplies are not the
// bottleneck, loads and loop overhead are).
func horizontalRGB(tmp []byte, src *image.NRGBA, first, lo, hi int, c *coeffs) {
	w := len(c.bounds) / 2
	for y := lo; y < hi; y++ {
		srow := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+first+y):][:4*src.Rect.Dx()]
		drow := tmp[3*w*y:][:3*w]
		for xx := 0; xx < w; xx++ {
			xmin, xn := c.bounds[2*xx], c.bounds[2*xx+1]
			k := c.k[xx*c.ksize:][:xn]
			p := srow[4*xmin:][:4*xn]
			s0, s1, s2 := int32(half), int32(half), int32(half)
			i := 0
			for ; i+1 < len(k); i += 2 {
				q := p[4*i : 4*i+7 : 4*i+7]
				k0, k1 := k[i], k[i+1]
				s0 += int32(q[0])*k0 + int32(q[4])*k1
				s1 += int32(q[1])*k0 + int32(q[5])*k1
				s2 += int32(q[2])*k0 + int32(q[6])*k1
			}
			if i < len(k) {
				q := p[4*i : 4*i+3 : 4*i+3]
				s0 += int32(q[0]) * k[i]
				s1 += int32(q[1]) * k[i]
				s2 += int32(q[2]) * k[i]
			}
			d := drow[3*xx : 3*xx+3 : 3*xx+3]
			d[0], d[1], d[2] = clipFixed(s0), clipFixed(s1), clipFixed(s2)
		}
	}
}

func horizontalGray(tmp []byte, src *image.Gray, first, lo, hi int, c *coeffs) {
	w := len(c.bounds) / 2
	for y := lo; y < hi; y++ {
		srow := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+first+y):][:src.Rect.Dx()]
		drow := tmp[w*y:][:w]
		for xx := range drow {
			xmin, xn := c.bounds[2*xx], c.bounds[2*xx+1]
			k := c.k[xx*c.ksize:][:xn]
			p := srow[xmin:][:xn]
			s := int32(half)
			for i, kv := range k {
				s += int32(p[i]) * kv
			}
			drow[xx] = clipFixed(s)
		}
	}
}

// verticalRow computes output row yy into out (one byte per sample, any
// channel layout) from the intermediate rows, whole rows per tap (two taps
// per pass) so the inner loop streams through memory. Integer sums are
// exact, so the order does not change the result. acc needs len(out).
func verticalRow(out, tmp []byte, c *coeffs, yy, first int, acc []int32) {
	n := len(out)
	acc = acc[:n]
	for i := range acc {
		acc[i] = half
	}
	ymin, yn := c.bounds[2*yy]-first, c.bounds[2*yy+1]
	k := c.k[yy*c.ksize:][:yn]
	j := 0
	for ; j+1 < len(k); j += 2 {
		k0, k1 := k[j], k[j+1]
		r0 := tmp[(ymin+j)*n:][:n]
		r1 := tmp[(ymin+j+1)*n:][:n]
		for i := range acc {
			acc[i] += int32(r0[i])*k0 + int32(r1[i])*k1
		}
	}
	if j < len(k) {
		k0 := k[j]
		r0 := tmp[(ymin+j)*n:][:n]
		for i := range acc {
			acc[i] += int32(r0[i]) * k0
		}
	}
	for i, a := range acc {
		out[i] = clipFixed(a)
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
