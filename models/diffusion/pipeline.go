package diffusion

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/clip"
	"github.com/imgserve/imgserve/models/tokenizer"
	"github.com/imgserve/imgserve/preprocess"
)

// Errors a caller maps to responses; test with errors.Is.
var (
	ErrUnknownModel = errors.New("unknown image generation model")
	ErrBadParams    = errors.New("bad image generation parameters")
	// ErrPromptBlocked: the prompt matched the blocklist.
	ErrPromptBlocked = errors.New("prompt refused")
	// ErrUnsafeInput: an uploaded image failed the NSFW check.
	ErrUnsafeInput = errors.New("uploaded image refused")
	// ErrNoSafetyCheck: no NSFW check can run, so no image may be made.
	ErrNoSafetyCheck = errors.New("no NSFW check available")
	// ErrConfig: the pipeline's options are wrong.
	ErrConfig = errors.New("image generation model misconfigured")
	// ErrModelOutput: a component returned something unusable.
	ErrModelOutput = errors.New("bad output from an image generation model")
)

// Registry finds pipelines by the name of their UNet model.
type Registry struct {
	models *models.Registry

	mu    sync.Mutex
	pipes map[string]*Pipeline
}

// NewRegistry serves the diffusion pipelines of reg.
func NewRegistry(reg *models.Registry) *Registry {
	return &Registry{models: reg, pipes: map[string]*Pipeline{}}
}

// Names lists the configured pipelines (their UNet models).
func (r *Registry) Names() []string {
	var out []string
	for _, m := range r.models.Models() {
		if m.Config.Task == TaskUNet {
			out = append(out, m.Config.Name)
		}
	}
	return out
}

// Default is the pipeline a request without a model gets: the first whose
// UNet is ready, else the first configured.
func (r *Registry) Default() string {
	names := r.Names()
	for _, n := range names {
		if m, _ := r.models.Get(n); m.State().Status == models.StatusReady {
			return n
		}
	}
	if len(names) > 0 {
		return names[0]
	}
	return ""
}

// Get returns a pipeline once its UNet, text encoder and VAE decoder have
// loaded. Optional parts (the VAE encoder, the safety checker) are looked
// up on each request, so they may load or be missing independently.
func (r *Registry) Get(name string) (*Pipeline, error) {
	unet, ok := r.models.Get(name)
	if !ok || unet.Config.Task != TaskUNet {
		return nil, fmt.Errorf("%w %q; image generation models: %s", ErrUnknownModel, name, strings.Join(r.Names(), ", "))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pipes[name]; ok {
		return p, nil
	}
	p, err := newPipeline(r.models, unet)
	if err != nil {
		return nil, err
	}
	r.pipes[name] = p
	return p, nil
}

// Pipeline generates images with one UNet and its companions.
type Pipeline struct {
	name    string
	set     *settings
	unet    *models.Model
	text    *models.Model
	decoder *models.Model
	encoder *models.Model // nil: no image-to-image
	tok     *tokenizer.CLIP
	guard   *Guard

	usig unetSig
	tsig textEncoderSig
	dsig vaeDecoderSig
}

func newPipeline(reg *models.Registry, unet *models.Model) (*Pipeline, error) {
	name := unet.Config.Name
	set, err := parseSettings(reg, name, unet.Config.Options)
	if err != nil {
		return nil, err
	}
	component := func(opt, modelName, task string) (*models.Model, error) {
		m, ok := reg.Get(modelName)
		if !ok || m.Config.Task != task {
			return nil, fmt.Errorf("%w: %s: option %s names %q, which is not a configured %s model", ErrConfig, name, opt, modelName, task)
		}
		return m, nil
	}
	p := &Pipeline{name: name, set: set, unet: unet}
	if p.text, err = component(OptTextEncoder, set.textEncoder, TaskTextEncoder); err != nil {
		return nil, err
	}
	if p.decoder, err = component(OptVAEDecoder, set.vaeDecoder, TaskVAEDecoder); err != nil {
		return nil, err
	}
	if set.vaeEncoder != "" {
		if p.encoder, err = component(OptVAEEncoder, set.vaeEncoder, TaskVAEEncoder); err != nil {
			return nil, err
		}
	}
	p.guard = &Guard{mode: set.nsfwCheck, concepts: set.concepts, block: set.blocklist}
	if set.safetyChecker != "" {
		if p.guard.checker, err = component(OptSafetyChecker, set.safetyChecker, TaskSafetyChecker); err != nil {
			return nil, err
		}
	}
	if p.guard.clip, p.guard.clipErr = clip.Resolve(reg, set.clipModel); p.guard.clipErr != nil && set.nsfwCheck != CheckSafetyChecker {
		if set.nsfwCheck == CheckCLIP || set.nsfwCheck == CheckBoth || set.safetyChecker == "" {
			return nil, fmt.Errorf("%w: %s: the NSFW check needs the CLIP model %q: %v", ErrConfig, name, set.clipModel, p.guard.clipErr)
		}
	}
	for _, m := range []*models.Model{unet, p.text, p.decoder} {
		if st := m.State(); st.Status != models.StatusReady {
			return nil, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, m.Config.Name, st.Status, st.Reason)
		}
	}
	if p.usig, err = parseUNet(unet.State().Inputs, unet.State().Outputs); err != nil {
		return nil, err
	}
	if p.tsig, err = parseTextEncoder(p.text.State().Inputs, p.text.State().Outputs); err != nil {
		return nil, err
	}
	if p.dsig, err = parseVAEDecoder(p.decoder.State().Inputs, p.decoder.State().Outputs); err != nil {
		return nil, err
	}
	if d, u := p.tsig.hiddenSize, p.usig.hiddenSize; d > 0 && u > 0 && d != u {
		return nil, fmt.Errorf("%w: %s: the text encoder %s outputs %d features, the UNet takes %d", ErrConfig, name, p.text.Config.Name, d, u)
	}
	if p.tok, err = LoadTokenizer(set.tokenizerDir); err != nil {
		return nil, fmt.Errorf("%w: %s: tokenizer: %v", ErrConfig, name, err)
	}
	return p, nil
}

// Name is the pipeline's (its UNet's) name.
func (p *Pipeline) Name() string { return p.name }

// Limits are the pipeline's defaults and bounds.
func (p *Pipeline) Limits() Limits { return p.set.limits }

// Guard is the pipeline's NSFW guard.
func (p *Pipeline) Guard() *Guard { return p.guard }

// Tokenizer is the text encoder's tokenizer.
func (p *Pipeline) Tokenizer() *tokenizer.CLIP { return p.tok }

// Request is one generation. Zero values take the pipeline's defaults.
type Request struct {
	Prompt         string
	NegativePrompt string
	N              int
	Width, Height  int
	Steps          int
	// Guidance is the classifier-free guidance scale; nil takes the
	// default. Above 1, each step runs the UNet on the negative prompt
	// too, batched with the prompt as one run of twice the rows.
	Guidance *float64
	// Seed makes the request reproducible; nil draws one. Image i uses
	// Seed+i (mod 2^32).
	Seed *uint32
	// Image, for image-to-image, is the picture to start from. It is
	// generated at Width x Height, or without them at its aspect ratio
	// scaled to the default size's area, and then comes back at its own
	// size. Mask, optional, marks with 255 the pixels that may change
	// (soft values blend); the result then has Image's size and every
	// pixel outside the mask is Image's.
	Image    *image.NRGBA
	Mask     *image.Gray
	Strength float64
	// Progress, when set, is called after each denoising step.
	Progress func(step, steps int)
}

// Result holds a request's images in order, withheld ones included.
type Result struct {
	Images []Output
	// Width and Height are the returned images' size.
	Width, Height int
	Steps         int // UNet evaluations per image
	Timing        Timing
}

// Output is one image of a Result.
type Output struct {
	Index int
	Seed  uint32
	// Image is nil when the NSFW check withheld it.
	Image    *image.NRGBA
	Withheld bool
}

// Timing is where a request's time went.
type Timing struct {
	Text, Encode, Denoise, Decode, Check time.Duration
}

// plan is a request after defaults and checks.
type plan struct {
	n, width, height int
	steps            int // as asked, before image-to-image truncation
	guidance         float64
	cfg              bool
	seed             uint32
	strength         float64
	sched            *Schedule
}

func (p *Pipeline) plan(req *Request, rnd func() uint32) (*plan, error) {
	l := p.set.limits
	bad := func(format string, args ...any) (*plan, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrBadParams}, args...)...)
	}
	pl := &plan{n: req.N, width: req.Width, height: req.Height, steps: req.Steps, guidance: l.DefaultGuidance, strength: req.Strength}
	if strings.TrimSpace(req.Prompt) == "" {
		return bad("prompt is empty")
	}
	if pl.n == 0 {
		pl.n = 1
	}
	if pl.n < 1 || pl.n > l.MaxImages {
		return bad("n must be 1 to %d", l.MaxImages)
	}
	if req.Guidance != nil {
		pl.guidance = *req.Guidance
	}
	if math.IsNaN(pl.guidance) || pl.guidance < 0 || pl.guidance > 50 {
		return bad("guidance_scale must be 0 to 50")
	}
	pl.cfg = pl.guidance > 1 // diffusers: do_classifier_free_guidance
	if req.NegativePrompt != "" && !pl.cfg {
		return bad("negative_prompt needs guidance_scale above 1 (it is %v)", pl.guidance)
	}
	if (pl.width == 0) != (pl.height == 0) {
		return bad("give both width and height, or neither")
	}
	if pl.width == 0 {
		pl.width, pl.height = l.DefaultWidth, l.DefaultHeight
		if req.Image != nil {
			pl.width, pl.height = fitArea(req.Image.Rect.Dx(), req.Image.Rect.Dy(), l.DefaultWidth*l.DefaultHeight, l.MaxSide)
		}
	}
	if pl.width%sizeMultiple != 0 || pl.height%sizeMultiple != 0 || pl.width < sizeMultiple || pl.height < sizeMultiple ||
		pl.width > l.MaxSide || pl.height > l.MaxSide {
		return bad("size %dx%d: width and height must be multiples of %d from %d to %d", pl.width, pl.height, sizeMultiple, sizeMultiple, l.MaxSide)
	}
	if req.Mask != nil && req.Image == nil {
		return bad("a mask needs an image")
	}
	if req.Image != nil {
		if p.encoder == nil {
			return bad("model %s cannot edit images: it has no %s configured", p.name, OptVAEEncoder)
		}
		if pl.strength == 0 {
			pl.strength = l.DefaultStrength
		}
		if req.Mask != nil && !req.Mask.Rect.Size().Eq(req.Image.Rect.Size()) {
			return bad("the mask is %dx%d, the image %dx%d: they must be the same size",
				req.Mask.Rect.Dx(), req.Mask.Rect.Dy(), req.Image.Rect.Dx(), req.Image.Rect.Dy())
		}
	} else if pl.strength != 0 {
		return bad("strength applies to image edits only")
	}
	if pl.steps == 0 {
		pl.steps = l.DefaultSteps
		if req.Image != nil {
			// Keep the default number of steps that actually run:
			// image-to-image runs int(steps * strength) of them.
			pl.steps = min(l.MaxSteps, int(math.Ceil(float64(l.DefaultSteps)/pl.strength-1e-9)))
		}
	}
	if pl.steps < 1 || pl.steps > l.MaxSteps {
		return bad("steps must be 1 to %d", l.MaxSteps)
	}
	sched, err := p.set.scheduler.NewSchedule(p.set.sampler, pl.steps)
	if err != nil {
		return bad("%v", err)
	}
	if req.Image != nil {
		start, err := Img2ImgStart(sched.Steps(), pl.strength)
		if err != nil {
			return bad("%v", err)
		}
		sched = sched.Truncate(start)
	}
	pl.sched = sched
	if req.Seed != nil {
		pl.seed = *req.Seed
	} else {
		pl.seed = rnd()
	}
	return pl, nil
}

// fitArea scales w x h to about area pixels, in multiples of 64, within
// maxSide: the size an edit without an explicit size is generated at.
func fitArea(w, h, area, maxSide int) (int, int) {
	k := math.Sqrt(float64(area) / float64(w*h))
	round := func(v float64) int {
		return min(maxSide/sizeMultiple*sizeMultiple, max(sizeMultiple, int(math.Round(v/sizeMultiple))*sizeMultiple))
	}
	return round(float64(w) * k), round(float64(h) * k)
}

// Check refuses, without running anything, a request that Generate would
// refuse before its first model run: bad parameters, a blocked prompt, no
// NSFW check available, no image-to-image for this model. For a request
// it accepts it returns the memory the request's images will hold at
// their peak, for the caller to reserve (server/admission) before
// Generate.
func (p *Pipeline) Check(req *Request) (memory int64, err error) {
	pl, err := p.plan(req, func() uint32 { return 0 })
	if err != nil {
		return 0, err
	}
	if err := p.guard.CheckPrompt(req.Prompt); err != nil {
		return 0, err
	}
	if _, _, err := p.guard.Which(); err != nil {
		return 0, err
	}
	px := int64(pl.width) * int64(pl.height)
	if req.Image != nil {
		if st := p.encoder.State(); st.Status != models.StatusReady {
			return 0, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, p.encoder.Config.Name, st.Status, st.Reason)
		}
		// Edits come back at the upload's size.
		px = max(px, int64(req.Image.Rect.Dx())*int64(req.Image.Rect.Dy()))
	}
	return int64(pl.n) * px * bytesPerPixel, nil
}

// bytesPerPixel is what one generated image holds per pixel at its peak:
// the VAE decoder's float output (12 bytes), the image (4), a resized or
// composited edit (4) and the encoded response, PNG and base64 (up to
// about 10); the latents are 1/64 of the pixels and count for little.
const bytesPerPixel = 32

// Generate runs one request. The prompt is checked against the blocklist
// and an uploaded image against the NSFW guard before any compute; every
// generated image is checked before it is returned, and a flagged one
// comes back as Withheld with no pixels.
func (p *Pipeline) Generate(ctx context.Context, req *Request, rnd func() uint32) (*Result, error) {
	pl, err := p.plan(req, rnd)
	if err != nil {
		return nil, err
	}
	if err := p.guard.CheckPrompt(req.Prompt); err != nil {
		return nil, err
	}
	// Fail before the expensive part when no check could run afterwards.
	if _, _, err := p.guard.Which(); err != nil {
		return nil, err
	}
	var encoder *models.Model
	if req.Image != nil {
		encoder = p.encoder
		if st := encoder.State(); st.Status != models.StatusReady {
			return nil, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, encoder.Config.Name, st.Status, st.Reason)
		}
		flags, err := p.guard.Check(ctx, []*image.NRGBA{req.Image})
		if err != nil {
			return nil, err
		}
		if flags[0] {
			return nil, fmt.Errorf("%w: the NSFW check flagged it", ErrUnsafeInput)
		}
	}
	res := &Result{Width: pl.width, Height: pl.height, Steps: pl.sched.Steps()}

	start := time.Now()
	text, err := p.encodeText(ctx, req.Prompt, req.NegativePrompt, pl.cfg)
	if err != nil {
		return nil, err
	}
	res.Timing.Text = time.Since(start)

	h, w := pl.height/vaeDownsample, pl.width/vaeDownsample
	per := latentChannels * h * w
	latents := make([][]float32, pl.n)
	noise := make([]*Noise, pl.n)
	for i := range latents {
		noise[i] = NewNoise(pl.seed + uint32(i))
		latents[i] = make([]float32, per)
	}
	start = time.Now()
	if req.Image != nil {
		if err := p.initFromImage(ctx, encoder, req.Image, pl, latents, noise); err != nil {
			return nil, err
		}
		res.Timing.Encode = time.Since(start)
	} else {
		s := float32(pl.sched.InitNoiseSigma)
		for i, l := range latents {
			noise[i].Fill(l)
			for k := range l {
				l[k] *= s
			}
		}
	}

	start = time.Now()
	if err := p.denoise(ctx, pl, latents, noise, text, req.Progress); err != nil {
		return nil, err
	}
	res.Timing.Denoise = time.Since(start)

	start = time.Now()
	imgs, err := p.decode(ctx, latents, w, h)
	if err != nil {
		return nil, err
	}
	switch {
	case req.Mask != nil:
		for i, g := range imgs {
			imgs[i] = Composite(req.Image, g, req.Mask)
		}
	case req.Image != nil && req.Width == 0 && !req.Image.Rect.Size().Eq(image.Pt(pl.width, pl.height)):
		// An edit comes back at the upload's size unless a size was asked.
		for i, g := range imgs {
			imgs[i] = preprocess.ResizeRGB(g, req.Image.Rect.Dx(), req.Image.Rect.Dy(), preprocess.Lanczos3)
		}
	}
	if len(imgs) > 0 {
		res.Width, res.Height = imgs[0].Rect.Dx(), imgs[0].Rect.Dy()
	}
	res.Timing.Decode = time.Since(start)

	start = time.Now()
	flags, err := p.guard.Check(ctx, imgs)
	if err != nil {
		return nil, err
	}
	res.Timing.Check = time.Since(start)
	for i, img := range imgs {
		o := Output{Index: i, Seed: pl.seed + uint32(i)}
		if flags[i] {
			o.Withheld = true
		} else {
			o.Image = img
		}
		res.Images = append(res.Images, o)
	}
	return res, nil
}

// textStates are a request's text encoder outputs, each [seq*dim].
type textStates struct {
	cond, uncond []float32 // uncond only with guidance
	seq, dim     int64
}

// encodeText returns the prompt's hidden states and, with guidance, the
// negative prompt's, from one text encoder run of one or two rows.
func (p *Pipeline) encodeText(ctx context.Context, prompt, negative string, cfg bool) (*textStates, error) {
	texts := []string{prompt}
	if cfg {
		texts = []string{negative, prompt}
	}
	seq := p.tsig.seqLen
	if seq == 0 {
		seq = tokenizer.CLIPContextLength
	}
	ids, _, width := p.tok.EncodeBatchFlat(texts, seq)
	rows := make([][]float32, len(texts))
	ts := &textStates{seq: int64(width)}
	err := p.inferRows(ctx, p.text, len(texts), func(lo, hi int) []inference.Tensor {
		return []inference.Tensor{idsTensor(p.tsig.idsType, []int64{int64(hi - lo), int64(width)}, ids[lo*width:hi*width])}
	}, func(lo, hi int, out []inference.Tensor) error {
		t := out[p.tsig.hidden]
		if len(t.Shape) != 3 || t.Shape[0] != int64(hi-lo) || t.Shape[1] != int64(width) ||
			(p.usig.hiddenSize > 0 && t.Shape[2] != int64(p.usig.hiddenSize)) {
			return fmt.Errorf("%w: text encoder %s returned %s of shape %v", ErrModelOutput, p.text.Config.Name, outputHidden, t.Shape)
		}
		v, err := floats(t)
		if err != nil {
			return err
		}
		if !finite(v) {
			return fmt.Errorf("%w: text encoder %s returned values that are not finite", ErrModelOutput, p.text.Config.Name)
		}
		n := len(v) / (hi - lo)
		for r := lo; r < hi; r++ {
			rows[r] = v[(r-lo)*n : (r-lo+1)*n]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ts.cond = rows[len(rows)-1]
	ts.dim = int64(len(ts.cond)) / ts.seq
	if cfg {
		ts.uncond = rows[0]
	}
	return ts, nil
}

// inferRows runs rows through m in chunks of at most its batch size, all
// chunks at once (the scheduler may batch them with other requests'), and
// hands each chunk's outputs to take. The first error cancels the rest.
func (p *Pipeline) inferRows(ctx context.Context, m *models.Model, rows int,
	build func(lo, hi int) []inference.Tensor, take func(lo, hi int, out []inference.Tensor) error) error {
	size := max(1, m.State().Batching.MaxBatchSize)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		once sync.Once
		err  error
	)
	for lo := 0; lo < rows; lo += size {
		hi := min(rows, lo+size)
		wg.Go(func() {
			out, e := m.Infer(ctx, build(lo, hi))
			if e == nil {
				e = take(lo, hi, out)
			}
			if e != nil {
				once.Do(func() { err = e })
				cancel()
			}
		})
	}
	wg.Wait()
	return err
}

// denoise runs the schedule on every image's latents, in place. Each step
// is one UNet request per chunk of rows: the images (and, with guidance,
// the same images again against the negative prompt, first, as diffusers
// orders them), so n images are one batch where the model allows it, and
// concurrent requests at the same step and size join them in the
// scheduler.
func (p *Pipeline) denoise(ctx context.Context, pl *plan, latents [][]float32, noise []*Noise,
	text *textStates, progress func(int, int)) error {
	n := len(latents)
	per := len(latents[0])
	h, w := int64(pl.height/vaeDownsample), int64(pl.width/vaeDownsample)
	branches := 1
	if pl.cfg {
		branches = 2
	}
	rows := n * branches
	// The hidden states of a chunk are the same at every step: build them
	// once per chunk.
	hidden := map[[2]int]inference.Tensor{}
	var hmu sync.Mutex
	hiddenFor := func(lo, hi int) inference.Tensor {
		hmu.Lock()
		defer hmu.Unlock()
		if t, ok := hidden[[2]int{lo, hi}]; ok {
			return t
		}
		v := make([]float32, 0, (hi-lo)*len(text.cond))
		for r := lo; r < hi; r++ {
			if pl.cfg && r < n {
				v = append(v, text.uncond...)
			} else {
				v = append(v, text.cond...)
			}
		}
		t := floatTensor(p.usig.hiddenType, []int64{int64(hi - lo), text.seq, text.dim}, v)
		hidden[[2]int{lo, hi}] = t
		return t
	}
	eps := make([][]float32, rows)
	for i := range pl.sched.Steps() {
		scale := pl.sched.InputScale(i)
		ts := timestepTensor(p.usig.timestepType, p.usig.timestepShape, pl.sched.Timesteps[i])
		err := p.inferRows(ctx, p.unet, rows, func(lo, hi int) []inference.Tensor {
			x := make([]float32, 0, (hi-lo)*per)
			for r := lo; r < hi; r++ {
				for _, v := range latents[r%n] {
					x = append(x, v*scale)
				}
			}
			in := make([]inference.Tensor, 3)
			in[p.usig.sample] = floatTensor(p.usig.sampleType, []int64{int64(hi - lo), latentChannels, h, w}, x)
			in[p.usig.timestep] = ts
			in[p.usig.hidden] = hiddenFor(lo, hi)
			return in
		}, func(lo, hi int, out []inference.Tensor) error {
			t := out[p.usig.out]
			if len(t.Shape) != 4 || t.Shape[0] != int64(hi-lo) || t.Elements() != int64((hi-lo)*per) {
				return fmt.Errorf("%w: unet %s returned %s of shape %v", ErrModelOutput, p.unet.Config.Name, outputSample, t.Shape)
			}
			v, err := floats(t)
			if err != nil {
				return err
			}
			for r := lo; r < hi; r++ {
				eps[r] = v[(r-lo)*per : (r-lo+1)*per]
			}
			return nil
		})
		if err != nil {
			return err
		}
		var stepNoise []float32
		if pl.sched.Ancestral() {
			stepNoise = make([]float32, per)
		}
		for img := range n {
			e := eps[img]
			if pl.cfg {
				// noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
				u, c := eps[img], eps[n+img]
				e = make([]float32, per)
				g := float32(pl.guidance)
				for k := range e {
					e[k] = u[k] + g*(c[k]-u[k])
				}
			}
			if stepNoise != nil {
				noise[img].Fill(stepNoise)
			}
			pl.sched.Step(i, e, latents[img], stepNoise)
			if !finite(latents[img]) {
				return fmt.Errorf("%w: the latents of image %d are not finite after step %d", ErrModelOutput, img, i+1)
			}
		}
		if progress != nil {
			progress(i+1, pl.sched.Steps())
		}
	}
	return nil
}

// initFromImage fills the latents for image-to-image: the image, resized
// and scaled to [-1, 1], through the VAE encoder (sampled per image from
// its distribution when the export returns one), times the scaling factor,
// noised to the first remaining step's sigma.
func (p *Pipeline) initFromImage(ctx context.Context, enc *models.Model, img *image.NRGBA, pl *plan, latents [][]float32, noise []*Noise) error {
	st := enc.State()
	esig, err := parseVAEEncoder(st.Inputs, st.Outputs)
	if err != nil {
		return err
	}
	resized := img
	if img.Rect.Dx() != pl.width || img.Rect.Dy() != pl.height {
		// diffusers' VaeImageProcessor resizes with PIL's Lanczos.
		resized = preprocess.ResizeRGB(img, pl.width, pl.height, preprocess.Lanczos3)
	}
	px := make([]float32, 3*pl.width*pl.height)
	if err := preprocess.PackNCHW(px, resized, preprocess.NormHalf); err != nil {
		return err
	}
	out, err := enc.Infer(ctx, []inference.Tensor{floatTensor(esig.inType, []int64{1, 3, int64(pl.height), int64(pl.width)}, px)})
	if err != nil {
		return err
	}
	t := out[esig.out]
	per := len(latents[0])
	want := int64(per)
	if esig.parameters {
		want *= 2
	}
	if t.Elements() != want || len(t.Shape) != 4 || t.Shape[0] != 1 {
		return fmt.Errorf("%w: vae encoder %s returned shape %v for a %dx%d image", ErrModelOutput, enc.Config.Name, t.Shape, pl.width, pl.height)
	}
	v, err := floats(t)
	if err != nil {
		return err
	}
	mean := v[:per]
	scale := p.set.vaeScale
	sigma := pl.sched.Sigmas[0]
	buf := make([]float32, per)
	for i, l := range latents {
		copy(l, mean)
		// The sample's noise is drawn even when the export has sampled
		// already, so the noise that follows is the same for every export
		// of a model.
		noise[i].Fill(buf)
		if esig.parameters {
			// DiagonalGaussianDistribution.sample: mean + exp(0.5 *
			// clamp(logvar, -30, 20)) * noise.
			for k := range l {
				lv := min(max(v[per+k], -30), 20)
				l[k] += float32(math.Exp(0.5*float64(lv))) * buf[k]
			}
		}
		for k := range l {
			l[k] *= scale
		}
		noise[i].Fill(buf)
		AddNoise(l, buf, sigma)
	}
	return nil
}

// decode turns latents into images: latents / scaling factor through the
// VAE decoder, then (x/2 + 0.5) clamped to [0, 1] and rounded to 8 bits,
// as diffusers' image processor does.
func (p *Pipeline) decode(ctx context.Context, latents [][]float32, w, h int) ([]*image.NRGBA, error) {
	per := len(latents[0])
	inv := 1 / p.set.vaeScale
	imgs := make([]*image.NRGBA, len(latents))
	W, H := w*vaeDownsample, h*vaeDownsample
	err := p.inferRows(ctx, p.decoder, len(latents), func(lo, hi int) []inference.Tensor {
		x := make([]float32, 0, (hi-lo)*per)
		for r := lo; r < hi; r++ {
			for _, v := range latents[r] {
				x = append(x, v*inv)
			}
		}
		return []inference.Tensor{floatTensor(p.dsig.inType, []int64{int64(hi - lo), latentChannels, int64(h), int64(w)}, x)}
	}, func(lo, hi int, out []inference.Tensor) error {
		t := out[p.dsig.out]
		if len(t.Shape) != 4 || t.Shape[0] != int64(hi-lo) || t.Shape[1] != 3 || t.Shape[2] != int64(H) || t.Shape[3] != int64(W) {
			return fmt.Errorf("%w: vae decoder %s returned shape %v, want [%d 3 %d %d]", ErrModelOutput, p.decoder.Config.Name, t.Shape, hi-lo, H, W)
		}
		v, err := floats(t)
		if err != nil {
			return err
		}
		for r := lo; r < hi; r++ {
			imgs[r] = toImage(v[(r-lo)*3*W*H:(r-lo+1)*3*W*H], W, H)
		}
		return nil
	})
	return imgs, err
}

// toImage converts planar RGB in [-1, 1] to an opaque image.
func toImage(v []float32, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	plane := w * h
	for y := range h {
		row := img.Pix[y*img.Stride:]
		for x := range w {
			for c := range 3 {
				f := v[c*plane+y*w+x]/2 + 0.5
				switch {
				case f > 0 && f <= 1: // not NaN
					row[4*x+c] = byte(math.RoundToEven(float64(f * 255)))
				case f > 1:
					row[4*x+c] = 255
				}
			}
			row[4*x+3] = 255
		}
	}
	return img
}
