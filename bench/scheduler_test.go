package bench

import (
	"context"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
)

func affineSession(b *testing.B) *inference.Session {
	s, err := benchRuntime.NewSession(testmodels.Bytes("affine_f32.onnx"), inference.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func affineInput() []inference.Tensor {
	return []inference.Tensor{inference.NewTensor([]int64{1, 4}, []float32{1, 2, 3, 4})}
}

// BenchmarkSessionRunAffine is the baseline: a direct session.Run on a model
// so small that the run costs about what ONNX Runtime's call overhead does.
func BenchmarkSessionRunAffine(b *testing.B) {
	s := affineSession(b)
	in := affineInput()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Run(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSchedulerSubmitAffine is the same run through the scheduler with
// batching off: the difference from the baseline is the scheduler's
// per-request overhead (queueing, a goroutine hand-off, the reply).
func BenchmarkSchedulerSubmitAffine(b *testing.B) {
	sched := inference.NewScheduler(affineSession(b), inference.BatchConfig{MaxBatchSize: 1, MaxQueueSize: 64}, nil)
	defer sched.Close()
	in := affineInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sched.Submit(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSchedulerBatchedAffine submits from many goroutines with batching
// on, so requests are packed into pooled batch buffers and scattered back.
// ns/op is per request.
func BenchmarkSchedulerBatchedAffine(b *testing.B) {
	sched := inference.NewScheduler(affineSession(b), inference.BatchConfig{MaxBatchSize: 16, MaxQueueSize: 1024, Instances: 1}, nil)
	defer sched.Close()
	ctx := context.Background()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		in := affineInput()
		for pb.Next() {
			if _, err := sched.Submit(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
