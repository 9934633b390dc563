package server

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/paths"
)

// The CUDA build of ONNX Runtime (1.29, scripts/fetch-models.sh --gpu) must
// serve on its CPU provider exactly as the CPU build does: it is what a GPU
// host falls back to, and its core must speak the 1.24 C API onnxruntime_go
// asks for. ONNX Runtime loads once per process, so the u2netp parity tests
// run again in a child process of this test binary, on the GPU core library;
// only the 28 MB core is needed, not the CUDA provider.
func TestU2netpParityOnGPUCoreLibrary(t *testing.T) {
	lib := paths.ORTCUDALib(paths.RepoHome())
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("the CUDA build's core library is missing (%v); fetch it with: scripts/fetch-models.sh onnxruntime-cuda", err)
	}
	// The bound only keeps a hung child from hanging the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^(TestRembgParityAndISNet|TestKServeServesRealU2netpLikeSessionRun)$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), paths.TestORTLibEnv+"="+lib, paths.TestDeviceEnv+"=cpu")
	out, err := cmd.CombinedOutput()
	t.Logf("child on %s:\n%s", lib, out)
	if err != nil {
		t.Fatalf("parity tests on the GPU core library failed: %v", err)
	}
	if !regexp.MustCompile(`testruntime: onnxruntime 1\.29\.\d+ from ` + regexp.QuoteMeta(lib) + ` on cpu`).Match(out) {
		t.Errorf("the child did not run on ONNX Runtime 1.29 from %s", lib)
	}
	for _, name := range []string{"TestRembgParityAndISNet", "TestKServeServesRealU2netpLikeSessionRun"} {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass on the GPU core library", name)
		}
	}
}
