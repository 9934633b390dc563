package caption

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
	"github.com/imgserve/imgserve/models/tokenizer"
	"github.com/imgserve/imgserve/preprocess"
)

// Request limits. Captions are one sentence: the export's generation config
// stops at 20 tokens.
const (
	DefaultMaxNewTokens = 16
	MaxNewTokensLimit   = 64
	MaxBeams            = 8
	// DefaultDecodeBatch is the decoder's rows per step when its options do
	// not set decode_batch_size.
	DefaultDecodeBatch = 16
)

var (
	// ErrUnknownModel means no caption model has that name.
	ErrUnknownModel = errors.New("unknown caption model")
	// ErrBadParams wraps out-of-range request parameters.
	ErrBadParams = errors.New("bad caption parameters")
)

// Params are one request's generation settings; zero values take the
// defaults (16 new tokens, greedy).
type Params struct {
	MaxNewTokens int
	NumBeams     int
}

func (p Params) withDefaults() (Params, error) {
	if p.MaxNewTokens == 0 {
		p.MaxNewTokens = DefaultMaxNewTokens
	}
	if p.NumBeams == 0 {
		p.NumBeams = 1
	}
	if p.MaxNewTokens < 1 || p.MaxNewTokens > MaxNewTokensLimit {
		return p, fmt.Errorf("%w: max_new_tokens must be 1 to %d", ErrBadParams, MaxNewTokensLimit)
	}
	if p.NumBeams < 1 || p.NumBeams > MaxBeams {
		return p, fmt.Errorf("%w: num_beams must be 1 to %d", ErrBadParams, MaxBeams)
	}
	return p, nil
}

// Registry finds caption pipelines by the encoder model's name. Pipelines
// whose encoders name the same decoder share its batcher, so their
// requests decode in the same batches.
type Registry struct {
	models  *models.Registry
	observe func(label string) inference.Observer

	mu       sync.Mutex
	pipes    map[string]*Pipeline
	batchers map[string]*batcher
}

// DecodeLabel is the name under which a decoder's decode steps are
// reported to the observer: rows per step, and one request per caption.
// The registry's own scheduler for the decoder sees each step as one
// request, so its batch-size metric is always 1.
func DecodeLabel(decoder string) string { return decoder + "/decode" }

// NewRegistry serves the caption models of reg. observe, which may be nil,
// gives each decoder's batcher an observer for DecodeLabel(decoder).
func NewRegistry(reg *models.Registry, observe func(label string) inference.Observer) *Registry {
	return &Registry{models: reg, observe: observe, pipes: map[string]*Pipeline{}, batchers: map[string]*batcher{}}
}

// Names lists the configured caption models (encoders).
func (r *Registry) Names() []string {
	var out []string
	for _, m := range r.models.Models() {
		if m.Config.Task == TaskEncoder {
			out = append(out, m.Config.Name)
		}
	}
	return out
}

// Get returns the pipeline of a caption model, once its encoder and decoder
// have loaded.
func (r *Registry) Get(name string) (*Pipeline, error) {
	enc, ok := r.models.Get(name)
	if !ok || enc.Config.Task != TaskEncoder {
		return nil, fmt.Errorf("%w %q; caption models: %s", ErrUnknownModel, name, strings.Join(r.Names(), ", "))
	}
	decName := enc.Config.Options["decoder"]
	dec, ok := r.models.Get(decName)
	if !ok || dec.Config.Task != TaskDecoder {
		return nil, fmt.Errorf("caption model %s: option decoder names %q, which is not a configured %s model", name, decName, TaskDecoder)
	}
	for _, m := range []*models.Model{enc, dec} {
		if st := m.State(); st.Status != models.StatusReady {
			return nil, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, m.Config.Name, st.Status, st.Reason)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pipes[name]; ok {
		return p, nil
	}
	b, err := r.batcher(dec)
	if err != nil {
		return nil, err
	}
	p, err := newPipeline(enc, b)
	if err != nil {
		return nil, err
	}
	r.pipes[name] = p
	return p, nil
}

// batcher returns the decoder's batcher. Called with mu held.
func (r *Registry) batcher(dec *models.Model) (*batcher, error) {
	if b, ok := r.batchers[dec.Config.Name]; ok {
		return b, nil
	}
	st := dec.State()
	sig, err := parseDecoder(st.Inputs, st.Outputs)
	if err != nil {
		return nil, fmt.Errorf("caption decoder %s: %w", dec.Config.Name, err)
	}
	device := r.models.Device()
	rows := DefaultDecodeBatch
	for _, key := range decodeBatchKeys(device) {
		v, ok := dec.Config.Options[key]
		if !ok {
			continue
		}
		if rows, err = strconv.Atoi(v); err != nil || rows < 1 || rows > 1024 {
			return nil, fmt.Errorf("caption decoder %s: %s %q: want 1 to 1024", dec.Config.Name, key, v)
		}
	}
	var obs inference.Observer = nopObserver{}
	if r.observe != nil {
		obs = r.observe(DecodeLabel(dec.Config.Name))
	}
	bc := dec.Config.BatchingFor(device)
	onDevice := device.CUDA
	switch v := dec.Config.Options["kv_cache"]; v {
	case "":
	case "device", "host":
		onDevice = v == "device"
	default:
		return nil, fmt.Errorf("caption decoder %s: kv_cache %q: want device or host", dec.Config.Name, v)
	}
	keepOut := make([]bool, len(st.Outputs))
	for l := range sig.layers {
		keepOut[sig.presentKey[l]], keepOut[sig.presentValue[l]] = true, true
	}
	b := &batcher{
		model:   dec,
		sig:     sig,
		maxRows: rows,
		join:    max(bc.MaxQueueDelay, 0),
		maxSeqs: max(bc.MaxQueueSize, 1),
		slots:   max(bc.Instances, 1),
		obs:     obs,
		wake:    make(chan struct{}, 1),

		onDevice: onDevice,
		keepOut:  keepOut,
	}
	r.batchers[dec.Config.Name] = b
	return b, nil
}

// decodeBatchKeys are the options that set the rows of one decode step, the
// later overriding the earlier: on a GPU, gpu_decode_batch_size overrides
// decode_batch_size.
func decodeBatchKeys(d inference.Device) []string {
	if d.CUDA {
		return []string{"decode_batch_size", "gpu_decode_batch_size"}
	}
	return []string{"decode_batch_size"}
}

// Pipeline captions images with one encoder and its decoder.
type Pipeline struct {
	name    string
	encoder *models.Model
	enc     encoderSig
	dec     *batcher
	assets  *Assets
	image   ImageConfig
}

func newPipeline(enc *models.Model, dec *batcher) (*Pipeline, error) {
	st := enc.State()
	es, err := parseEncoder(st.Inputs, st.Outputs)
	if err != nil {
		return nil, fmt.Errorf("caption encoder %s: %w", enc.Config.Name, err)
	}
	a, err := AssetsFor(enc.Config.Options["assets"])
	if err != nil {
		return nil, fmt.Errorf("caption model %s: %w", enc.Config.Name, err)
	}
	fail := func(format string, args ...any) (*Pipeline, error) {
		return nil, fmt.Errorf("caption model %s: "+format, append([]any{enc.Config.Name}, args...)...)
	}
	img := a.Image
	if (es.width > 0 && es.width != img.Width) || (es.height > 0 && es.height != img.Height) {
		return fail("the encoder takes %dx%d images, preprocessor_config.json resizes to %dx%d",
			es.width, es.height, img.Width, img.Height)
	}
	if es.hiddenSize > 0 && dec.sig.hiddenSize > 0 && es.hiddenSize != dec.sig.hiddenSize {
		return fail("the encoder outputs %d features, the decoder %s takes %d",
			es.hiddenSize, dec.model.Config.Name, dec.sig.hiddenSize)
	}
	for _, v := range []int{dec.sig.vocab, a.VocabSize} {
		if v > 0 && (a.EOS >= int64(v) || a.DecoderStart >= int64(v)) {
			return fail("token ids %d and %d do not fit a vocabulary of %d", a.DecoderStart, a.EOS, v)
		}
	}
	if a.VocabSize > 0 && dec.sig.vocab > 0 && a.VocabSize != dec.sig.vocab {
		return fail("config.json has a vocabulary of %d, the decoder %d", a.VocabSize, dec.sig.vocab)
	}
	return &Pipeline{name: enc.Config.Name, encoder: enc, enc: es, dec: dec, assets: a, image: img}, nil
}

// Name is the caption model's name.
func (p *Pipeline) Name() string { return p.name }

// Tokenizer is the caption model's tokenizer.
func (p *Pipeline) Tokenizer() *tokenizer.GPT2 { return p.assets.Tokenizer }

// Geometry is the decoder's cache layout as read from its signature.
func (p *Pipeline) Geometry() (layers, heads, headSize int) {
	return p.dec.sig.layers, p.dec.sig.heads, p.dec.sig.headSize
}

// Pixels is the encoder's input for img: resized to the model's size with
// the configured filter, rescaled and normalised, NCHW [1,3,H,W].
func (p *Pipeline) Pixels(img *image.NRGBA) inference.Tensor {
	w, h := p.image.Width, p.image.Height
	resized := preprocess.ResizeRGB(img, w, h, p.image.Filter)
	buf := make([]float32, 3*w*h)
	// PackNCHW fails only on a size mismatch, which cannot happen here.
	if err := preprocess.PackNCHW(buf, resized, p.image.Norm); err != nil {
		panic(err)
	}
	return inference.NewTensor([]int64{1, 3, int64(h), int64(w)}, buf)
}

// CheckLoad tells whether a caption asked for now would be refused for
// the encoder's expected queue wait (see inference.Scheduler.CheckLoad),
// before the image is decoded.
func (p *Pipeline) CheckLoad(ctx context.Context) error {
	if st := p.encoder.State(); st.Scheduler != nil {
		return st.Scheduler.CheckLoad(ctx)
	}
	return nil
}

// Encode runs the encoder on one image; the result is [1,S,E].
func (p *Pipeline) Encode(ctx context.Context, img *image.NRGBA) (inference.Tensor, error) {
	out, err := p.encoder.Infer(ctx, []inference.Tensor{p.Pixels(img)})
	if err != nil {
		return inference.Tensor{}, err
	}
	h := out[p.enc.hidden]
	if len(h.Shape) != 3 || h.Shape[0] != 1 {
		return inference.Tensor{}, fmt.Errorf("caption encoder %s returned %s of shape %v, want [1,S,E]", p.name, OutputHidden, h.Shape)
	}
	return h, nil
}

// Generate decodes the token ids of a caption from an encoder output
// [1,S,E], without the start token or EOS.
func (p *Pipeline) Generate(ctx context.Context, hidden inference.Tensor, params Params) ([]int64, error) {
	params, err := params.withDefaults()
	if err != nil {
		return nil, err
	}
	var s search = &greedy{eos: p.assets.EOS, max: params.MaxNewTokens}
	if params.NumBeams > 1 {
		s = newBeamSearch(params.NumBeams, p.assets.EOS, params.MaxNewTokens, p.assets.LengthPenalty, p.assets.EarlyStopping)
	}
	return p.dec.generate(ctx, hidden, p.assets.DecoderStart, s)
}

// Caption is one generated caption.
type Caption struct {
	Text   string
	Tokens []int64
	// Encode and Decode are the time spent in each stage.
	Encode, Decode time.Duration
}

// Caption describes img in one sentence.
func (p *Pipeline) Caption(ctx context.Context, img *image.NRGBA, params Params) (Caption, error) {
	if _, err := params.withDefaults(); err != nil {
		return Caption{}, err
	}
	start := time.Now()
	hidden, err := p.Encode(ctx, img)
	if err != nil {
		return Caption{}, err
	}
	encoded := time.Now()
	toks, err := p.Generate(ctx, hidden, params)
	if err != nil {
		return Caption{}, err
	}
	return Caption{Text: p.Text(toks), Tokens: toks, Encode: encoded.Sub(start), Decode: time.Since(encoded)}, nil
}

// Text decodes caption tokens as transformers' image-to-text pipeline does:
// special tokens skipped, tokenisation spaces cleaned up as the tokenizer's
// config says, and trimmed.
func (p *Pipeline) Text(ids []int64) string {
	s := p.assets.Tokenizer.DecodeInt64(ids, tokenizer.DecodeOptions{SkipSpecialTokens: true, CleanUpTokenizationSpaces: p.assets.CleanUp})
	return strings.TrimSpace(s)
}
