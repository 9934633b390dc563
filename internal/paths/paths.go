// Package paths knows where scripts/fetch-models.sh puts the runtime and the
// models, so the server's defaults and the tests agree with it.
package paths

import (
	"os"
	"path/filepath"
)

// DefaultHome is the folder fetch-models.sh fills, relative to the working
// directory, unless IMGSERVE_HOME names another.
const DefaultHome = ".imgserve"

// Home returns $IMGSERVE_HOME, or DefaultHome.
func Home() string {
	if h := os.Getenv("IMGSERVE_HOME"); h != "" {
		return h
	}
	return DefaultHome
}

// ORTLib is where the ONNX Runtime shared library lives under home.
func ORTLib(home string) string { return filepath.Join(home, "lib", "libonnxruntime.so.1") }

// ORTCUDALib is where the CUDA build of ONNX Runtime lives under home
// (scripts/fetch-models.sh --gpu), its provider libraries beside it.
func ORTCUDALib(home string) string { return filepath.Join(home, "lib", "cuda", "libonnxruntime.so") }

// TestORTLibEnv names another ONNX Runtime library for the tests to load
// instead of the CPU build, such as the CUDA build's core, which must run
// the CPU provider as well.
const TestORTLibEnv = "IMGSERVE_ORT_LIB"

// TestDeviceEnv names the device the tests' runtime runs on ("cuda:0"),
// with the CUDA build named by TestORTLibEnv: scripts/gpu-check.sh runs the
// parity tests and benchmarks on a GPU this way. Default: the CPU.
const TestDeviceEnv = "IMGSERVE_TEST_DEVICE"

// TestORTLib is the library the tests load: $IMGSERVE_ORT_LIB, or the
// CPU build in the repository's home.
func TestORTLib() string {
	if p := os.Getenv(TestORTLibEnv); p != "" {
		return p
	}
	return ORTLib(RepoHome())
}

// Models is where model files live under home.
func Models(home string) string { return filepath.Join(home, "models") }

// RepoHome is Home for code that runs inside the source tree, such as tests,
// whose working directory is a package folder: a relative home is resolved
// against the module root.
func RepoHome() string {
	h := Home()
	if filepath.IsAbs(h) {
		return h
	}
	dir, err := os.Getwd()
	if err != nil {
		return h
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, h)
		}
		if filepath.Dir(d) == d {
			return h
		}
	}
}
