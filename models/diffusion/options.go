package diffusion

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/imgserve/imgserve/models"
)

// Model options of a diffusion-unet model, the name clients call the
// pipeline by. Paths are relative to the models folder.
const (
	OptTextEncoder     = "text_encoder"     // required: a diffusion-text-encoder model
	OptVAEDecoder      = "vae_decoder"      // required: a diffusion-vae-decoder model
	OptVAEEncoder      = "vae_encoder"      // image-to-image: a diffusion-vae-encoder model
	OptSafetyChecker   = "safety_checker"   // a diffusion-safety-checker model
	OptNSFWCheck       = "nsfw_check"       // auto, safety_checker, clip or both
	OptNSFWCLIPModel   = "nsfw_clip_model"  // the clip-vision model of the zero-shot check
	OptNSFWThreshold   = "nsfw_threshold"   // overrides the concepts file's threshold
	OptNSFWConcepts    = "nsfw_concepts"    // a concepts YAML file
	OptPromptBlocklist = "prompt_blocklist" // a blocklist file, one entry per line
	OptSampler         = "sampler"          // euler or euler_ancestral
	OptSchedulerConfig = "scheduler_config" // a diffusers scheduler_config.json
	OptTokenizerDir    = "tokenizer_dir"    // a diffusers tokenizer/ folder
	OptSteps           = "steps"            // default steps
	OptMaxSteps        = "max_steps"
	OptGuidanceScale   = "guidance_scale" // default; classifier-free guidance above 1
	OptStrength        = "strength"       // default image-to-image strength
	OptSize            = "size"           // default WIDTHxHEIGHT
	OptMaxSize         = "max_size"       // largest width or height
	OptMaxImages       = "max_images"     // largest n
	OptVAEScale        = "vae_scaling_factor"
)

// NSFW check modes.
const (
	CheckAuto          = "auto" // the safety checker when it is ready, else CLIP
	CheckSafetyChecker = "safety_checker"
	CheckCLIP          = "clip"
	CheckBoth          = "both"
)

var knownOptions = []string{OptTextEncoder, OptVAEDecoder, OptVAEEncoder, OptSafetyChecker, OptNSFWCheck,
	OptNSFWCLIPModel, OptNSFWThreshold, OptNSFWConcepts, OptPromptBlocklist, OptSampler, OptSchedulerConfig,
	OptTokenizerDir, OptSteps, OptMaxSteps, OptGuidanceScale, OptStrength, OptSize, OptMaxSize, OptMaxImages, OptVAEScale}

// DefaultCLIPModel is the served CLIP model the zero-shot check uses.
const DefaultCLIPModel = "clip-vit-b32"

// Limits are a pipeline's defaults and bounds for requests.
type Limits struct {
	DefaultSteps    int
	MaxSteps        int
	DefaultGuidance float64
	DefaultStrength float64
	DefaultWidth    int
	DefaultHeight   int
	MaxSide         int
	MaxImages       int
}

// Sizes are multiples of 64 pixels: latents are 1/8 of the image and
// SD's UNet halves them three times.
const sizeMultiple = 64

// settings are a pipeline's options, parsed and checked.
type settings struct {
	limits          Limits
	textEncoder     string
	vaeDecoder      string
	vaeEncoder      string
	safetyChecker   string
	nsfwCheck       string
	clipModel       string
	concepts        Concepts
	blocklist       *Blocklist
	sampler         string
	scheduler       SchedulerConfig
	tokenizerDir    string
	vaeScale        float32
	guidanceDefault bool // guidance_scale set by the operator
}

func parseSettings(reg *models.Registry, name string, opts map[string]string) (*settings, error) {
	fail := func(format string, args ...any) (*settings, error) {
		return nil, fmt.Errorf("%w: %s: "+format, append([]any{ErrConfig, name}, args...)...)
	}
	var unknown []string
	for k := range opts {
		if !slices.Contains(knownOptions, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fail("unknown options %s (known: %s)", strings.Join(unknown, ", "), strings.Join(knownOptions, ", "))
	}
	s := &settings{
		textEncoder:   opts[OptTextEncoder],
		vaeDecoder:    opts[OptVAEDecoder],
		vaeEncoder:    opts[OptVAEEncoder],
		safetyChecker: opts[OptSafetyChecker],
		nsfwCheck:     cmp.Or(opts[OptNSFWCheck], CheckAuto),
		clipModel:     cmp.Or(opts[OptNSFWCLIPModel], DefaultCLIPModel),
		vaeScale:      0.18215,
		concepts:      DefaultConcepts(),
		blocklist:     DefaultBlocklist(),
		scheduler:     DefaultSchedulerConfig(),
	}
	if s.textEncoder == "" || s.vaeDecoder == "" {
		return fail("options %s and %s must name the text encoder and VAE decoder models", OptTextEncoder, OptVAEDecoder)
	}
	if !slices.Contains([]string{CheckAuto, CheckSafetyChecker, CheckCLIP, CheckBoth}, s.nsfwCheck) {
		return fail("%s %q: want %s, %s, %s or %s", OptNSFWCheck, s.nsfwCheck, CheckAuto, CheckSafetyChecker, CheckCLIP, CheckBoth)
	}
	if (s.nsfwCheck == CheckSafetyChecker || s.nsfwCheck == CheckBoth) && s.safetyChecker == "" {
		return fail("%s %s needs the option %s", OptNSFWCheck, s.nsfwCheck, OptSafetyChecker)
	}
	readFile := func(opt string) ([]byte, error) {
		data, err := os.ReadFile(reg.ResolvePath(opts[opt]))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: option %s: %v", ErrConfig, name, opt, err)
		}
		return data, nil
	}
	if opts[OptSchedulerConfig] != "" {
		data, err := readFile(OptSchedulerConfig)
		if err != nil {
			return nil, err
		}
		if s.scheduler, err = ParseSchedulerConfig(data); err != nil {
			return fail("%s: %v", OptSchedulerConfig, err)
		}
	}
	if opts[OptNSFWConcepts] != "" {
		data, err := readFile(OptNSFWConcepts)
		if err != nil {
			return nil, err
		}
		if s.concepts, err = ParseConcepts(data); err != nil {
			return fail("%s: %v", OptNSFWConcepts, err)
		}
	}
	if opts[OptPromptBlocklist] != "" {
		data, err := readFile(OptPromptBlocklist)
		if err != nil {
			return nil, err
		}
		s.blocklist = ParseBlocklist(data)
	}
	if d := opts[OptTokenizerDir]; d != "" {
		s.tokenizerDir = reg.ResolvePath(d)
	}
	s.sampler = cmp.Or(opts[OptSampler], s.scheduler.DefaultSampler())
	if s.sampler != SamplerEuler && s.sampler != SamplerEulerAncestral {
		return fail("%s %q: want %s or %s", OptSampler, s.sampler, SamplerEuler, SamplerEulerAncestral)
	}

	// SD-Turbo's defaults: one step, no guidance, 512x512; up to 4 steps
	// (its model card's range) unless the operator says otherwise.
	l := Limits{DefaultSteps: 1, MaxSteps: 4, DefaultStrength: 0.5, DefaultWidth: 512, DefaultHeight: 512, MaxSide: 1024, MaxImages: 8}
	var err error
	intOpt := func(key string, dst *int, lo, hi int) {
		if v, ok := opts[key]; ok && err == nil {
			n, perr := strconv.Atoi(v)
			if perr != nil || n < lo || n > hi {
				err = fmt.Errorf("%w: %s: option %s %q: want an integer from %d to %d", ErrConfig, name, key, v, lo, hi)
				return
			}
			*dst = n
		}
	}
	floatOpt := func(key string, dst *float64, lo, hi float64) bool {
		v, ok := opts[key]
		if !ok || err != nil {
			return false
		}
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || math.IsNaN(f) || f < lo || f > hi {
			err = fmt.Errorf("%w: %s: option %s %q: want a number from %v to %v", ErrConfig, name, key, v, lo, hi)
			return false
		}
		*dst = f
		return true
	}
	intOpt(OptMaxSteps, &l.MaxSteps, 1, s.scheduler.MaxSteps())
	intOpt(OptSteps, &l.DefaultSteps, 1, l.MaxSteps)
	intOpt(OptMaxSize, &l.MaxSide, sizeMultiple, 4096)
	intOpt(OptMaxImages, &l.MaxImages, 1, 64)
	s.guidanceDefault = floatOpt(OptGuidanceScale, &l.DefaultGuidance, 0, 50)
	floatOpt(OptStrength, &l.DefaultStrength, 0.01, 1)
	threshold := s.concepts.Threshold
	floatOpt(OptNSFWThreshold, &threshold, 1e-6, 1)
	s.concepts.Threshold = threshold
	scale := float64(s.vaeScale)
	floatOpt(OptVAEScale, &scale, 1e-6, 100)
	s.vaeScale = float32(scale)
	if err != nil {
		return nil, err
	}
	if v := opts[OptSize]; v != "" {
		w, h, perr := ParseSize(v)
		if perr != nil || w > l.MaxSide || h > l.MaxSide {
			return fail("option %s %q: want WIDTHxHEIGHT, multiples of %d up to %d", OptSize, v, sizeMultiple, l.MaxSide)
		}
		l.DefaultWidth, l.DefaultHeight = w, h
	}
	s.limits = l
	return s, nil
}

// ParseSize reads "WIDTHxHEIGHT"; both must be positive multiples of 64.
func ParseSize(v string) (w, h int, err error) {
	ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(v)), "x")
	if ok {
		w, err = strconv.Atoi(ws)
		if err == nil {
			h, err = strconv.Atoi(hs)
		}
	}
	if !ok || err != nil || w < sizeMultiple || h < sizeMultiple || w%sizeMultiple != 0 || h%sizeMultiple != 0 {
		return 0, 0, fmt.Errorf("size %q: want WIDTHxHEIGHT in pixels, multiples of %d", v, sizeMultiple)
	}
	return w, h, nil
}
