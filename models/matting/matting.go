// Package matting removes backgrounds with the U²-Net and ISNet family,
// reproducing rembg's pre- and post-processing so that its users get the
// masks they know. One pipeline serves every model; a model differs only by
// a few lines of configuration: normalisation, resize filter, which output
// holds the mask. The input size is read from the model itself.
package matting

import (
	"context"
	"fmt"
	"image"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/preprocess"
)

// Spec is what distinguishes one matting model from another.
type Spec struct {
	Norm   preprocess.Norm
	Filter preprocess.Filter // resampling of the image to the model's size
	Output int               // the output whose channel 0 is the mask
}

// norms are the normalisations a model's options may name.
var norms = map[string]preprocess.Norm{
	"rembg":       preprocess.NormRembg,      // U²-Net family: x/max, ImageNet mean/std
	"rembg-isnet": preprocess.NormRembgISNet, // rembg's isnet-general-use: std 1
	"imgly":       preprocess.NormIMGLY,      // IMG.LY ISNet: (x-128)/256
	"imagenet":    preprocess.NormImageNet,   // x/255, ImageNet mean/std
	"half":        preprocess.NormHalf,       // x/255, mean 0.5, std 0.5
}

var filters = map[string]preprocess.Filter{
	"lanczos3": preprocess.Lanczos3, "bilinear": preprocess.Bilinear, "bicubic": preprocess.Bicubic,
}

// ParseSpec reads a model's options: norm (default rembg), resize (default
// lanczos3, as rembg's PIL LANCZOS), output (default 0).
func ParseSpec(opts map[string]string) (Spec, error) {
	s := Spec{Norm: preprocess.NormRembg, Filter: preprocess.Lanczos3}
	if v, ok := opts["norm"]; ok {
		n, ok := norms[v]
		if !ok {
			return Spec{}, fmt.Errorf("unknown norm %q", v)
		}
		s.Norm = n
	}
	if v, ok := opts["resize"]; ok {
		f, ok := filters[v]
		if !ok {
			return Spec{}, fmt.Errorf("unknown resize filter %q", v)
		}
		s.Filter = f
	}
	if v, ok := opts["output"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return Spec{}, fmt.Errorf("bad output index %q", v)
		}
		s.Output = n
	}
	return s, nil
}

// Timings break one request down by stage, for benchmarks and logs.
type Timings struct {
	ResizePack, Inference, MaskResize time.Duration
}

// Pipeline turns an image into its foreground mask with one model.
type Pipeline struct {
	model *models.Model
	spec  Spec
	pool  sync.Pool // []float32 input planes, reused across requests
}

// New builds the pipeline for a model of task matting.
func New(m *models.Model) (*Pipeline, error) {
	spec, err := ParseSpec(m.Config.Options)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Config.Name, err)
	}
	return &Pipeline{model: m, spec: spec}, nil
}

// Model is the model this pipeline runs.
func (p *Pipeline) Model() *models.Model { return p.model }

// inputSize is the model's H and W; exports with dynamic spatial dimensions
// get rembg's 320.
func (p *Pipeline) inputSize() (w, h int) {
	shape := p.model.State().Inputs[0].Shape
	w, h = int(shape[3]), int(shape[2])
	if w <= 0 || h <= 0 {
		return 320, 320
	}
	return w, h
}

// Mask predicts the foreground of img and returns it at img's size, as rembg
// does: resize to the model, normalise, run, min-max normalise output 0's
// first channel, scale to 8 bits and resize back with Lanczos.
func (p *Pipeline) Mask(ctx context.Context, img *image.NRGBA) (*image.Gray, Timings, error) {
	var t Timings
	start := time.Now()
	w, h := p.inputSize()
	resized := preprocess.ResizeRGB(img, w, h, p.spec.Filter)
	buf := p.buffer(3 * w * h)
	defer p.pool.Put(buf)
	if err := preprocess.PackNCHW(*buf, resized, p.spec.Norm); err != nil {
		return nil, t, err
	}
	t.ResizePack = time.Since(start)

	start = time.Now()
	outs, err := p.model.Infer(ctx, []inference.Tensor{inference.NewTensor([]int64{1, 3, int64(h), int64(w)}, *buf)})
	if err != nil {
		return nil, t, err
	}
	t.Inference = time.Since(start)
	if p.spec.Output >= len(outs) {
		return nil, t, fmt.Errorf("model %s has %d outputs, its options name output %d", p.model.Config.Name, len(outs), p.spec.Output)
	}
	out := outs[p.spec.Output]
	if len(out.Shape) != 4 {
		return nil, t, fmt.Errorf("model %s: mask output has shape %v, want [1,1,H,W]", p.model.Config.Name, out.Shape)
	}
	mh, mw := int(out.Shape[2]), int(out.Shape[3])
	pred := inference.Values[float32](out)[:mh*mw] // channel 0 of the first image

	start = time.Now()
	b := img.Bounds()
	mask, err := preprocess.MaskFromPrediction(pred, mw, mh, b.Dx(), b.Dy())
	t.MaskResize = time.Since(start)
	return mask, t, err
}

func (p *Pipeline) buffer(n int) *[]float32 {
	if v, ok := p.pool.Get().(*[]float32); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	b := make([]float32, n)
	return &b
}

// Registry finds a matting pipeline by model name, building each once.
type Registry struct {
	models *models.Registry
	mu     sync.Mutex
	cache  map[string]*Pipeline
}

// NewRegistry serves the matting models of reg.
func NewRegistry(reg *models.Registry) *Registry {
	return &Registry{models: reg, cache: map[string]*Pipeline{}}
}

// ErrUnknownModel means no matting model has that name.
var ErrUnknownModel = fmt.Errorf("unknown matting model")

// Get returns the pipeline for a model name; "" picks the default: the first
// configured matting model that is ready.
func (r *Registry) Get(name string) (*Pipeline, error) {
	if name == "" {
		name = r.defaultModel()
	}
	m, ok := r.models.Get(name)
	if !ok || m.Config.Task != models.TaskMatting {
		return nil, fmt.Errorf("%w %q; matting models: %s", ErrUnknownModel, name, strings.Join(r.names(), ", "))
	}
	if st := m.State(); st.Status != models.StatusReady {
		return nil, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, name, st.Status, st.Reason)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.cache[name]; ok {
		return p, nil
	}
	p, err := New(m)
	if err != nil {
		return nil, err
	}
	r.cache[name] = p
	return p, nil
}

func (r *Registry) names() []string {
	var out []string
	for _, m := range r.models.Models() {
		if m.Config.Task == models.TaskMatting {
			out = append(out, m.Config.Name)
		}
	}
	return out
}

func (r *Registry) defaultModel() string {
	var first string
	for _, m := range r.models.Models() {
		if m.Config.Task != models.TaskMatting {
			continue
		}
		if first == "" {
			first = m.Config.Name
		}
		if m.State().Status == models.StatusReady {
			return m.Config.Name
		}
	}
	return first
}
