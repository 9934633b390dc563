package matte

import (
	"context"
	"image"
	"math"
	"runtime"
	"sync"
)

// estimate_foreground_ml's parameters, pymatting's defaults.
const (
	fgRegularization  float32 = 1e-5
	fgGradientWeight  float32 = 1
	fgSmallIterations         = 10
	fgBigIterations           = 2
	fgSmallSize               = 32
)

// foreground is pymatting's estimate_foreground_ml(image, alpha): the
// foreground F and background B that best explain I = alpha F + (1-alpha) B
// with smooth F and B, solved coarse to fine over about log2(size) levels,
// each level starting from the previous one (nearest-neighbour resizes) and
// improved by Gauss-Seidel sweeps in raster order. It returns F as
// interleaved RGB float32 in [0, 1].
//
// pymatting compiles this with numba from float32 arrays, and numba mixes
// float32 and float64 as numpy would: alpha and the accumulated weights of
// F are float32, 1-alpha and everything derived from it float64, results
// stored as float32. The same mix is kept here, so that the values (and
// where they truncate to 8 bits) agree. The coarsest level starts from
// zeros, where pymatting starts from uninitialised memory that its first
// sweep clips to [0, 1].
func foreground(ctx context.Context, img *image.NRGBA, alpha []float32) ([]float32, error) {
	w0, h0 := img.Rect.Dx(), img.Rect.Dy()
	levels := int(math.Ceil(math.Log2(float64(max(w0, h0)))))
	fPrev, bPrev := make([]float32, 3), make([]float32, 3)
	wPrev, hPrev := 1, 1
	var f, b []float32
	for level := 0; level <= levels; level++ {
		w, h := w0, h0
		if levels > 0 {
			e := float64(level) / float64(levels)
			w = int(math.RoundToEven(math.Pow(float64(w0), e)))
			h = int(math.RoundToEven(math.Pow(float64(h0), e)))
		}
		lv := newLevel(img, alpha, w, h)
		f, b = make([]float32, 3*w*h), make([]float32, 3*w*h)
		pxs, pys := nearest(w, wPrev), nearest(h, hPrev)
		for y := range h {
			for x := range w {
				o, po := 3*(y*w+x), 3*(pys[y]*wPrev+pxs[x])
				copy(f[o:o+3], fPrev[po:po+3])
				copy(b[o:o+3], bPrev[po:po+3])
			}
		}
		iterations := fgBigIterations
		if w <= fgSmallSize && h <= fgSmallSize {
			iterations = fgSmallIterations
		}
		fPrev, bPrev = nil, nil
		for range iterations {
			if err := lv.sweep(ctx, f, b); err != nil {
				return nil, err
			}
		}
		fPrev, bPrev, wPrev, hPrev = f, b, w, h
	}
	return f, nil
}

// level is the image and alpha resized (nearest neighbour) to one level's
// size. The image is read from the 8-bit source through the resize maps
// rather than copied, which at full size would be 12 bytes a pixel.
type level struct {
	w, h   int
	src    *image.NRGBA
	xs, ys []int // source column of each column, source row of each row
	alpha  []float32
}

// unit is (img / 255.0).astype(float32), rembg's normalisation.
var unit = func() (t [256]float32) {
	for v := range t {
		t[v] = float32(float64(v) / 255.0)
	}
	return t
}()

func newLevel(img *image.NRGBA, alpha []float32, w, h int) *level {
	w0, h0 := img.Rect.Dx(), img.Rect.Dy()
	lv := &level{w: w, h: h, src: img, xs: nearest(w, w0), ys: nearest(h, h0), alpha: alpha}
	if w != w0 || h != h0 {
		lv.alpha = make([]float32, w*h)
		for y := range h {
			for x := range w {
				lv.alpha[y*w+x] = alpha[lv.ys[y]*w0+lv.xs[x]]
			}
		}
	}
	return lv
}

// nearest maps each of n destination samples to a source sample out of
// src: min(i*src/n, src-1).
func nearest(n, src int) []int {
	m := make([]int, n)
	for i := range m {
		m[i] = min(i*src/n, src-1)
	}
	return m
}

// sweep is one Gauss-Seidel pass in raster order, F and B updated in
// place. Pixel (x, y) reads the new values of its left and upper
// neighbours and the old values of its right and lower ones, so a row may
// run beside the row above it as long as it stays behind it: rows go to
// the cores in turn, each waiting, chunk by chunk, for the row above to
// be done with the chunk. Every pixel sees exactly the values a sequential
// pass gives it.
func (lv *level) sweep(ctx context.Context, f, b []float32) error {
	const chunk = 256
	workers := min(runtime.GOMAXPROCS(0), lv.h)
	if workers < 2 || lv.w*lv.h < 1<<16 {
		for y := range lv.h {
			if y%256 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			lv.sweepRow(f, b, y, 0, lv.w)
		}
		return nil
	}
	var (
		mu       sync.Mutex
		moved    = sync.NewCond(&mu)
		progress = make([]int, lv.h) // columns done in each row
		stopped  bool
		wg       sync.WaitGroup
	)
	for g := range workers {
		wg.Go(func() {
			for y := g; y < lv.h; y += workers {
				if ctx.Err() != nil {
					mu.Lock()
					stopped = true
					moved.Broadcast()
					mu.Unlock()
					return
				}
				for x0 := 0; x0 < lv.w; x0 += chunk {
					x1 := min(x0+chunk, lv.w)
					if y > 0 {
						mu.Lock()
						for progress[y-1] < x1 && !stopped {
							moved.Wait()
						}
						done := stopped
						mu.Unlock()
						if done {
							return
						}
					}
					lv.sweepRow(f, b, y, x0, x1)
					mu.Lock()
					progress[y] = x1
					moved.Broadcast()
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// sweepRow updates pixels [x0, x1) of row y.
func (lv *level) sweepRow(f, b []float32, y, x0, x1 int) {
	dx := [4]int{-1, 1, 0, 0}
	dy := [4]int{0, 0, -1, 1}
	w, h, alpha := lv.w, lv.h, lv.alpha
	row := lv.src.Pix[lv.src.PixOffset(lv.src.Rect.Min.X, lv.src.Rect.Min.Y+lv.ys[y]):]
	for x := x0; x < x1; x++ {
		p := row[4*lv.xs[x]:][:3]
		image := [3]float32{unit[p[0]], unit[p[1]], unit[p[2]]}
		i := y*w + x
		a0 := alpha[i]
		a1 := 1.0 - float64(a0)
		a00 := a0 * a0
		a01 := float64(a0) * a1
		a11 := a1 * a1
		var b0, b1 [3]float32
		for c := range 3 {
			b0[c] = a0 * image[c]
			b1[c] = float32(a1 * float64(image[c]))
		}
		for d := range 4 {
			x2 := max(0, min(w-1, x+dx[d]))
			y2 := max(0, min(h-1, y+dy[d]))
			j := y2*w + x2
			gradient := float32(math.Abs(float64(a0 - alpha[j])))
			da := fgRegularization + float32(fgGradientWeight*gradient)
			a00 += da
			a11 += float64(da)
			for c := range 3 {
				b0[c] += float32(da * f[3*j+c])
				b1[c] += float32(da * b[3*j+c])
			}
		}
		det := float64(a00)*a11 - a01*a01
		inv := 1.0 / det
		m00 := inv * a11
		m01 := inv * -a01
		m11 := inv * float64(a00)
		for c := range 3 {
			fc := float64(m00*float64(b0[c])) + float64(m01*float64(b1[c]))
			bc := float64(m01*float64(b0[c])) + float64(m11*float64(b1[c]))
			f[3*i+c] = float32(max(0.0, min(1.0, fc)))
			b[3*i+c] = float32(max(0.0, min(1.0, bc)))
		}
	}
}
