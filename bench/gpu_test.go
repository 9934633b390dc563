package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
)

// BenchmarkU2netpBatch runs rembg's u2netp directly on its session (the
// batch dimension made dynamic, as the server does) at batch sizes 1 to 32,
// on the device the test runtime runs on: the CPU, or with
// IMGSERVE_ORT_LIB and IMGSERVE_TEST_DEVICE=cuda:0 a GPU
// (scripts/gpu-check.sh). img/s against batch 1 is what batching gains.
func BenchmarkU2netpBatch(b *testing.B) {
	model, err := os.ReadFile(filepath.Join(paths.Models(paths.RepoHome()), "u2netp.onnx"))
	if err != nil {
		b.Fatal(err)
	}
	s, mode, note, err := benchRuntime.NewBatchedSession(model, inference.SessionOptions{IntraOpThreads: 2, Outputs: []string{"1959"}}, true)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if mode == inference.BatchFixed {
		b.Fatalf("u2netp does not batch: %s", note)
	}
	for _, n := range []int{1, 2, 4, 8, 16, 32} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x := make([]float32, n*3*320*320)
			for i := range x {
				x[i] = float32(i%251) / 251
			}
			in := []inference.Tensor{inference.NewTensor([]int64{int64(n), 3, 320, 320}, x)}
			if _, err := s.Run(in); err != nil { // the first run of a shape allocates
				b.Fatal(err)
			}
			start := time.Now()
			for b.Loop() {
				if _, err := s.Run(in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "img/s")
		})
	}
}
