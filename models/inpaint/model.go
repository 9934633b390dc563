package inpaint

import (
	"context"
	"errors"
	"fmt"
	"image"
	"runtime"
	"strings"
	"sync"
	"weak"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
)

// Task is the model task this package serves.
const Task = "inpaint"

func init() { models.RegisterTask(Task, checkSignature) }

// defaultSize is used for a model whose spatial dimensions are dynamic:
// LaMa was trained on 256..512 crops, and one size lets crops batch.
const defaultSize = 512

// signature is where a LaMa-like model keeps its tensors.
type signature struct {
	image, mask, output int // input, input and output positions
	size                image.Point
}

func checkSignature(in, out []inference.TensorInfo) error {
	_, err := parseSignature(in, out)
	return err
}

// parseSignature wants inputs "image" FP32 [N,3,H,W] and "mask" FP32
// [N,1,H,W] and an output FP32 [N,3,H,W] ("output" when there are several,
// else the first), N being 1 or dynamic and H, W agreeing wherever they are
// fixed.
func parseSignature(in, out []inference.TensorInfo) (signature, error) {
	want := fmt.Errorf("want inputs image FP32 [N,3,H,W] and mask FP32 [N,1,H,W] and an output FP32 [N,3,H,W], got inputs %s, outputs %s",
		models.Describe(in), models.Describe(out))
	sig := signature{image: -1, mask: -1, output: 0}
	if len(in) != 2 || len(out) == 0 {
		return sig, want
	}
	for i, t := range out {
		if t.Name == "output" {
			sig.output = i
		}
	}
	for i, t := range in {
		switch {
		case t.Name == "image" && models.IsImageBatch(t, 3):
			sig.image = i
		case t.Name == "mask" && models.IsImageBatch(t, 1):
			sig.mask = i
		}
	}
	if sig.image < 0 || sig.mask < 0 || !models.IsImageBatch(out[sig.output], 3) {
		return sig, want
	}
	var h, w int64 = -1, -1
	for _, t := range []inference.TensorInfo{in[sig.image], in[sig.mask], out[sig.output]} {
		if t.Shape[0] > 1 {
			return sig, fmt.Errorf("%s has a fixed batch of %d; want 1 or dynamic", t.Name, t.Shape[0])
		}
		for _, d := range []struct{ dim, got int64 }{{h, t.Shape[2]}, {w, t.Shape[3]}} {
			if d.dim >= 0 && d.got >= 0 && d.dim != d.got {
				return sig, fmt.Errorf("image, mask and output disagree on their size: %s", want)
			}
		}
		if t.Shape[2] >= 0 {
			h = t.Shape[2]
		}
		if t.Shape[3] >= 0 {
			w = t.Shape[3]
		}
	}
	sig.size = image.Pt(defaultSize, defaultSize)
	if w > 0 {
		sig.size.X = int(w)
	}
	if h > 0 {
		sig.size.Y = int(h)
	}
	return sig, nil
}

// scales caches each loaded model's detected output range, keyed weakly
// by its State: a model's State is replaced when it loads again, and the
// entry goes with the State it was detected on.
var scales sync.Map // weak.Pointer[models.State] -> *detected

type detected struct {
	mu    sync.Mutex
	scale float32 // 0 until detected
}

func detectedFor(st *models.State) *detected {
	key := weak.Make(st)
	if d, ok := scales.Load(key); ok {
		return d.(*detected)
	}
	d, loaded := scales.LoadOrStore(key, &detected{})
	if !loaded {
		runtime.AddCleanup(st, func(k weak.Pointer[models.State]) { scales.Delete(k) }, key)
	}
	return d.(*detected)
}

// ErrUnknownModel means no configured model of task inpaint has the name.
var ErrUnknownModel = errors.New("unknown inpaint model")

// Lookup binds the inpaint model called name in reg (see Model) and returns
// it with the options its configuration sets.
func Lookup(ctx context.Context, reg *models.Registry, name string) (*Runner, Options, error) {
	m, ok := reg.Get(name)
	if !ok || m.Config.Task != Task {
		var names []string
		for _, m := range reg.Models() {
			if m.Config.Task == Task {
				names = append(names, m.Config.Name)
			}
		}
		return nil, Options{}, fmt.Errorf("%w %q; inpaint models: %s", ErrUnknownModel, name, strings.Join(names, ", "))
	}
	o, err := OptionsFor(m.Config)
	if err != nil {
		return nil, o, err
	}
	r, err := Model(ctx, m)
	return r, o, err
}

// Model binds a served model of task inpaint. The first call for a loaded
// model runs it once to detect its output range (see DetectOutputScale);
// concurrent first calls wait for that run, and a failed detection is tried
// again by the next call.
func Model(ctx context.Context, m *models.Model) (*Runner, error) {
	if m.Config.Task != Task {
		return nil, fmt.Errorf("%w: model %s serves task %s", ErrUnknownModel, m.Config.Name, m.Config.Task)
	}
	st := m.State()
	if st.Status != models.StatusReady {
		return nil, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, m.Config.Name, st.Status, st.Reason)
	}
	sig, err := parseSignature(st.Inputs, st.Outputs)
	if err != nil {
		return nil, err
	}
	r := &Runner{Size: sig.size, MaxInFlight: inFlight(st.Batching)}
	r.Infer = func(ctx context.Context, pix, hole []float32) ([]float32, error) {
		h, w := int64(sig.size.Y), int64(sig.size.X)
		inputs := make([]inference.Tensor, 2)
		inputs[sig.image] = inference.NewTensor([]int64{1, 3, h, w}, pix)
		inputs[sig.mask] = inference.NewTensor([]int64{1, 1, h, w}, hole)
		outs, err := m.Infer(ctx, inputs)
		if err != nil {
			return nil, err
		}
		o := outs[sig.output]
		if o.DType != inference.FP32 || o.Elements() != 3*h*w {
			return nil, fmt.Errorf("inpaint: %s returned %v %v, want FP32 [1,3,%d,%d]", m.Config.Name, o.DType, o.Shape, h, w)
		}
		return inference.Values[float32](o), nil
	}

	d := detectedFor(st)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.scale == 0 {
		s, err := DetectOutputScale(ctx, r.Size, r.Infer)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Config.Name, err)
		}
		d.scale = s
	}
	r.OutputScale = d.scale
	return r, nil
}

// inFlight lets as many crops wait as the model can run at once, and at
// least two, so a serial model never idles between two crops.
func inFlight(b inference.BatchConfig) int {
	return max(1, min(b.MaxQueueSize, max(2, b.MaxBatchSize*b.Instances)))
}

// DetectOutputScale tells a model that outputs 0..255 (the Carve/LaMa-ONNX
// export) from one that outputs 0..1: it runs the model once on mid-grey
// with an empty mask, which any inpainting model returns as about mid-grey,
// and looks at the mean. It returns the output value of white.
func DetectOutputScale(ctx context.Context, size image.Point, infer InferFunc) (float32, error) {
	n := size.X * size.Y
	pix := make([]float32, 3*n)
	for i := range pix {
		pix[i] = 0.5
	}
	out, err := infer(ctx, pix, make([]float32, n))
	if err != nil {
		return 0, fmt.Errorf("detecting the output range: %w", err)
	}
	var sum float64
	for _, v := range out {
		sum += float64(v)
	}
	mean := sum / float64(max(len(out), 1))
	switch {
	case mean >= 0.2 && mean <= 0.8:
		return 1, nil
	case mean >= 0.2*255 && mean <= 0.8*255:
		return 255, nil
	}
	return 0, fmt.Errorf("cannot tell the output range: mid-grey came back as %.4g on average, want about 0.5 (range 0..1) or 127.5 (range 0..255)", mean)
}

// OptionsFor returns the defaults, overridden by the model's configured
// options (the RequestParams and max_crops).
func OptionsFor(cfg models.ModelConfig) (Options, error) {
	o := DefaultOptions()
	for k, v := range cfg.Options {
		known, err := o.Set(k, v)
		if !known {
			return o, fmt.Errorf("model %s: unknown option %q", cfg.Name, k)
		}
		if err != nil {
			return o, fmt.Errorf("model %s: option %s: %v", cfg.Name, k, err)
		}
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("model %s: %v", cfg.Name, err)
	}
	return o, nil
}
