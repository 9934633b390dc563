package inpaint

import (
	"context"
	"fmt"
	"image"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgserve/imgserve/internal/budget"
	"github.com/imgserve/imgserve/internal/recovered"
)

// InferFunc runs the model on one crop: pix is planar RGB in 0..1
// ([3][H][W]), hole the mask in {0, 1} ([H][W]); it returns planar RGB
// ([3][H][W]) in the model's output range. It must not keep pix or hole
// after it returns without error.
type InferFunc func(ctx context.Context, pix, hole []float32) ([]float32, error)

// Runner is a model that inpaints fixed-size crops, and the pipeline around
// it. Model binds a served model; benchmarks and tests may build one around
// any InferFunc.
type Runner struct {
	// Size is the model's input width and height.
	Size image.Point
	// OutputScale is the output value of white: 255 or 1.
	OutputScale float32
	// MaxInFlight bounds the crops of one request submitted at once. Crops
	// are submitted concurrently so the scheduler can batch them.
	MaxInFlight int
	Infer       InferFunc
}

// Buffers for one crop's inputs. They go back to the pool only after a run
// that returned normally: when a context ends, the scheduler may still hold
// them.
var inputPool sync.Pool

type inputBufs struct{ pix, hole []float32 }

func (r *Runner) getBufs() *inputBufs {
	n := r.Size.X * r.Size.Y
	if b, ok := inputPool.Get().(*inputBufs); ok && len(b.hole) == n {
		return b
	}
	return &inputBufs{pix: make([]float32, 3*n), hole: make([]float32, n)}
}

// Timings break one request down by stage, for Server-Timing and
// benchmarks.
type Timings struct {
	// Mask is the dilation, the region search and the plan.
	Mask time.Duration
	// Pack is cutting, scaling and packing every crop, summed over crops.
	Pack time.Duration
	// Inference is the wall time from the first crop's submission to the
	// last crop's answer.
	Inference time.Duration
	// Unpack is turning every answer into pixels at its window's size,
	// summed over crops.
	Unpack time.Duration
	// Paste is writing the filled pixels into the image.
	Paste time.Duration
	// Crops is the number of model runs.
	Crops int
}

// Overhead is the time spent around the model.
func (t Timings) Overhead() time.Duration { return t.Mask + t.Pack + t.Unpack + t.Paste }

// Inpaint fills the masked pixels of img in place and leaves every other
// pixel as it was. mask is the image's size, non-zero where to fill (see
// MaskFromImage and MaskFromBoxes); it is dilated in place by
// o.MaskDilation.
func (r *Runner) Inpaint(ctx context.Context, img *image.NRGBA, mask *image.Gray, o Options) (Timings, error) {
	var t Timings
	if err := o.Validate(); err != nil {
		return t, err
	}
	size := img.Rect.Size()
	if img.Rect.Min != (image.Point{}) {
		return t, fmt.Errorf("inpaint: the image's bounds %v do not start at 0,0", img.Rect)
	}
	if mask.Rect.Size() != size {
		return t, badInput("the mask is %dx%d but the image is %dx%d; they must be the same size",
			mask.Rect.Dx(), mask.Rect.Dy(), size.X, size.Y)
	}
	if mask.Rect.Min != (image.Point{}) {
		return t, fmt.Errorf("inpaint: the mask's bounds %v do not start at 0,0", mask.Rect)
	}
	start := time.Now()
	bounds := dilate(mask, o.MaskDilation)
	if bounds.Empty() {
		return t, badInput("the mask is empty: no pixel is white (luminance >= 128 with alpha >= 128)")
	}
	regions := findRegions(mask, bounds)
	crops := plan(size, regions, r.Size, o)
	t.Mask, t.Crops = time.Since(start), len(crops)
	// A crop whose window is scaled holds a window-size copy or result
	// until the paste: the request reserves it against the server's
	// memory budget before it allocates (internal/budget).
	var windows int64
	for _, c := range crops {
		if c.fit != c.win.Size() {
			windows += 4 * int64(c.win.Dx()) * int64(c.win.Dy())
		}
	}
	if err := budget.Reserve(ctx, windows); err != nil {
		return t, err
	}
	defer budget.Release(ctx, windows)
	results, err := r.runCrops(ctx, img, mask, crops, &t)
	if err != nil {
		return t, err
	}
	// Every run has read its input before the first paste writes into img.
	start = time.Now()
	for i, c := range crops {
		paste(img, results[i], c.win, regions, c.regions)
	}
	t.Paste = time.Since(start)
	return t, nil
}

// runCrops runs every crop, up to MaxInFlight at a time, and returns each
// one's result scaled back to its window.
func (r *Runner) runCrops(ctx context.Context, img *image.NRGBA, mask *image.Gray, crops []crop, t *Timings) ([]pixels, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]pixels, len(crops))
	errs := make([]error, len(crops))
	sem := make(chan struct{}, max(1, r.MaxInFlight))
	var (
		wg           recovered.Group
		pack, unpack atomic.Int64
		span         inferSpan
	)
	for i, c := range crops {
		sem <- struct{}{}
		if ctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i], errs[i] = r.runCrop(ctx, img, mask, c, &pack, &unpack, &span)
			if errs[i] != nil {
				cancel() // the request fails: spare the model the other crops
			}
		})
	}
	wg.Wait()
	t.Pack, t.Unpack = time.Duration(pack.Load()), time.Duration(unpack.Load())
	t.Inference = span.last.Sub(span.first)
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return results, nil
}

// inferSpan is when the first crop went to the model and the last answer
// came back.
type inferSpan struct {
	mu          sync.Mutex
	first, last time.Time
}

func (s *inferSpan) add(start, end time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.IsZero() || start.Before(s.first) {
		s.first = start
	}
	if end.After(s.last) {
		s.last = end
	}
}

func (r *Runner) runCrop(ctx context.Context, img *image.NRGBA, mask *image.Gray, c crop, pack, unpack *atomic.Int64, span *inferSpan) (pixels, error) {
	start := time.Now()
	bufs := r.getBufs()
	packCrop(img, mask, c, r.Size, bufs.pix, bufs.hole)
	submitted := time.Now()
	pack.Add(int64(submitted.Sub(start)))
	out, err := r.Infer(ctx, bufs.pix, bufs.hole)
	if err != nil {
		return pixels{}, err
	}
	answered := time.Now()
	span.add(submitted, answered)
	inputPool.Put(bufs)
	if len(out) != 3*r.Size.X*r.Size.Y {
		return pixels{}, fmt.Errorf("inpaint: the model returned %d values for a %dx%d crop", len(out), r.Size.X, r.Size.Y)
	}
	res := unpackCrop(out, r.OutputScale, c, r.Size)
	unpack.Add(int64(time.Since(answered)))
	return res, nil
}
