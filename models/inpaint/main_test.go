package inpaint

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
	testruntime.Run(m, "inpaint", func(rt *inference.Runtime) { testRuntime = rt })
}

// loadRegistry loads a configuration from the synthetic models.
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
	return reg
}
