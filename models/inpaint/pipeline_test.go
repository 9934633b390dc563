package inpaint

import (
	"context"
	"errors"
	"image"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
)

// photo is a smooth, photo-like test image with a translucent corner, so
// resampling errors stay small and alpha handling shows.
func photo(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			fx, fy := float64(x)/float64(w), float64(y)/float64(h)
			a := uint8(255)
			if x < w/5 && y < h/5 {
				a = uint8(40 + (x+y)%200)
			}
			copy(img.Pix[img.PixOffset(x, y):], []uint8{
				uint8(30 + 190*fx), uint8(200 - 150*fy), uint8(128 + 100*math.Sin(6*fx+4*fy)), a})
		}
	}
	return img
}

func clone(img *image.NRGBA) *image.NRGBA {
	c := *img
	c.Pix = append([]byte(nil), img.Pix...)
	return &c
}

// dilatedBoxes is the mask the pipeline fills for boxes: each grown by the
// dilation, clipped.
func dilatedBoxes(w, h int, boxes []Box, r int) *image.Gray {
	grown := make([]Box, len(boxes))
	for i, b := range boxes {
		x0, y0 := max(0, b[0]-float64(r)), max(0, b[1]-float64(r))
		x1, y1 := min(float64(w), b[0]+b[2]+float64(r)), min(float64(h), b[1]+b[3]+float64(r))
		grown[i] = Box{x0, y0, x1 - x0, y1 - y0}
	}
	m, err := MaskFromBoxes(w, h, grown)
	if err != nil {
		panic(err)
	}
	return m
}

// checkFilled compares out with in: bit-identical outside filled, and
// inside it the synthetic model's answer, 255 - input. Exact when the
// crops ran at native size; within resampling error otherwise.
func checkFilled(t *testing.T, in, out *image.NRGBA, filled *image.Gray, exact bool) {
	t.Helper()
	var n, sum, worst float64
	for y := 0; y < in.Rect.Dy(); y++ {
		for x := 0; x < in.Rect.Dx(); x++ {
			o := in.PixOffset(x, y)
			a, b := in.Pix[o:o+4], out.Pix[o:o+4]
			if filled.Pix[filled.PixOffset(x, y)] == 0 {
				if string(a) != string(b) {
					t.Fatalf("%d,%d outside the mask changed: %v -> %v", x, y, a, b)
				}
				continue
			}
			if a[3] != b[3] {
				t.Fatalf("%d,%d: alpha changed %d -> %d", x, y, a[3], b[3])
			}
			for c := range 3 {
				d := math.Abs(float64(b[c]) - float64(255-a[c]))
				if exact && d != 0 {
					t.Fatalf("%d,%d channel %d: %d, want the model's %d", x, y, c, b[c], 255-a[c])
				}
				sum += d
				worst = max(worst, d)
				n++
			}
		}
	}
	t.Logf("inside the mask: mean |out - model| %.2f, worst %.0f over %.0f samples", sum/n, worst, n)
	if n == 0 || sum/n > 1 || worst > 8 {
		t.Errorf("inside the mask the output is not the model's: mean error %.2f, worst %.0f", sum/n, worst)
	}
}

func TestInpaintFillsOnlyTheMaskWithEachStrategy(t *testing.T) {
	reg := loadRegistry(t, registryConfig)
	ctx := context.Background()
	src := photo(1200, 900) // above the crop trigger
	boxes := []Box{{40, 30, 120, 60}, {700, 600, 200, 150}}
	filled := dilatedBoxes(1200, 900, boxes, DefaultMaskDilation)
	for _, st := range []Strategy{StrategyCrop, StrategyResize, StrategyOriginal} {
		var outs [][]byte
		for _, name := range []string{"lama", "lama-unit"} {
			t.Run(string(st)+"/"+name, func(t *testing.T) {
				r, o, err := Lookup(ctx, reg, name)
				if err != nil {
					t.Fatal(err)
				}
				o.Strategy = st
				img := clone(src)
				mask, _ := MaskFromBoxes(1200, 900, boxes)
				tm, err := r.Inpaint(ctx, img, mask, o)
				if err != nil {
					t.Fatal(err)
				}
				wantCrops := map[Strategy]int{StrategyCrop: 2, StrategyResize: 1, StrategyOriginal: 1}[st]
				if tm.Crops != wantCrops || tm.Inference <= 0 {
					t.Errorf("timings %+v, want %d crops", tm, wantCrops)
				}
				checkFilled(t, src, img, filled, st == StrategyCrop)
				outs = append(outs, img.Pix)
			})
		}
		// The 0..1 model and the 0..255 one give the same pixels.
		if len(outs) == 2 && string(outs[0]) != string(outs[1]) {
			t.Errorf("%s: lama and lama-unit differ", st)
		}
	}
}

func TestInpaintRejectsBadMasks(t *testing.T) {
	r := &Runner{Size: image.Pt(64, 64), OutputScale: 255, MaxInFlight: 2, Infer: synthetic(255)}
	img := photo(100, 80)
	var ie *InputError
	if _, err := r.Inpaint(context.Background(), img, image.NewGray(image.Rect(0, 0, 100, 79)), DefaultOptions()); !errors.As(err, &ie) ||
		!strings.Contains(err.Error(), "mask is 100x79 but the image is 100x80") {
		t.Errorf("mask of another size: %v", err)
	}
	if _, err := r.Inpaint(context.Background(), img, image.NewGray(img.Rect), DefaultOptions()); !errors.As(err, &ie) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty mask: %v", err)
	}
	o := DefaultOptions()
	o.Strategy = "tile"
	if _, err := r.Inpaint(context.Background(), img, image.NewGray(img.Rect), o); !errors.As(err, &ie) {
		t.Errorf("bad options: %v", err)
	}
}

// synthetic is the synthetic LaMa in Go: 255 - input inside the hole.
func synthetic(scale float32) InferFunc {
	return func(_ context.Context, pix, hole []float32) ([]float32, error) {
		n := len(hole)
		out := make([]float32, len(pix))
		for i, v := range pix {
			m := hole[i%n]
			out[i] = scale * (v*(1-m) + (1-v)*m)
		}
		return out, nil
	}
}

// manyBoxes are n separate boxes across a 3000x2000 image, one crop each.
func manyBoxes(n int) []Box {
	var boxes []Box
	for i := range n {
		boxes = append(boxes, Box{float64(100 + 560*(i%5)), float64(100 + 600*(i/5)), 50, 40})
	}
	return boxes
}

func TestCropsRunConcurrentlyWithinTheBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // fail, don't hang
	defer cancel()
	const bound = 3
	var inFlight, most, calls atomic.Int32
	var once sync.Once
	full := make(chan struct{})
	infer := synthetic(255)
	r := &Runner{Size: image.Pt(512, 512), OutputScale: 255, MaxInFlight: bound,
		Infer: func(ctx context.Context, pix, hole []float32) ([]float32, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			calls.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if n == bound {
				once.Do(func() { close(full) })
			}
			// The first crops wait until the bound is reached: they can only
			// meet if the pipeline really submits them together.
			select {
			case <-full:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return infer(ctx, pix, hole)
		}}
	img := image.NewNRGBA(image.Rect(0, 0, 3000, 2000))
	mask, _ := MaskFromBoxes(3000, 2000, manyBoxes(10))
	tm, err := r.Inpaint(ctx, img, mask, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if tm.Crops != 10 || calls.Load() != 10 || most.Load() != bound {
		t.Errorf("%d crops, %d model calls, at most %d at once; want 10, 10, %d", tm.Crops, calls.Load(), most.Load(), bound)
	}
}

func TestAFailedCropFailsTheRequestAndLeavesTheImage(t *testing.T) {
	boom := errors.New("model failed")
	var calls atomic.Int32
	r := &Runner{Size: image.Pt(512, 512), OutputScale: 255, MaxInFlight: 2,
		Infer: func(ctx context.Context, pix, hole []float32) ([]float32, error) {
			if calls.Add(1) == 2 {
				return nil, boom
			}
			return synthetic(255)(ctx, pix, hole)
		}}
	img := gradient(3000, 2000)
	orig := clone(img)
	mask, _ := MaskFromBoxes(3000, 2000, manyBoxes(10))
	if _, err := r.Inpaint(context.Background(), img, mask, DefaultOptions()); !errors.Is(err, boom) {
		t.Fatalf("error %v, want the model's", err)
	}
	if string(img.Pix) != string(orig.Pix) {
		t.Error("a failed request changed the image")
	}
	if n := calls.Load(); n == 10 {
		t.Logf("all %d crops ran before the failure was seen", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Infer = func(ctx context.Context, pix, hole []float32) ([]float32, error) { return nil, ctx.Err() }
	if _, err := r.Inpaint(ctx, img, mask, DefaultOptions()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v", err)
	}
}

// batchSizes is an Observer recording each batch's rows.
type batchSizes struct {
	mu   sync.Mutex
	rows []int
}

func (b *batchSizes) ObserveBatch(rows int, _ time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rows = append(b.rows, rows)
}

func (b *batchSizes) ObserveRequest(time.Duration, time.Duration, error) {}

func (b *batchSizes) take() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rows
	b.rows = nil
	return r
}

func TestTwoRegionsRunAsOneBatchOfTwo(t *testing.T) {
	cfg, err := models.ParseConfig(strings.NewReader(`
models:
  - name: lama
    file: lama_synth_dyn.onnx
    task: inpaint
    intra_op_threads: 1
    batching: {max_batch_size: 2, max_queue_delay: 1s}
`))
	if err != nil {
		t.Fatal(err)
	}
	obs := &batchSizes{}
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir: testmodels.Dir(), Runtime: testRuntime,
		Observer: func(string) inference.Observer { return obs },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	reg.Load()
	t.Cleanup(reg.Close)
	r, o, err := Lookup(context.Background(), reg, "lama") // warms up and detects the range, one row each
	if err != nil {
		t.Fatal(err)
	}
	obs.take()
	img := photo(1200, 900)
	mask, _ := MaskFromBoxes(1200, 900, []Box{{40, 30, 120, 60}, {700, 600, 200, 150}})
	if _, err := r.Inpaint(context.Background(), img, mask, o); err != nil {
		t.Fatal(err)
	}
	if got := obs.take(); len(got) != 1 || got[0] != 2 {
		t.Errorf("batches %v, want the two crops in one batch of two", got)
	}
}
