package caption

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
)

// A file that does not fit its task fails at load, and the reason names
// what was expected and what the file has.
func TestWrongFilesFailAtLoad(t *testing.T) {
	cfg := `
models:
  - {name: enc-affine, file: ` + testmodels.AffineF32 + `, task: caption-encoder}
  - {name: enc-clip, file: ` + testmodels.ClipTextSynth + `, task: caption-encoder}
  - {name: dec-clip, file: ` + testmodels.ClipTextSynth + `, task: caption-decoder}
  - {name: dec-encoder, file: ` + testmodels.CaptionEncoderSynth + `, task: caption-decoder}
  - {name: good-enc, file: ` + testmodels.CaptionEncoderSynth + `, task: caption-encoder}
  - {name: good-dec, file: ` + testmodels.CaptionDecoderSynth2Layer + `, task: caption-decoder}
`
	reg := loadRegistry(t, cfg, nil)
	for name, msg := range map[string]string{
		"enc-affine":  "want one input pixel_values FP32 [B,3,H,W]",
		"enc-clip":    "want one input pixel_values",
		"dec-clip":    "want input encoder_hidden_states FP32 [B,S,E]",
		"dec-encoder": "want input input_ids INT64 [B,T]",
	} {
		m, _ := reg.Get(name)
		st := m.State()
		if st.Status != models.StatusFailed || !strings.Contains(st.Reason, msg) {
			t.Errorf("%s: %s %q, want failed with %q", name, st.Status, st.Reason, msg)
		}
	}
	for _, name := range []string{"good-enc", "good-dec"} {
		if m, _ := reg.Get(name); m.State().Status != models.StatusReady {
			t.Errorf("%s: %s %s", name, m.State().Status, m.State().Reason)
		}
	}
}

// The decoder's signature is read, not assumed: each kind of mismatch is
// refused with a message naming the tensor.
func TestDecoderSignature(t *testing.T) {
	reg := loadRegistry(t, `
models:
  - {name: d, file: `+testmodels.CaptionDecoderSynth+`, task: caption-decoder}
  - {name: e, file: `+testmodels.CaptionEncoderSynth+`, task: caption-encoder}
`, nil)
	m, _ := reg.Get("d")
	in, out := m.State().Inputs, m.State().Outputs
	sig, err := parseDecoder(in, out)
	if err != nil {
		t.Fatal(err)
	}
	if sig.layers != 12 || sig.heads != 12 || sig.headSize != 64 || sig.hiddenSize != 768 || sig.vocab != 50257 {
		t.Errorf("signature %+v", sig)
	}
	if in[sig.pastKey[3]].Name != "past_key_values.3.key" || out[sig.presentValue[11]].Name != "present.11.value" {
		t.Errorf("positions point at %s and %s", in[sig.pastKey[3]].Name, out[sig.presentValue[11]].Name)
	}
	e, _ := reg.Get("e")
	es, err := parseEncoder(e.State().Inputs, e.State().Outputs)
	if err != nil || es.width != 224 || es.height != 224 || es.hiddenSize != 768 {
		t.Errorf("encoder signature %+v, %v", es, err)
	}

	edit := func(infos []inference.TensorInfo, name string, f func(*inference.TensorInfo)) []inference.TensorInfo {
		infos = slices.Clone(infos)
		i := slices.IndexFunc(infos, func(t inference.TensorInfo) bool { return t.Name == name })
		if f == nil {
			return slices.Delete(infos, i, i+1)
		}
		c := infos[i]
		c.Shape = slices.Clone(c.Shape)
		f(&c)
		infos[i] = c
		return infos
	}
	for name, tc := range map[string]struct {
		in, out []inference.TensorInfo
		msg     string
	}{
		"no present value": {in, edit(out, "present.5.value", nil), "layer 5 has no present.5.value"},
		"dynamic heads": {edit(in, "past_key_values.0.key", func(t *inference.TensorInfo) { t.Shape[1] = -1 }), out,
			"past_key_values.0.key must be FP32 [B,heads,P,head size] with fixed heads"},
		"uneven heads": {in, edit(out, "present.7.key", func(t *inference.TensorInfo) { t.Shape[3] = 32 }), "present.7.key has shape"},
		"extra input": {append(slices.Clone(in), inference.TensorInfo{Name: "attention_mask", DType: inference.INT64, Shape: []int64{-1, -1}}), out,
			"unexpected inputs"},
		"no cache branch": {edit(in, "use_cache_branch", nil), out, "use_cache_branch BOOL [1]"},
		"fp16 logits":     {in, edit(out, "logits", func(t *inference.TensorInfo) { t.DType = inference.FP16 }), "output logits FP32"},
		"no layers": {slices.DeleteFunc(slices.Clone(in), func(t inference.TensorInfo) bool { return strings.HasPrefix(t.Name, "past") }),
			slices.DeleteFunc(slices.Clone(out), func(t inference.TensorInfo) bool { return strings.HasPrefix(t.Name, "present") }), "no past_key_values.0.key"},
	} {
		if _, err := parseDecoder(tc.in, tc.out); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err %v, want one mentioning %q", name, err, tc.msg)
		}
	}
}

// A caption model needs its decoder configured, loaded and of the right
// task; otherwise Get says which.
func TestRegistryGet(t *testing.T) {
	reg := loadRegistry(t, `
models:
  - {name: cap, file: `+testmodels.CaptionEncoderSynth+`, task: caption-encoder, options: {decoder: dec}}
  - {name: dec, file: `+testmodels.CaptionDecoderSynth2Layer+`, task: caption-decoder}
  - {name: no-dec, file: `+testmodels.CaptionEncoderSynth+`, task: caption-encoder}
  - {name: tensor-dec, file: `+testmodels.CaptionEncoderSynth+`, task: caption-encoder, options: {decoder: affine}}
  - {name: missing-dec, file: `+testmodels.CaptionEncoderSynth+`, task: caption-encoder, options: {decoder: gone}}
  - {name: gone, file: not-there.onnx, task: caption-decoder}
  - {name: affine, file: `+testmodels.AffineF32+`}
  - {name: small-batch, file: `+testmodels.CaptionEncoderSynth+`, task: caption-encoder, options: {decoder: bad-batch}}
  - {name: bad-batch, file: `+testmodels.CaptionDecoderSynth2Layer+`, task: caption-decoder, options: {decode_batch_size: "0"}}
`, nil)
	r := NewRegistry(reg, nil)
	p, err := r.Get("cap")
	if err != nil || p.Name() != "cap" {
		t.Fatalf("cap: %v", err)
	}
	if again, _ := r.Get("cap"); again != p {
		t.Error("Get builds the pipeline again")
	}
	if got := r.Names(); !slices.Equal(got, []string{"cap", "no-dec", "tensor-dec", "missing-dec", "small-batch"}) {
		t.Errorf("names %v", got)
	}
	for name, want := range map[string]string{
		"nope":        "unknown caption model",
		"affine":      "unknown caption model",
		"no-dec":      `option decoder names ""`,
		"tensor-dec":  `option decoder names "affine"`,
		"missing-dec": "gone is unavailable",
		"small-batch": "decode_batch_size",
	} {
		_, err := r.Get(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", name, err, want)
		}
	}
	if _, err := r.Get("nope"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("unknown model: %v", err)
	}
	if _, err := r.Get("missing-dec"); !errors.Is(err, models.ErrNotReady) {
		t.Errorf("unavailable decoder: %v", err)
	}
}
