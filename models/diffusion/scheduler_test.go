package diffusion

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// The fixture is written by scripts/dev/diffusers-reference/schedulers.py,
// a numpy transcription of diffusers' EulerDiscreteScheduler,
// EulerAncestralDiscreteScheduler and img2img get_timesteps.
type fixture struct {
	TrainingSigmasSD struct {
		First, T999, T500 float64
	} `json:"training_sigmas_sd"`
	Cases []struct {
		Name           string          `json:"name"`
		Config         json.RawMessage `json:"config"`
		Steps          int             `json:"num_inference_steps"`
		Ancestral      bool            `json:"ancestral"`
		Timesteps      []float64       `json:"timesteps"`
		Sigmas         []float64       `json:"sigmas"`
		InitNoiseSigma float64         `json:"init_noise_sigma"`
		InitialSample  []float32       `json:"initial_sample"`
		Trace          []struct {
			Scaled      []float32 `json:"scaled"`
			ModelOutput []float32 `json:"model_output"`
			Noise       []float32 `json:"noise"`
			PrevSample  []float32 `json:"prev_sample"`
			SigmaUp     float64   `json:"sigma_up"`
			SigmaDown   float64   `json:"sigma_down"`
		} `json:"steps"`
	} `json:"cases"`
	Img2Img []struct {
		Steps        int             `json:"num_inference_steps"`
		Strength     float64         `json:"strength"`
		Config       json.RawMessage `json:"config"`
		TStart       int             `json:"t_start"`
		Timesteps    []float64       `json:"timesteps"`
		NoiseSigma   float64         `json:"noise_sigma"`
		InitLatents  []float32       `json:"init_latents"`
		Noise        []float32       `json:"noise"`
		NoisyLatents []float32       `json:"noisy_latents"`
	} `json:"img2img"`
}

func loadFixture(t *testing.T) fixture {
	t.Helper()
	data, err := os.ReadFile("testdata/schedulers.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) == 0 || len(f.Img2Img) == 0 {
		t.Fatal("empty fixture")
	}
	return f
}

// Sigmas agree to float32 rounding: torch's vectorised linspace can round
// a beta one ulp differently from its scalar path, which the reference
// (and this package) follow.
const sigmaTol = 2e-6

func close32(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*max(1, math.Abs(b))
}

func TestTrainingSigmas(t *testing.T) {
	f := loadFixture(t)
	cfg, err := ParseSchedulerConfig(f.Cases[0].Config)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.trainingSigmas()
	for _, c := range []struct {
		i    int
		want float64
	}{{0, f.TrainingSigmasSD.First}, {999, f.TrainingSigmasSD.T999}, {500, f.TrainingSigmasSD.T500}} {
		if !close32(s[c.i], c.want, sigmaTol) {
			t.Errorf("sigma[%d] = %v, diffusers %v", c.i, s[c.i], c.want)
		}
	}
	// The number ONNX Runtime's sd-turbo example hard-codes.
	if math.Abs(s[999]-14.6146) > 1e-4 {
		t.Errorf("sigma at timestep 999 = %v, want 14.6146", s[999])
	}
}

func TestSchedulesMatchDiffusers(t *testing.T) {
	f := loadFixture(t)
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := ParseSchedulerConfig(c.Config)
			if err != nil {
				t.Fatal(err)
			}
			sampler := SamplerEuler
			if c.Ancestral {
				sampler = SamplerEulerAncestral
			}
			s, err := cfg.NewSchedule(sampler, c.Steps)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Timesteps) != len(c.Timesteps) || len(s.Sigmas) != len(c.Sigmas) {
				t.Fatalf("%d timesteps and %d sigmas, diffusers %d and %d", len(s.Timesteps), len(s.Sigmas), len(c.Timesteps), len(c.Sigmas))
			}
			for i := range c.Timesteps {
				if s.Timesteps[i] != c.Timesteps[i] {
					t.Errorf("timestep %d = %v, diffusers %v", i, s.Timesteps[i], c.Timesteps[i])
				}
			}
			for i := range c.Sigmas {
				if !close32(s.Sigmas[i], c.Sigmas[i], sigmaTol) {
					t.Errorf("sigma %d = %v, diffusers %v", i, s.Sigmas[i], c.Sigmas[i])
				}
			}
			if !close32(s.InitNoiseSigma, c.InitNoiseSigma, sigmaTol) {
				t.Errorf("init_noise_sigma = %v, diffusers %v", s.InitNoiseSigma, c.InitNoiseSigma)
			}

			// Run the reference's loop through Step, feeding its model
			// outputs and noise; every intermediate sample must agree.
			x := append([]float32(nil), c.InitialSample...)
			if len(c.Trace) != s.Steps() {
				t.Fatalf("%d traced steps for %d", len(c.Trace), s.Steps())
			}
			for i, st := range c.Trace {
				scale := s.InputScale(i)
				for k := range x {
					if got := x[k] * scale; !close32(float64(got), float64(st.Scaled[k]), 1e-5) {
						t.Fatalf("step %d: scaled input[%d] = %v, diffusers %v", i, k, got, st.Scaled[k])
					}
				}
				s.Step(i, st.ModelOutput, x, st.Noise)
				for k := range x {
					if !close32(float64(x[k]), float64(st.PrevSample[k]), 1e-5) {
						t.Fatalf("step %d: prev_sample[%d] = %v, diffusers %v", i, k, x[k], st.PrevSample[k])
					}
				}
			}
		})
	}
}

func TestImg2ImgMatchesDiffusers(t *testing.T) {
	f := loadFixture(t)
	for _, c := range f.Img2Img {
		cfg, err := ParseSchedulerConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		s, err := cfg.NewSchedule(SamplerEuler, c.Steps)
		if err != nil {
			t.Fatal(err)
		}
		start, err := Img2ImgStart(c.Steps, c.Strength)
		if err != nil {
			t.Fatalf("%d steps at strength %v: %v", c.Steps, c.Strength, err)
		}
		if start != c.TStart {
			t.Fatalf("%d steps at strength %v start at %d, diffusers %d", c.Steps, c.Strength, start, c.TStart)
		}
		r := s.Truncate(start)
		if len(r.Timesteps) != len(c.Timesteps) {
			t.Fatalf("%d steps at strength %v: timesteps %v, diffusers %v", c.Steps, c.Strength, r.Timesteps, c.Timesteps)
		}
		for i := range c.Timesteps {
			if r.Timesteps[i] != c.Timesteps[i] {
				t.Errorf("timesteps %v, diffusers %v", r.Timesteps, c.Timesteps)
			}
		}
		if !close32(r.Sigmas[0], c.NoiseSigma, sigmaTol) {
			t.Errorf("noise sigma %v, diffusers %v", r.Sigmas[0], c.NoiseSigma)
		}
		noisy := AddNoise(append([]float32(nil), c.InitLatents...), c.Noise, r.Sigmas[0])
		for k := range noisy {
			if !close32(float64(noisy[k]), float64(c.NoisyLatents[k]), 1e-5) {
				t.Errorf("noisy latent %d = %v, diffusers %v", k, noisy[k], c.NoisyLatents[k])
			}
		}
	}
	// diffusers refuses a strength that leaves no step.
	if _, err := Img2ImgStart(4, 0.2); err == nil {
		t.Error("4 steps at strength 0.2 leave no step; want an error")
	}
	for _, bad := range []float64{0, -1, 1.5, math.NaN()} {
		if _, err := Img2ImgStart(4, bad); err == nil {
			t.Errorf("strength %v accepted", bad)
		}
	}
}

func TestSchedulerConfigRefusesWhatItCannotFollow(t *testing.T) {
	for _, cfg := range []string{
		`{"use_karras_sigmas": true}`,
		`{"interpolation_type": "log_linear"}`,
		`{"timestep_spacing": "odd"}`,
		`{"prediction_type": "sample"}`,
		`{"beta_schedule": "sigmoid"}`,
		`{"rescale_betas_zero_snr": true}`,
		`{"trained_betas": [0.1, 0.2]}`,
		`{"beta_start": 0.5, "beta_end": 0.1}`,
		`not json`,
	} {
		if _, err := ParseSchedulerConfig([]byte(cfg)); err == nil {
			t.Errorf("%s accepted", cfg)
		}
	}
	// SD 1.5's PNDM config: shared fields carry over, Euler defaults fill in.
	c, err := ParseSchedulerConfig([]byte(`{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
		"beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
		"steps_offset": 1, "trained_betas": null, "clip_sample": false}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.TimestepSpacing != "linspace" || c.PredictionType != "epsilon" || c.DefaultSampler() != SamplerEuler {
		t.Errorf("PNDM config read as %+v", c)
	}
}
