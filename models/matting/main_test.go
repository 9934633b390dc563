package matting

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

// TestMain loads the real ONNX Runtime once and fails the run if a
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	testruntime.Run(m, "matting", func(rt *inference.Runtime) { testRuntime = rt })
}

// synthConfig serves the synthetic models under rembg's names, with the
// options models/defaults.yaml gives the real ones.
const synthConfig = `
models:
  - {name: birefnet-general, file: birefnet_synth.onnx, task: matting, options: {size: "1024", sigmoid: "true"}}
  - {name: isnet-anime, file: isnet_anime_synth.onnx, task: matting, options: {norm: rembg-isnet, size: "1024"}}
  - {name: bria-rmbg, file: bria_rmbg_synth.onnx, task: matting, options: {size: "1024"}}
  - {name: ben2-base, file: ben2_synth.onnx, task: matting, options: {norm: rembg-ben, size: "1024"}}
  - {name: u2net_cloth_seg, file: u2net_cloth_seg_synth.onnx, task: cloth-seg, options: {size: "768"}}
  - {name: sam, file: sam_encoder_synth.onnx, task: sam, options: {decoder: sam-decoder}}
  - {name: sam-decoder, file: sam_decoder_synth.onnx, task: sam-decoder}
`

// loadRegistry loads a configuration of synthetic models.
func loadRegistry(t testing.TB, cfgYAML string) *models.Registry {
	t.Helper()
	cfg, err := models.ParseConfig(strings.NewReader(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir: testmodels.Dir(),
		Runtime:   testRuntime,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
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
