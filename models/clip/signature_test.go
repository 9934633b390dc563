package clip

import (
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
)

func info(name string, dt inference.DType, shape ...int64) inference.TensorInfo {
	return inference.TensorInfo{Name: name, DType: dt, Shape: shape}
}

func TestCheckVision(t *testing.T) {
	embeds := []inference.TensorInfo{info("image_embeds", inference.FP32, -1, 512)}
	pixels := []inference.TensorInfo{info("pixel_values", inference.FP32, -1, 3, 224, 224)}
	ok := []struct {
		name    string
		in, out []inference.TensorInfo
	}{
		{"export", pixels, append(embeds, info("last_hidden_state", inference.FP32, -1, 50, 768))},
		{"dynamic size", []inference.TensorInfo{info("pixel_values", inference.FP32, -1, 3, -1, -1)}, embeds},
		{"fixed batch", []inference.TensorInfo{info("pixel_values", inference.FP32, 1, 3, 224, 224)},
			[]inference.TensorInfo{info("image_embeds", inference.FP32, 1, -1)}},
	}
	for _, c := range ok {
		if err := checkVision(c.in, c.out); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	bad := []struct {
		name, want string
		in, out    []inference.TensorInfo
	}{
		{"input name", "pixel_values", []inference.TensorInfo{info("input", inference.FP32, -1, 3, 224, 224)}, embeds},
		{"size", "pixel_values", []inference.TensorInfo{info("pixel_values", inference.FP32, -1, 3, 336, 336)}, embeds},
		{"dtype", "pixel_values", []inference.TensorInfo{info("pixel_values", inference.FP16, -1, 3, 224, 224)}, embeds},
		{"two inputs", "pixel_values", append(pixels, info("x", inference.FP32, -1)), embeds},
		{"no embeds", "image_embeds", pixels, []inference.TensorInfo{info("last_hidden_state", inference.FP32, -1, 50, 768)}},
		{"dim", "image_embeds", pixels, []inference.TensorInfo{info("image_embeds", inference.FP32, -1, 768)}},
	}
	for _, c := range bad {
		err := checkVision(c.in, c.out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %s", c.name, err, c.want)
		}
	}
}

func TestCheckText(t *testing.T) {
	ids := info("input_ids", inference.INT64, -1, -1)
	mask := info("attention_mask", inference.INT64, -1, -1)
	embeds := []inference.TensorInfo{info("text_embeds", inference.FP32, -1, 512), info("last_hidden_state", inference.FP32, -1, -1, 512)}
	ok := [][]inference.TensorInfo{
		{ids, mask},
		{mask, ids},
		{ids},
		{info("input_ids", inference.INT64, -1, 77), info("attention_mask", inference.INT64, -1, 77)},
	}
	for _, in := range ok {
		if err := checkText(in, embeds); err != nil {
			t.Errorf("%s: %v", models.Describe(in), err)
		}
	}
	bad := [][]inference.TensorInfo{
		{info("input_ids", inference.INT32, -1, -1)},
		{info("input_ids", inference.INT64, -1)},
		{info("input_ids", inference.INT64, -1, 1)},
		{ids, info("token_type_ids", inference.INT64, -1, -1)},
		{ids, mask, info("position_ids", inference.INT64, -1, -1)},
		{info("input_ids", inference.INT64, -1, 77), info("attention_mask", inference.INT64, -1, 16)},
		{mask},
	}
	for _, in := range bad {
		if err := checkText(in, embeds); err == nil || !strings.Contains(err.Error(), "input_ids") {
			t.Errorf("%s: got %v, want an error naming input_ids", models.Describe(in), err)
		}
	}
	if err := checkText([]inference.TensorInfo{ids}, []inference.TensorInfo{info("pooler_output", inference.FP32, -1, 512)}); err == nil ||
		!strings.Contains(err.Error(), "text_embeds") {
		t.Errorf("missing text_embeds: got %v", err)
	}
}

// A file that is not a CLIP tower fails at load, saying what it has.
func TestWrongModelFailsAtLoad(t *testing.T) {
	cfg, err := models.ParseConfig(strings.NewReader(`
models:
  - {name: v, file: affine_f32.onnx, task: clip-vision}
  - {name: t, file: clip_vision_synth.onnx, task: clip-text}
  - {name: ok, file: clip_text_synth_noattn.onnx, task: clip-text}
`))
	if err != nil {
		t.Fatal(err)
	}
	reg := loadRegistryConfig(t, cfg)
	for name, want := range map[string]string{"v": "want one input pixel_values", "t": "want input input_ids"} {
		m, _ := reg.Get(name)
		st := m.State()
		if st.Status != models.StatusFailed || !strings.Contains(st.Reason, want) {
			t.Errorf("%s: %s %q, want failed with %q", name, st.Status, st.Reason, want)
		}
	}
	if m, _ := reg.Get("ok"); m.State().Status != models.StatusReady {
		t.Errorf("noattn text model: %s %s", m.State().Status, m.State().Reason)
	}
}
