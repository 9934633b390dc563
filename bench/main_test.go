// Package bench holds imgserve's hot-path benchmarks and, in loadgen/, its
// load generator. Results and the commands that produced them are recorded
// in README.md. Nothing here is imported by the server.
package bench

import (
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testruntime"
)

// benchRuntime is the process's one ONNX Runtime environment; every
// benchmark file in this package uses it.
var benchRuntime *inference.Runtime

// TestMain loads the real ONNX Runtime once and fails the run if a
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	testruntime.Run(m, "bench", func(rt *inference.Runtime) { benchRuntime = rt })
}
