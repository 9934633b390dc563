package diffusion

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/internal/testruntime"
	"github.com/imgserve/imgserve/models"
)

var testRuntime *inference.Runtime

// TestMain loads the real ONNX Runtime once and fails the run if a
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	testruntime.Run(m, "diffusion", func(rt *inference.Runtime) { testRuntime = rt })
}

// synthConfig is a pipeline "sd" on the synthetic fp32 models (or, with
// fp16, the fp16 set), with extra options appended to the UNet's.
func synthConfig(fp16 bool, unetBatching, options string) string {
	unet, text, dec, enc := testmodels.SDUNetSynth, testmodels.SDTextEncoderSynth, testmodels.SDVAEDecoderSynth, testmodels.SDVAEEncoderSynth
	if fp16 {
		unet, text, dec, enc = testmodels.SDUNetSynthFP16, testmodels.SDTextEncoderSynthFP16, testmodels.SDVAEDecoderSynthFP16, testmodels.SDVAEEncoderSynthFP16
	}
	if options != "" {
		options = ", " + options
	}
	return fmt.Sprintf(`
models:
  - name: sd
    file: %s
    task: diffusion-unet
    intra_op_threads: 1
    batching: %s
    options: {text_encoder: sd-text, vae_decoder: sd-vae-dec, vae_encoder: sd-vae-enc, safety_checker: sd-safety, max_steps: "20"%s}
  - name: sd-text
    file: %s
    task: diffusion-text-encoder
    intra_op_threads: 1
    batching: {max_batch_size: 2, max_queue_delay: 1ms}
  - name: sd-vae-dec
    file: %s
    task: diffusion-vae-decoder
    intra_op_threads: 1
    batching: {max_batch_size: 8, max_queue_delay: 1ms}
  - name: sd-vae-enc
    file: %s
    task: diffusion-vae-encoder
    intra_op_threads: 1
  - name: sd-safety
    file: %s
    task: diffusion-safety-checker
    intra_op_threads: 1
  - {name: clip-vit-b32, file: %s, task: clip-vision, outputs: [image_embeds], options: {text_model: clip-text}, intra_op_threads: 1, batching: {max_batch_size: 8}}
  - {name: clip-text, file: %s, task: clip-text, outputs: [text_embeds], intra_op_threads: 1, batching: {max_batch_size: 32}}
`, unet, unetBatching, options, text, dec, enc, testmodels.SDSafetyCheckerSynth, testmodels.ClipVisionSynth, testmodels.ClipTextSynth)
}

// loadRegistry loads a configuration from the synthetic models' folder;
// every model must load.
func loadRegistry(t testing.TB, cfgYAML string, obs func(string) inference.Observer) *models.Registry {
	t.Helper()
	cfg, err := models.ParseConfig(strings.NewReader(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir: testmodels.Dir(),
		Runtime:   testRuntime,
		Observer:  obs,
		Logger:    slog.New(slog.DiscardHandler),
	})
	reg.Load()
	t.Cleanup(reg.Close)
	for _, m := range reg.Models() {
		if st := m.State(); st.Status != models.StatusReady {
			t.Fatalf("%s: %s: %s", m.Config.Name, st.Status, st.Reason)
		}
	}
	return reg
}

func pipeline(t testing.TB, cfgYAML string, obs func(string) inference.Observer) *Pipeline {
	t.Helper()
	p, err := NewRegistry(loadRegistry(t, cfgYAML, obs)).Get("sd")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// batches records the rows of every batch a model ran.
type batches struct {
	mu   sync.Mutex
	rows []int
}

func (b *batches) ObserveBatch(rows int, _ time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rows = append(b.rows, rows)
}

func (b *batches) ObserveRequest(time.Duration, time.Duration, error) {}

func (b *batches) take() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rows
	b.rows = nil
	return r
}

func fixedSeed(s uint32) *uint32 { return &s }

func noRandom() uint32 { panic("the test gives every seed") }
