package diffusion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// SchedulerConfig holds the fields of diffusers' scheduler_config.json that
// the Euler samplers read. A config written for another scheduler class
// (SD 1.5 ships PNDMScheduler's) works as diffusers' from_config does: the
// shared fields carry over and absent ones take the Euler classes'
// defaults.
type SchedulerConfig struct {
	ClassName         string    `json:"_class_name"`
	NumTrainTimesteps int       `json:"num_train_timesteps"`
	BetaStart         float64   `json:"beta_start"`
	BetaEnd           float64   `json:"beta_end"`
	BetaSchedule      string    `json:"beta_schedule"`
	TrainedBetas      []float64 `json:"trained_betas"`
	PredictionType    string    `json:"prediction_type"`
	TimestepSpacing   string    `json:"timestep_spacing"`
	StepsOffset       int       `json:"steps_offset"`
	InterpolationType string    `json:"interpolation_type"`
	TimestepType      string    `json:"timestep_type"`
	UseKarrasSigmas   bool      `json:"use_karras_sigmas"`
	RescaleZeroSNR    bool      `json:"rescale_betas_zero_snr"`
	FinalSigmasType   string    `json:"final_sigmas_type"`
}

// Sampler names, as requests and configurations spell them.
const (
	SamplerEuler          = "euler"
	SamplerEulerAncestral = "euler_ancestral"
)

// ErrSchedulerConfig wraps a scheduler configuration this package cannot
// follow exactly; it is refused rather than approximated.
var ErrSchedulerConfig = errors.New("unsupported scheduler config")

// ParseSchedulerConfig reads a scheduler_config.json. Absent fields take
// the defaults of diffusers' EulerDiscreteScheduler.__init__.
func ParseSchedulerConfig(data []byte) (SchedulerConfig, error) {
	c := SchedulerConfig{
		NumTrainTimesteps: 1000,
		BetaStart:         0.0001,
		BetaEnd:           0.02,
		BetaSchedule:      "linear",
		PredictionType:    "epsilon",
		TimestepSpacing:   "linspace",
		InterpolationType: "linear",
		TimestepType:      "discrete",
		FinalSigmasType:   "zero",
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return SchedulerConfig{}, fmt.Errorf("%w: %v", ErrSchedulerConfig, err)
	}
	return c, c.validate()
}

func (c SchedulerConfig) validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrSchedulerConfig}, args...)...)
	}
	switch {
	case c.NumTrainTimesteps < 2 || c.NumTrainTimesteps > 100000:
		return fail("num_train_timesteps %d", c.NumTrainTimesteps)
	case c.TrainedBetas == nil && !slices.Contains([]string{"linear", "scaled_linear", "squaredcos_cap_v2"}, c.BetaSchedule):
		return fail("beta_schedule %q (want linear, scaled_linear or squaredcos_cap_v2)", c.BetaSchedule)
	case c.TrainedBetas != nil && len(c.TrainedBetas) != c.NumTrainTimesteps:
		return fail("%d trained_betas for %d training timesteps", len(c.TrainedBetas), c.NumTrainTimesteps)
	case c.PredictionType != "epsilon" && c.PredictionType != "v_prediction":
		return fail("prediction_type %q (want epsilon or v_prediction)", c.PredictionType)
	case !slices.Contains([]string{"linspace", "leading", "trailing"}, c.TimestepSpacing):
		return fail("timestep_spacing %q (want linspace, leading or trailing)", c.TimestepSpacing)
	case c.InterpolationType != "linear":
		return fail("interpolation_type %q (only linear is implemented)", c.InterpolationType)
	case c.TimestepType != "discrete":
		return fail("timestep_type %q (only discrete is implemented)", c.TimestepType)
	case c.UseKarrasSigmas:
		return fail("use_karras_sigmas is not implemented")
	case c.RescaleZeroSNR:
		return fail("rescale_betas_zero_snr is not implemented")
	case c.FinalSigmasType != "zero":
		return fail("final_sigmas_type %q (only zero is implemented)", c.FinalSigmasType)
	}
	if c.TrainedBetas == nil && (c.BetaStart <= 0 || c.BetaEnd <= c.BetaStart || c.BetaEnd >= 1) {
		return fail("beta_start %v, beta_end %v", c.BetaStart, c.BetaEnd)
	}
	return nil
}

// DefaultSampler is the sampler the config's class names: Euler ancestral
// for EulerAncestralDiscreteScheduler, Euler for anything else.
func (c SchedulerConfig) DefaultSampler() string {
	if c.ClassName == "EulerAncestralDiscreteScheduler" {
		return SamplerEulerAncestral
	}
	return SamplerEuler
}

// trainingSigmas are sqrt((1-ᾱ)/ᾱ) at every training timestep, computed
// as diffusers' EulerDiscreteScheduler.__init__ does on torch's CPU: betas
// in float32 (torch.linspace's float32 arithmetic), their cumulative
// product accumulated in double and stored as float32 (ATen's cumprod),
// and the ratio and square root in float32.
func (c SchedulerConfig) trainingSigmas() []float64 {
	n := c.NumTrainTimesteps
	betas := make([]float32, n)
	switch {
	case c.TrainedBetas != nil:
		for i, b := range c.TrainedBetas {
			betas[i] = float32(b)
		}
	case c.BetaSchedule == "linear":
		betas = torchLinspace32(c.BetaStart, c.BetaEnd, n)
	case c.BetaSchedule == "scaled_linear":
		betas = torchLinspace32(math.Sqrt(c.BetaStart), math.Sqrt(c.BetaEnd), n)
		for i, b := range betas {
			betas[i] = b * b
		}
	case c.BetaSchedule == "squaredcos_cap_v2":
		// betas_for_alpha_bar: cosine transform, max_beta 0.999, in
		// Python floats, then a float32 tensor.
		alphaBar := func(t float64) float64 {
			v := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
			return v * v
		}
		for i := range betas {
			t1, t2 := float64(i)/float64(n), float64(i+1)/float64(n)
			betas[i] = float32(min(1-alphaBar(t2)/alphaBar(t1), 0.999))
		}
	}
	sigmas := make([]float64, n)
	cum := 1.0
	for i, b := range betas {
		cum *= float64(1 - b)
		acp := float32(cum)
		sigmas[i] = float64(float32(math.Sqrt(float64((1 - acp) / acp))))
	}
	return sigmas
}

// torchLinspace32 is torch.linspace(start, end, n, dtype=torch.float32) on
// the CPU: the step and every value in float32, the first half counted up
// from start and the second half down from end.
func torchLinspace32(start, end float64, n int) []float32 {
	s, e := float32(start), float32(end)
	step := (e - s) / float32(n-1)
	out := make([]float32, n)
	for i := range out {
		// The conversions keep the compiler from fusing the multiply-add,
		// which would round once instead of twice.
		if i < n/2 {
			out[i] = s + float32(step*float32(i))
		} else {
			out[i] = e - float32(step*float32(n-1-i))
		}
	}
	return out
}

// MaxSteps bounds num_inference_steps: more steps than training timesteps
// have no meaning.
func (c SchedulerConfig) MaxSteps() int { return c.NumTrainTimesteps }

// Schedule is the denoising plan of one request: the timesteps the UNet
// sees and the noise level before and after each step.
type Schedule struct {
	// Timesteps[i] is what the UNet is told at step i. With linspace
	// spacing they are fractional; a model with an integer timestep input
	// gets them truncated, as diffusers' ONNX pipelines do (np.array(...,
	// dtype=int64)).
	Timesteps []float64
	// Sigmas has one more entry than Timesteps: the noise level before
	// each step, then 0. Values are rounded to float32, as diffusers
	// stores them.
	Sigmas []float64
	// InitNoiseSigma scales unit Gaussian noise into the first latents.
	InitNoiseSigma float64

	vPrediction bool
	ancestral   bool
}

// NewSchedule is diffusers' set_timesteps for the Euler samplers.
func (c SchedulerConfig) NewSchedule(sampler string, steps int) (*Schedule, error) {
	if sampler != SamplerEuler && sampler != SamplerEulerAncestral {
		return nil, fmt.Errorf("unknown sampler %q (want %s or %s)", sampler, SamplerEuler, SamplerEulerAncestral)
	}
	n := c.NumTrainTimesteps
	if steps < 1 || steps > n {
		return nil, fmt.Errorf("steps must be 1 to %d, got %d", n, steps)
	}
	ts := make([]float64, 0, steps)
	switch c.TimestepSpacing {
	case "linspace":
		// np.linspace(0, n-1, steps, dtype=np.float32)[::-1]
		// np.linspace(0, n-1, steps, dtype=np.float32)[::-1]: numpy
		// computes i*step in float64, sets the last value to n-1 exactly,
		// then casts.
		for i := steps - 1; i >= 0; i-- {
			t := float64(n - 1)
			if i < steps-1 {
				t = float64(i) * (float64(n-1) / float64(steps-1))
			}
			ts = append(ts, float64(float32(t)))
		}
	case "leading":
		ratio := n / steps
		for i := steps - 1; i >= 0; i-- {
			ts = append(ts, float64(i*ratio+c.StepsOffset))
		}
	case "trailing":
		// np.arange(n, 0, -n/steps).round() - 1: the last element can be a
		// hair above 0 and survive, which numpy's arange decides by its
		// length, ceil(n / (n/steps)).
		ratio := float64(n) / float64(steps)
		count := int(math.Ceil(float64(n) / ratio))
		for i := range count {
			ts = append(ts, math.RoundToEven(float64(n)-float64(i)*ratio)-1)
		}
	}
	train := c.trainingSigmas()
	sigmas := make([]float64, len(ts)+1)
	for i, t := range ts {
		sigmas[i] = float64(float32(interp(t, train)))
	}
	s := &Schedule{Timesteps: ts, Sigmas: sigmas, vPrediction: c.PredictionType == "v_prediction", ancestral: sampler == SamplerEulerAncestral}
	s.InitNoiseSigma = slices.Max(sigmas)
	if c.TimestepSpacing == "leading" {
		s.InitNoiseSigma = float64(float32(math.Sqrt(s.InitNoiseSigma*s.InitNoiseSigma + 1)))
	}
	return s, nil
}

// interp is np.interp(t, arange(len(ys)), ys): linear between integer
// positions, clamped at both ends.
func interp(t float64, ys []float64) float64 {
	switch {
	case t <= 0:
		return ys[0]
	case t >= float64(len(ys)-1):
		return ys[len(ys)-1]
	}
	i := int(t)
	f := t - float64(i)
	return ys[i] + f*(ys[i+1]-ys[i])
}

// Steps is the number of UNet evaluations.
func (s *Schedule) Steps() int { return len(s.Timesteps) }

// InputScale is what scale_model_input divides the latents by at step i,
// inverted: the UNet's input is latents * InputScale(i).
func (s *Schedule) InputScale(i int) float32 {
	sig := float32(s.Sigmas[i])
	return 1 / float32(math.Sqrt(float64(sig*sig+1)))
}

// Ancestral reports whether Step needs fresh noise.
func (s *Schedule) Ancestral() bool { return s.ancestral }

// Truncate starts the schedule at step start, for image-to-image: the
// first start steps are skipped and the latents are noised to Sigmas[0]
// of what remains (diffusers' get_timesteps and set_begin_index).
func (s *Schedule) Truncate(start int) *Schedule {
	t := *s
	t.Timesteps = s.Timesteps[start:]
	t.Sigmas = s.Sigmas[start:]
	return &t
}

// Img2ImgStart is the step where image-to-image starts for a strength:
// diffusers' get_timesteps, t_start = steps - min(int(steps*strength),
// steps). It fails when no step would be left.
func Img2ImgStart(steps int, strength float64) (int, error) {
	if math.IsNaN(strength) || strength <= 0 || strength > 1 {
		return 0, fmt.Errorf("strength must be above 0 and at most 1, got %v", strength)
	}
	// int() truncates toward zero; the product is positive.
	init := min(int(float64(steps)*strength), steps)
	if init < 1 {
		return 0, fmt.Errorf("strength %v leaves no step of %d to run: steps x strength must be at least 1", strength, steps)
	}
	return steps - init, nil
}

// Step advances sample (one image's latents, in place) by step i, given
// the UNet's output for it. noise, for the ancestral sampler, is fresh
// unit Gaussian noise of the same length; Euler ignores it.
//
// The arithmetic is float32 in diffusers' order (the schedulers upcast the
// sample to float32 and step it there).
func (s *Schedule) Step(i int, modelOutput, sample, noise []float32) {
	sigma := float32(s.Sigmas[i])
	next := float32(s.Sigmas[i+1])
	dt, up := next-sigma, float32(0)
	if s.ancestral {
		// sigma_up = (to² (from² - to²) / from²) ** 0.5, sigma_down = (to² - up²) ** 0.5
		up = float32(math.Sqrt(float64(next * next * (sigma*sigma - next*next) / (sigma * sigma))))
		down := float32(math.Sqrt(float64(next*next - up*up)))
		dt = down - sigma
	}
	// v_prediction: x0 = out * (-sigma / sqrt(sigma²+1)) + sample / (sigma²+1)
	cOut := -sigma / float32(math.Sqrt(float64(sigma*sigma+1)))
	cSkip := 1 / (sigma*sigma + 1)
	for k, x := range sample {
		var x0 float32
		if s.vPrediction {
			x0 = modelOutput[k]*cOut + x*cSkip
		} else {
			x0 = x - sigma*modelOutput[k]
		}
		prev := x + (x-x0)/sigma*dt
		if s.ancestral {
			prev += noise[k] * up
		}
		sample[k] = prev
	}
}

// AddNoise is the Euler schedulers' add_noise for image-to-image: latents
// (in place) + noise * sigma, with sigma the noise level of the first step
// that runs.
func AddNoise(latents, noise []float32, sigma float64) []float32 {
	s := float32(sigma)
	for k := range latents {
		latents[k] += noise[k] * s
	}
	return latents
}
