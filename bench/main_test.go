// Package bench holds imgserve's hot-path benchmarks and, in loadgen/, its
// load generator. Results and the commands that produced them are recorded
// in README.md. Nothing here is imported by the server.
package bench

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testruntime"
	"github.com/imgserve/imgserve/models"
)

// benchRuntime is the process's one ONNX Runtime environment; every
// benchmark file in this package uses it.
var benchRuntime *inference.Runtime

// TestMain loads the real ONNX Runtime once and fails the run if a
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	testruntime.Run(m, "bench", func(rt *inference.Runtime) { benchRuntime = rt })
}

// loadRegistry loads a YAML model configuration from dir on benchRuntime,
// quietly, and closes it when the benchmark ends. opts may set an Observer.
func loadRegistry(b *testing.B, dir, cfgYAML string, opts models.Options) *models.Registry {
	cfg, err := models.ParseConfig(strings.NewReader(cfgYAML))
	if err != nil {
		b.Fatal(err)
	}
	opts.ModelsDir, opts.Runtime, opts.Logger = dir, benchRuntime, slog.New(slog.DiscardHandler)
	reg := models.NewRegistry(cfg, opts)
	reg.Load()
	b.Cleanup(reg.Close)
	return reg
}
