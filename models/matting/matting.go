// Package matting removes backgrounds with rembg's model set, reproducing
// each rembg session's pre- and post-processing so that its users get the
// masks they know:
//
//   - salient-object models (task "matting": U²-Net family, ISNet,
//     isnet-anime, BiRefNet, BRIA RMBG, BEN): resize to the model's size,
//     normalise, run, optionally a sigmoid, min-max normalise the first
//     output's first channel, scale to 8 bits and resize back. A model
//     differs only by a few lines of configuration: normalisation, resize
//     filter, size, sigmoid, which output holds the mask;
//   - u2net_cloth_seg (task "cloth-seg"): per-pixel classes (background,
//     upper body, lower body, full body) and one mask per garment class;
//   - SAM (task "sam" for the image encoder, "sam-decoder" for the prompt
//     decoder it names): a mask from point and box prompts.
//
// rembg's per-request parameters (its "extras" JSON: the SAM prompt, the
// garment class) are Extras.
package matting

import (
	"context"
	"errors"
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
	Norm    preprocess.Norm
	Filter  preprocess.Filter // resampling of the image to the model's size
	Output  int               // the output whose channel 0 is the mask
	Size    int               // the model's input side; 0: read it from the model
	Sigmoid bool              // apply a sigmoid before the min-max (BiRefNet)
	// SAM only: the decoder model, and the export variant that rembg's
	// extras sam_model and sam_quant may name.
	Decoder   string
	Variant   string
	Quantized bool
}

// norms are the normalisations a model's options may name. rembg's
// sessions all divide by the image's largest sample first.
var norms = map[string]preprocess.Norm{
	"rembg":       preprocess.NormRembg,      // U²-Net family, BiRefNet, BRIA: ImageNet mean/std
	"rembg-isnet": preprocess.NormRembgISNet, // isnet-general-use, isnet-anime: std 1
	"rembg-ben":   preprocess.NormRembgBEN,   // ben_custom, dis_custom: mean 0.5, std 1
	"imgly":       preprocess.NormIMGLY,      // IMG.LY ISNet: (x-128)/256
	"imagenet":    preprocess.NormImageNet,   // x/255, ImageNet mean/std
	"half":        preprocess.NormHalf,       // x/255, mean 0.5, std 0.5
}

var filters = map[string]preprocess.Filter{
	"lanczos3": preprocess.Lanczos3, "bilinear": preprocess.Bilinear, "bicubic": preprocess.Bicubic,
}

// ParseSpec reads a model's options: norm (default rembg), resize (default
// lanczos3, as rembg's PIL LANCZOS), output (default 0), size, sigmoid,
// and for SAM decoder, variant (default sam_vit_b_01ec64) and quantized.
// Unknown options are errors, so a typo does not silently change a model.
func ParseSpec(opts map[string]string) (Spec, error) {
	s := Spec{Norm: preprocess.NormRembg, Filter: preprocess.Lanczos3, Variant: "sam_vit_b_01ec64"}
	for k, v := range opts {
		var err error
		switch k {
		case "norm":
			n, ok := norms[v]
			if !ok {
				return Spec{}, fmt.Errorf("unknown norm %q", v)
			}
			s.Norm = n
		case "resize":
			f, ok := filters[v]
			if !ok {
				return Spec{}, fmt.Errorf("unknown resize filter %q", v)
			}
			s.Filter = f
		case "output":
			s.Output, err = strconv.Atoi(v)
			if err != nil || s.Output < 0 {
				return Spec{}, fmt.Errorf("bad output index %q", v)
			}
		case "size":
			s.Size, err = strconv.Atoi(v)
			if err != nil || s.Size <= 0 || s.Size > 8192 {
				return Spec{}, fmt.Errorf("bad size %q", v)
			}
		case "sigmoid":
			s.Sigmoid, err = strconv.ParseBool(v)
		case "quantized":
			s.Quantized, err = strconv.ParseBool(v)
		case "decoder":
			s.Decoder = v
		case "variant":
			s.Variant = v
		default:
			return Spec{}, fmt.Errorf("unknown option %q", k)
		}
		if err != nil {
			return Spec{}, fmt.Errorf("option %s: %w", k, err)
		}
	}
	return s, nil
}

// Timings break one request down by stage, for benchmarks and logs.
type Timings struct {
	ResizePack, Inference, MaskResize time.Duration
}

// ErrBadParameter wraps problems with a request's model parameters (a SAM
// prompt, a garment class): the client's to fix.
var ErrBadParameter = errors.New("bad matting parameter")

// Pipeline turns an image into its masks with one model.
type Pipeline struct {
	model   *models.Model
	decoder *models.Model // SAM only
	spec    Spec
	pool    sync.Pool // []float32 input planes, reused across requests
}

// New builds the pipeline for a model of a matting task. A SAM encoder
// finds its decoder in reg.
func New(m *models.Model, reg *models.Registry) (*Pipeline, error) {
	spec, err := ParseSpec(m.Config.Options)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Config.Name, err)
	}
	p := &Pipeline{model: m, spec: spec}
	if m.Config.Task == TaskSAM {
		if p.decoder, err = samDecoder(m, spec, reg); err != nil {
			return nil, err
		}
		return p, nil
	}
	shape := m.State().Inputs[0].Shape
	if h, w := shape[2], shape[3]; spec.Size > 0 && (h > 0 && h != int64(spec.Size) || w > 0 && w != int64(spec.Size)) {
		return nil, fmt.Errorf("model %s takes %dx%d images but its options say size %d", m.Config.Name, w, h, spec.Size)
	}
	return p, nil
}

// Model is the model this pipeline runs.
func (p *Pipeline) Model() *models.Model { return p.model }

// inputSize is the model's H and W: options.size, else the model's fixed
// size, else rembg's 320 for U²-Net exports with dynamic dimensions.
func (p *Pipeline) inputSize() (w, h int) {
	if p.spec.Size > 0 {
		return p.spec.Size, p.spec.Size
	}
	shape := p.model.State().Inputs[0].Shape
	w, h = int(shape[3]), int(shape[2])
	if w <= 0 || h <= 0 {
		return 320, 320
	}
	return w, h
}

// Mask is Masks for the models that return one mask (all but
// u2net_cloth_seg without a garment class), with no extras.
func (p *Pipeline) Mask(ctx context.Context, img *image.NRGBA) (*image.Gray, Timings, error) {
	masks, t, err := p.Masks(ctx, img, Extras{})
	if err != nil {
		return nil, t, err
	}
	return masks[0], t, nil
}

// Masks predicts img's masks at img's size, as the model's rembg session
// does: one for salient-object models and SAM, one per garment class for
// u2net_cloth_seg (three, upper, lower and full body, unless ex names one).
func (p *Pipeline) Masks(ctx context.Context, img *image.NRGBA, ex Extras) ([]*image.Gray, Timings, error) {
	switch p.model.Config.Task {
	case TaskSAM:
		return p.samMasks(ctx, img, ex)
	case TaskCloth:
		return p.clothMasks(ctx, img, ex)
	}
	m, t, err := p.salient(ctx, img)
	if err != nil {
		return nil, t, err
	}
	return []*image.Gray{m}, t, nil
}

// run resizes and normalises img to the model's size and runs it,
// returning the output the options name, which must be [1, C, H, W].
func (p *Pipeline) run(ctx context.Context, img *image.NRGBA, t *Timings) (out inference.Tensor, err error) {
	start := time.Now()
	w, h := p.inputSize()
	resized := preprocess.ResizeRGB(img, w, h, p.spec.Filter)
	buf := p.buffer(3 * w * h)
	defer p.pool.Put(buf)
	if err := preprocess.PackNCHW(*buf, resized, p.spec.Norm); err != nil {
		return out, err
	}
	t.ResizePack = time.Since(start)

	start = time.Now()
	outs, err := p.model.Infer(ctx, []inference.Tensor{inference.NewTensor([]int64{1, 3, int64(h), int64(w)}, *buf)})
	if err != nil {
		return out, err
	}
	t.Inference = time.Since(start)
	if p.spec.Output >= len(outs) {
		return out, fmt.Errorf("model %s has %d outputs, its options name output %d", p.model.Config.Name, len(outs), p.spec.Output)
	}
	out = outs[p.spec.Output]
	if len(out.Shape) != 4 || out.Shape[0] < 1 || out.DType != inference.FP32 {
		return out, fmt.Errorf("model %s: output %v %v, want FP32 [1,C,H,W]", p.model.Config.Name, out.DType, out.Shape)
	}
	return out, nil
}

// salient is the rembg session of salient-object models: min-max normalise
// output 0's first channel (after a sigmoid for BiRefNet), scale to 8 bits
// and resize back with Lanczos.
func (p *Pipeline) salient(ctx context.Context, img *image.NRGBA) (*image.Gray, Timings, error) {
	var t Timings
	out, err := p.run(ctx, img, &t)
	if err != nil {
		return nil, t, err
	}
	mh, mw := int(out.Shape[2]), int(out.Shape[3])
	pred := inference.Values[float32](out)[:mh*mw] // channel 0 of the first image
	if p.spec.Sigmoid {
		pred = preprocess.Sigmoid(pred)
	}
	start := time.Now()
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

// ErrRefusedModel is a model name of rembg's that this server declines to
// serve, with the reason.
var ErrRefusedModel = errors.New("model not served")

// refused are rembg session names that cannot be served as rembg serves
// them, and why.
var refused = map[string]string{
	"withoutbg": "rembg's withoutbg sends the image to the withoutBG cloud API; imgserve makes no outbound connections",
}

// IsMattingTask tells the tasks whose models remove backgrounds.
func IsMattingTask(task string) bool {
	return task == models.TaskMatting || task == TaskCloth || task == TaskSAM
}

// Get returns the pipeline for a model name; "" picks the default: the first
// configured matting model that is ready.
func (r *Registry) Get(name string) (*Pipeline, error) {
	if name == "" {
		name = r.defaultModel()
	}
	if why, ok := refused[name]; ok {
		return nil, fmt.Errorf("%w: %s", ErrRefusedModel, why)
	}
	m, ok := r.models.Get(name)
	if !ok || !IsMattingTask(m.Config.Task) {
		return nil, fmt.Errorf("%w %q; matting models: %s", ErrUnknownModel, name, strings.Join(r.Names(), ", "))
	}
	if st := m.State(); st.Status != models.StatusReady {
		return nil, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, name, st.Status, st.Reason)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.cache[name]; ok {
		return p, nil
	}
	p, err := New(m, r.models)
	if err != nil {
		return nil, err
	}
	r.cache[name] = p
	return p, nil
}

// Names lists the configured matting models.
func (r *Registry) Names() []string {
	var out []string
	for _, m := range r.models.Models() {
		if IsMattingTask(m.Config.Task) {
			out = append(out, m.Config.Name)
		}
	}
	return out
}

// Default is the model an empty name picks.
func (r *Registry) Default() string { return r.defaultModel() }

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
