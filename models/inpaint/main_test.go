package inpaint

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
)

var testRuntime *inference.Runtime

// TestMain loads the real ONNX Runtime once and checks that no scheduler
// or crop goroutine outlives the tests.
func TestMain(m *testing.M) {
	rt, err := inference.NewRuntime(paths.ORTLib(paths.RepoHome()), inference.Device{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "inpaint tests need the ONNX Runtime library (run scripts/fetch-models.sh):", err)
		os.Exit(1)
	}
	testRuntime = rt
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	rt.Close()
	os.Exit(code)
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
