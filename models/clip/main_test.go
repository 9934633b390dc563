package clip

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/internal/testruntime"
	"github.com/imgserve/imgserve/models"
)

var testRuntime *inference.Runtime

// quiet drops the registry's load messages.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestMain loads the real ONNX Runtime once and fails the run if a
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	testruntime.Run(m, "clip", func(rt *inference.Runtime) { testRuntime = rt })
}

// synthConfig serves the synthetic towers the way defaults.yaml serves the
// real ones.
const synthConfig = `
models:
  - name: clip-vit-b32
    file: clip_vision_synth.onnx
    task: clip-vision
    options: {text_model: clip-text}
    batching: {max_batch_size: 4, max_queue_delay: 1ms}
  - name: clip-text
    file: clip_text_synth.onnx
    task: clip-text
    batching: {max_batch_size: 4, max_queue_delay: 1ms}
  - name: clip-text-noattn
    file: clip_text_synth_noattn.onnx
    task: clip-text
    batching: {max_batch_size: 4}
  - name: clip-missing
    file: no-such-file.onnx
    task: clip-vision
    options: {text_model: clip-text-missing}
  - name: clip-text-missing
    file: no-such-file.onnx
    task: clip-text
  - name: affine
    file: affine_f32.onnx
`

// loadRegistry loads a configuration from the synthetic models and fails
// the test if any present model does not load.
func loadRegistry(t testing.TB, cfgYAML string) *models.Registry {
	t.Helper()
	cfg, err := models.ParseConfig(strings.NewReader(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	reg := loadRegistryConfig(t, cfg)
	for _, m := range reg.Models() {
		if st := m.State(); st.Status == models.StatusFailed {
			t.Fatalf("%s failed to load: %s", m.Config.Name, st.Reason)
		}
	}
	return reg
}

func resolve(t testing.TB, reg *models.Registry, name string) *Towers {
	t.Helper()
	tw, err := Resolve(reg, name)
	if err != nil {
		t.Fatal(err)
	}
	return tw
}

func loadRegistryConfig(t testing.TB, cfg models.Config) *models.Registry {
	t.Helper()
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir: testmodels.Dir(),
		Runtime:   testRuntime,
		Logger:    quiet,
	})
	reg.Load()
	t.Cleanup(reg.Close)
	return reg
}

// optionModel is an unloaded model carrying one option.
func optionModel(key, value string) *models.Model {
	return &models.Model{Config: models.ModelConfig{Name: "m", Options: map[string]string{key: value}}}
}
