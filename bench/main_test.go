// Package bench holds imgserve's hot-path benchmarks and, in loadgen/, its
// load generator. Results and the commands that produced them are recorded
// in README.md. Nothing here is imported by the server.
package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
)

// benchRuntime is the process's one ONNX Runtime environment; every
// benchmark file in this package uses it.
var benchRuntime *inference.Runtime

func TestMain(m *testing.M) {
	rt, err := inference.NewRuntime(paths.ORTLib(paths.RepoHome()), inference.Device{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmarks need the ONNX Runtime library (run scripts/fetch-models.sh):", err)
		os.Exit(1)
	}
	benchRuntime = rt
	code := m.Run()
	rt.Close()
	os.Exit(code)
}
