// Package testruntime is the TestMain of the packages whose tests run real
// ONNX Runtime sessions. ONNX Runtime allows one environment per process,
// so each test binary loads the library once, here; after tests that
// passed, the run fails if a goroutine outlived them, which is how a
// scheduler or worker that was never stopped shows up. (The inference
// package's own tests cannot import this one and keep their own copy.)
package testruntime

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
)

// Run loads the runtime fetched into the repository (or the one
// $IMGSERVE_ORT_LIB names), hands it to use, runs
// the tests and exits. pkg names the package in the message shown when the
// library is missing; ignore lists goroutines that may outlive the tests
// (a library's own).
func Run(m *testing.M, pkg string, use func(*inference.Runtime), ignore ...goleak.Option) {
	lib := paths.TestORTLib()
	device, err := inference.ParseDevice(os.Getenv(paths.TestDeviceEnv))
	if err != nil || device.Auto {
		fmt.Fprintf(os.Stderr, "%s: %s: want cpu, cuda or cuda:N (%v)\n", pkg, paths.TestDeviceEnv, err)
		os.Exit(1)
	}
	rt, err := inference.NewRuntime(lib, device)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests need the ONNX Runtime library (run scripts/fetch-models.sh): %v\n", pkg, err)
		os.Exit(1)
	}
	if os.Getenv(paths.TestORTLibEnv) != "" || device.CUDA {
		// What the tests ran on, for whoever asked for another library.
		fmt.Fprintf(os.Stderr, "testruntime: onnxruntime %s from %s on %v\n", rt.Version(), lib, rt.Device())
	}
	use(rt)
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(ignore...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	rt.Close()
	os.Exit(code)
}
