package matte

import (
	"context"
	"errors"
	"fmt"
	"image"
	"runtime"
	"time"
)

// Options are rembg's alpha-matting parameters (its server's af, ab, ae).
type Options struct {
	ForegroundThreshold int // af: mask values above it are sure foreground
	BackgroundThreshold int // ab: mask values below it are sure background
	ErodeSize           int // ae: side of the square both are eroded by
}

// Defaults are rembg's defaults.
var Defaults = Options{ForegroundThreshold: 240, BackgroundThreshold: 10, ErodeSize: 10}

// Validate checks the ranges rembg's server accepts: thresholds in
// [0, 255], a non-negative erosion. maxErode bounds the erosion further
// (rembg has no upper bound; a structure larger than the image erodes
// everything).
func (o Options) Validate(maxErode int) error {
	switch {
	case o.ForegroundThreshold < 0 || o.ForegroundThreshold > 255:
		return fmt.Errorf("alpha matting foreground threshold %d is not in [0, 255]", o.ForegroundThreshold)
	case o.BackgroundThreshold < 0 || o.BackgroundThreshold > 255:
		return fmt.Errorf("alpha matting background threshold %d is not in [0, 255]", o.BackgroundThreshold)
	case o.ErodeSize < 0 || o.ErodeSize > maxErode:
		return fmt.Errorf("alpha matting erode size %d is not in [0, %d]", o.ErodeSize, maxErode)
	}
	return nil
}

// ErrFallback marks the failures after which rembg returns the plain
// cutout instead (its alpha_matting_cutout raised a ValueError): a trimap
// without foreground or background, a solver that did not converge.
var ErrFallback = errors.New("alpha matting not possible")

// Stats describe one cutout, for logs, headers and benchmarks.
type Stats struct {
	Unknown    int           // unknown pixels of the trimap (the system's size)
	Factor     int64         // entries of the incomplete Cholesky factor
	Shift      float64       // the diagonal shift the factorisation needed
	Iterations int           // conjugate gradient iterations
	Bytes      int64         // estimated working memory
	Alpha      time.Duration // Laplacian, factorisation and solve
	Foreground time.Duration // multilevel foreground estimation
}

// The working set has two stages, and Cutout collects the first's garbage
// before the second (bench/README.md has measurements):
//   - alpha: per pixel the trimap's classes and unknown index; per unknown
//     pixel its row of the system, its pixel and right-hand side, the
//     solver's six vectors, the factorisation's work space, and the factor,
//     whose columns hold 40 to 65 entries at pymatting's drop threshold and
//     may hold up to maxFactorPerColumn (beyond, rembg's fallback: pymatting
//     bounds its factor too, at 250 million entries);
//   - foreground: per pixel alpha, F and B, the level below at a quarter of
//     the size, that level's alpha, and the output.
//
// Estimate counts the factor at its bound, so it is an upper bound.
const (
	bytesPerPixelAlpha = 1 + 4
	bytesPerPixelFG    = 4 + 24 + 6 + 4 + 4
	bytesPerUnknown    = stored*8 + 4 + 8 + 6*8 + (8 + 4 + 8 + 1 + 8 + 4) + 16
	maxFactorPerColumn = 128
	bytesPerEntry      = 12
)

// Estimate bounds the working memory of Cutout for an image of w x h
// pixels whose trimap has unknown unknown pixels.
func Estimate(w, h, unknown int) int64 {
	px, u := int64(w)*int64(h), int64(unknown)
	alpha := px*bytesPerPixelAlpha + u*(bytesPerUnknown+maxFactorPerColumn*bytesPerEntry) + chunkSize*bytesPerEntry
	return max(alpha, px*bytesPerPixelFG)
}

// Plan computes the trimap of mask and what Cutout would cost. The error
// wraps ErrFallback when rembg would fall back to the plain cutout.
func Plan(mask *image.Gray, o Options) (trimap *image.Gray, unknown int, bytes int64, err error) {
	trimap = Trimap(mask, o.ForegroundThreshold, o.BackgroundThreshold, o.ErodeSize)
	unknown, err = countUnknown(trimap)
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	bytes = Estimate(w, h, unknown)
	if err != nil {
		return trimap, unknown, bytes, fmt.Errorf("%w: %w", ErrFallback, err)
	}
	if unknown == 0 {
		// pymatting's cg divides 0 by 0 on an empty system until maxiter.
		return trimap, 0, bytes, fmt.Errorf("%w: the trimap has no unknown pixels", ErrFallback)
	}
	return trimap, unknown, bytes, nil
}

// Cutout is rembg's alpha_matting_cutout on img with the trimap from Plan:
// alpha by closed-form matting, colour by multilevel foreground estimation,
// and the RGBA result clip(stack(F, alpha) * 255) truncated to 8 bits
// (straight, not premultiplied, alpha). Alpha of img is ignored, as rembg
// converts RGBA to RGB first. The error wraps ErrFallback when rembg would
// return the plain cutout instead (pymatting raised a ValueError: this
// includes a factor beyond its size bound), or is the context's error.
func Cutout(ctx context.Context, img *image.NRGBA, trimap *image.Gray) (*image.NRGBA, Stats, error) {
	var st Stats
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if trimap.Rect.Dx() != w || trimap.Rect.Dy() != h {
		return nil, st, fmt.Errorf("matte: image %dx%d, trimap %dx%d", w, h, trimap.Rect.Dx(), trimap.Rect.Dy())
	}
	start := time.Now()
	x, sys, err := solveAlpha(ctx, img, trimap, &st)
	if err != nil {
		return nil, st, err
	}
	// alpha = clip(x, 0, 1), the known pixels from the trimap; the output's
	// alpha channel is written now, from the float64 values.
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	alpha := make([]float32, w*h)
	for y := 0; y < h; y++ {
		row := trimap.Pix[trimap.PixOffset(trimap.Rect.Min.X, trimap.Rect.Min.Y+y):][:w]
		for x, v := range row {
			a := float64(v) / 255
			alpha[y*w+x], out.Pix[4*(y*w+x)+3] = float32(a), to8(a)
		}
	}
	for u, p := range sys.pixel {
		a := max(0, min(1, x[u]))
		alpha[p], out.Pix[4*p+3] = float32(a), to8(a)
	}
	sys, x = nil, nil
	// The factor and the system (about 400 MB at 12 MP) are garbage now;
	// collecting it before the foreground stage allocates as much again
	// keeps the peak at the larger of the two stages rather than their sum.
	runtime.GC()
	st.Alpha = time.Since(start)

	start = time.Now()
	f, err := foreground(ctx, img, alpha)
	if err != nil {
		return nil, st, err
	}
	for i := range w * h {
		q := out.Pix[4*i : 4*i+3]
		q[0], q[1], q[2] = to8(float64(f[3*i])), to8(float64(f[3*i+1])), to8(float64(f[3*i+2]))
	}
	st.Foreground = time.Since(start)
	return out, st, nil
}

// solveAlpha is estimate_alpha_cf: it returns the unknowns' alpha before
// clipping, and the system, whose index maps pixels to unknowns.
func solveAlpha(ctx context.Context, img *image.NRGBA, trimap *image.Gray, st *Stats) ([]float64, *system, error) {
	sys, err := buildSystem(ctx, img, trimap)
	if err != nil {
		return nil, nil, err
	}
	st.Unknown = sys.n()
	st.Bytes = Estimate(img.Rect.Dx(), img.Rect.Dy(), st.Unknown)
	if st.Unknown == 0 {
		return nil, nil, fmt.Errorf("%w: the trimap has no unknown pixels", ErrFallback)
	}
	pre, shift, err := sys.factor(ctx, int64(st.Unknown)*maxFactorPerColumn)
	if errors.Is(err, errFillIn) || errors.Is(err, errIndefinite) {
		return nil, nil, fmt.Errorf("%w: %w", ErrFallback, err)
	}
	if err != nil {
		return nil, nil, err
	}
	st.Factor, st.Shift = pre.entries, shift
	x, it, err := sys.solve(ctx, pre)
	st.Iterations = it
	if errors.Is(err, ErrNotConverged) {
		return nil, nil, fmt.Errorf("%w: %w", ErrFallback, err)
	}
	return x, sys, err
}

// to8 is np.clip(v * 255, 0, 255).astype(np.uint8): truncation.
func to8(v float64) byte {
	return byte(max(0, min(255, v*255)))
}
