package inpaint

import (
	"context"
	"errors"
	"image"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
)

func info(name string, shape ...int64) inference.TensorInfo {
	return inference.TensorInfo{Name: name, DType: inference.FP32, Shape: shape}
}

func TestParseSignature(t *testing.T) {
	carve := []inference.TensorInfo{info("image", 1, 3, 512, 512), info("mask", 1, 1, 512, 512)}
	cases := []struct {
		name    string
		in, out []inference.TensorInfo
		size    image.Point // zero: an error is expected
		errText string
	}{
		{"Carve/LaMa-ONNX", carve, []inference.TensorInfo{info("output", 1, 3, 512, 512)}, image.Pt(512, 512), ""},
		{"inputs in the other order", []inference.TensorInfo{carve[1], carve[0]}, []inference.TensorInfo{info("output", 1, 3, 512, 512)}, image.Pt(512, 512), ""},
		{"dynamic batch", []inference.TensorInfo{info("image", -1, 3, 512, 512), info("mask", -1, 1, 512, 512)},
			[]inference.TensorInfo{info("output", -1, 3, 512, 512)}, image.Pt(512, 512), ""},
		{"dynamic size takes 512", []inference.TensorInfo{info("image", 1, 3, -1, -1), info("mask", 1, 1, -1, -1)},
			[]inference.TensorInfo{info("output", 1, 3, -1, -1)}, image.Pt(512, 512), ""},
		{"one fixed dimension fixes it for all", []inference.TensorInfo{info("image", 1, 3, -1, 256), info("mask", 1, 1, 384, -1)},
			[]inference.TensorInfo{info("output", 1, 3, -1, -1)}, image.Pt(256, 384), ""},
		{"output found by name", carve, []inference.TensorInfo{info("aux", 1, 1, 64, 64), info("output", 1, 3, 512, 512)}, image.Pt(512, 512), ""},
		{"wrong input name", []inference.TensorInfo{info("img", 1, 3, 512, 512), carve[1]}, []inference.TensorInfo{info("output", 1, 3, 512, 512)}, image.Point{}, "want inputs image"},
		{"mask with 3 channels", []inference.TensorInfo{carve[0], info("mask", 1, 3, 512, 512)}, []inference.TensorInfo{info("output", 1, 3, 512, 512)}, image.Point{}, "want inputs image"},
		{"one input", carve[:1], []inference.TensorInfo{info("output", 1, 3, 512, 512)}, image.Point{}, "want inputs image"},
		{"mask output", carve, []inference.TensorInfo{info("output", 1, 1, 512, 512)}, image.Point{}, "want inputs image"},
		{"sizes disagree", carve, []inference.TensorInfo{info("output", 1, 3, 256, 256)}, image.Point{}, "disagree"},
		{"fixed batch of 2", []inference.TensorInfo{info("image", 2, 3, 512, 512), info("mask", 2, 1, 512, 512)},
			[]inference.TensorInfo{info("output", 2, 3, 512, 512)}, image.Point{}, "fixed batch of 2"},
		{"int64 image", []inference.TensorInfo{{Name: "image", DType: inference.INT64, Shape: []int64{1, 3, 512, 512}}, carve[1]},
			[]inference.TensorInfo{info("output", 1, 3, 512, 512)}, image.Point{}, "want inputs image"},
	}
	for _, c := range cases {
		sig, err := parseSignature(c.in, c.out)
		if c.size == (image.Point{}) {
			if err == nil || !strings.Contains(err.Error(), c.errText) {
				t.Errorf("%s: error %v, want one saying %q", c.name, err, c.errText)
			}
			continue
		}
		if err != nil || sig.size != c.size || c.in[sig.image].Name != "image" || c.in[sig.mask].Name != "mask" || c.out[sig.output].Name != "output" {
			t.Errorf("%s: %+v, %v", c.name, sig, err)
		}
	}
}

func TestDetectOutputScale(t *testing.T) {
	constant := func(v float32) InferFunc {
		return func(_ context.Context, pix, hole []float32) ([]float32, error) {
			out := make([]float32, len(pix))
			for i := range out {
				out[i] = v
			}
			return out, nil
		}
	}
	size := image.Pt(8, 8)
	for _, c := range []struct {
		out  float32
		want float32
	}{{127.5, 255}, {0.5, 1}, {100, 255}, {0.3, 1}} {
		got, err := DetectOutputScale(context.Background(), size, constant(c.out))
		if err != nil || got != c.want {
			t.Errorf("mid-grey as %v: scale %v, %v; want %v", c.out, got, err, c.want)
		}
	}
	for _, v := range []float32{0, 5, 1000, -127} {
		if _, err := DetectOutputScale(context.Background(), size, constant(v)); err == nil || !strings.Contains(err.Error(), "output range") {
			t.Errorf("mid-grey as %v: %v, want an error naming the output range", v, err)
		}
	}
	boom := errors.New("boom")
	fail := func(context.Context, []float32, []float32) ([]float32, error) { return nil, boom }
	if _, err := DetectOutputScale(context.Background(), size, fail); !errors.Is(err, boom) {
		t.Errorf("a failing model: %v", err)
	}
}

func TestOptions(t *testing.T) {
	for in, want := range map[string]Strategy{"Crop": StrategyCrop, "RESIZE": StrategyResize, " original ": StrategyOriginal} {
		if got, err := ParseStrategy(in); err != nil || got != want {
			t.Errorf("ParseStrategy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseStrategy("tile"); err == nil || !strings.Contains(err.Error(), "Crop, Resize, Original") {
		t.Errorf("unknown strategy: %v", err)
	}
	o := DefaultOptions()
	if o.Strategy != StrategyCrop || o.CropMargin != 128 || o.CropTriggerSize != 800 || o.ResizeLimit != 1280 || o.Validate() != nil {
		t.Errorf("defaults %+v are not IOPaint's", o)
	}
	for _, kv := range [][2]string{{"hd_strategy", "Resize"}, {"hd_strategy_crop_margin", "64.0"}, {"hd_strategy_crop_trigger_size", "1024"},
		{"hd_strategy_resize_limit", "2048"}, {"mask_dilation", "0"}} {
		if known, err := o.Set(kv[0], kv[1]); !known || err != nil {
			t.Errorf("Set(%s, %s): %v %v", kv[0], kv[1], known, err)
		}
	}
	if o != (Options{StrategyResize, 64, 1024, 2048, 0, DefaultMaxCrops}) {
		t.Errorf("after Set: %+v", o)
	}
	if known, _ := o.Set("sd_steps", "20"); known {
		t.Error("an unknown name was taken")
	}
	for _, kv := range [][2]string{{"hd_strategy_crop_margin", "ten"}, {"mask_dilation", "2.5"}, {"hd_strategy_resize_limit", "1e40"}} {
		var ie *InputError
		if _, err := o.Set(kv[0], kv[1]); !errors.As(err, &ie) {
			t.Errorf("Set(%s, %s): %v, want an InputError", kv[0], kv[1], err)
		}
	}
	for _, bad := range []func(*Options){
		func(o *Options) { o.CropMargin = -1 },
		func(o *Options) { o.ResizeLimit = 8 },
		func(o *Options) { o.MaskDilation = 1000 },
		func(o *Options) { o.MaxCrops = 0 },
		func(o *Options) { o.Strategy = "tile" },
	} {
		o := DefaultOptions()
		bad(&o)
		var ie *InputError
		if err := o.Validate(); !errors.As(err, &ie) {
			t.Errorf("%+v: %v, want an InputError", o, err)
		}
	}
	cfg := models.ModelConfig{Name: "m", Options: map[string]string{"hd_strategy": "original", "max_crops": "4", "mask_dilation": "9"}}
	if o, err := OptionsFor(cfg); err != nil || o.Strategy != StrategyOriginal || o.MaxCrops != 4 || o.MaskDilation != 9 {
		t.Errorf("OptionsFor: %+v, %v", o, err)
	}
	cfg.Options = map[string]string{"crop_margin": "4"}
	if _, err := OptionsFor(cfg); err == nil || !strings.Contains(err.Error(), `unknown option "crop_margin"`) {
		t.Errorf("unknown model option: %v", err)
	}
}

const registryConfig = `
models:
  - name: lama
    file: lama_synth.onnx
    task: inpaint
    intra_op_threads: 1
  - name: lama-unit
    file: lama_synth_unit.onnx
    task: inpaint
    intra_op_threads: 1
  - name: lama-batched
    file: lama_synth.onnx
    task: inpaint
    intra_op_threads: 1
    batching: {max_batch_size: 2, instances: 1}
  - name: lama-missing
    file: no-such-lama.onnx
    task: inpaint
  - name: not-lama
    file: affine_f32.onnx
    task: inpaint
  - name: affine
    file: affine_f32.onnx
`

func TestRegistryChecksTheSignatureAndDetectsTheRange(t *testing.T) {
	reg := loadRegistry(t, registryConfig)
	if st := must(reg, "not-lama").State(); st.Status != models.StatusFailed || !strings.Contains(st.Reason, "want inputs image FP32 [N,3,H,W]") {
		t.Errorf("a non-LaMa model as task inpaint: %s %q", st.Status, st.Reason)
	}
	// The fixed batch of 1 is rewritten so that crops can share a run.
	if st := must(reg, "lama-batched").State(); st.Status != models.StatusReady || st.BatchMode.String() != "rewritten" {
		t.Errorf("lama-batched: %s %s %s", st.Status, st.BatchMode, st.Reason)
	}
	ctx := context.Background()
	for name, want := range map[string]float32{"lama": 255, "lama-unit": 1, "lama-batched": 255} {
		r, o, err := Lookup(ctx, reg, name)
		if err != nil || r.OutputScale != want || r.Size != image.Pt(512, 512) || o != DefaultOptions() {
			t.Errorf("%s: %+v %+v %v; want output scale %v", name, r, o, err, want)
		}
	}
	if _, _, err := Lookup(ctx, reg, "lama-missing"); !errors.Is(err, models.ErrNotReady) || !strings.Contains(err.Error(), "no-such-lama.onnx") {
		t.Errorf("missing file: %v", err)
	}
	for _, name := range []string{"nope", "affine"} {
		if _, _, err := Lookup(ctx, reg, name); !errors.Is(err, ErrUnknownModel) || !strings.Contains(err.Error(), "lama, lama-unit") {
			t.Errorf("%s: %v, want ErrUnknownModel listing the inpaint models", name, err)
		}
	}
}

func must(reg *models.Registry, name string) *models.Model {
	m, ok := reg.Get(name)
	if !ok {
		panic(name)
	}
	return m
}
