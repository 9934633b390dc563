package models

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/internal/testruntime"
)

var testRuntime *inference.Runtime

func TestMain(m *testing.M) {
	testruntime.Run(m, "models", func(rt *inference.Runtime) { testRuntime = rt })
}

func TestGPUBatchingReplacesBatchingOnAGPU(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(`
models:
  - name: a
    file: a.onnx
    batching: {max_batch_size: 1, instances: 2}
    gpu_batching: {max_batch_size: 16, max_queue_delay: 2ms, preferred_batch_sizes: [8, 16]}
  - name: b
    file: b.onnx
    batching: {max_batch_size: 4}
  - name: c
    file: c.onnx
    batching: {max_batch_size: 1}
    gpu_batching: {max_batch_size: 8, batch_buckets: [4, 8]}
`))
	if err != nil {
		t.Fatal(err)
	}
	cpu, gpu := inference.Device{}, inference.Device{CUDA: true}
	a, b, c := cfg.Models[0], cfg.Models[1], cfg.Models[2]
	if got := a.BatchingFor(cpu); got.MaxBatchSize != 1 || got.Instances != 2 || got.BatchBuckets != nil {
		t.Errorf("a on the CPU: %+v", got)
	}
	got := a.BatchingFor(gpu)
	if got.MaxBatchSize != 16 || got.MaxQueueDelay != 2*time.Millisecond || !slices.Equal(got.PreferredBatchSizes, []int{8, 16}) ||
		!slices.Equal(got.BatchBuckets, []int{1, 2, 4, 8, 16}) || got.MaxQueueSize != 64 || got.Instances != 1 {
		t.Errorf("a on a GPU: %+v", got)
	}
	// Without gpu_batching, a GPU still pads to buckets.
	if got := b.BatchingFor(gpu); got.MaxBatchSize != 4 || !slices.Equal(got.BatchBuckets, []int{1, 2, 4}) {
		t.Errorf("b on a GPU: %+v", got)
	}
	if got := b.BatchingFor(cpu); got.BatchBuckets != nil {
		t.Errorf("b on the CPU has buckets: %+v", got)
	}
	if got := c.BatchingFor(gpu); !slices.Equal(got.BatchBuckets, []int{4, 8}) {
		t.Errorf("c's own buckets: %+v", got)
	}

	for _, bad := range []string{
		"gpu_batching: {max_batch_size: 4, batch_buckets: [8]}",
		"gpu_batching: {max_queue_delay: -1ms}",
		"batching: {max_batch_size: 2, batch_buckets: [0]}",
		"gpu_batching: {max_batch_sise: 4}",
	} {
		_, err := ParseConfig(strings.NewReader("models:\n  - name: m\n    file: m.onnx\n    " + bad + "\n"))
		if err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

type batchRecorder struct {
	mu   sync.Mutex
	rows []int
}

func (r *batchRecorder) ObserveBatch(rows int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, rows)
}
func (r *batchRecorder) ObserveRequest(time.Duration, time.Duration, error) {}

// A model with batch buckets is warmed up once per bucket before it is
// ready, so that no client request pays for a new shape.
func TestWarmUpRunsEveryBucket(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(`
models:
  - name: affine
    file: affine_f32.onnx
    batching: {max_batch_size: 8, batch_buckets: [1, 2, 4, 8]}
    intra_op_threads: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	rec := &batchRecorder{}
	reg := NewRegistry(cfg, Options{ModelsDir: testmodels.Dir(), Runtime: testRuntime,
		Observer: func(string) inference.Observer { return rec }})
	reg.Load()
	defer reg.Close()
	m, _ := reg.Get("affine")
	if st := m.State(); st.Status != StatusReady || !slices.Equal(st.Batching.BatchBuckets, []int{1, 2, 4, 8}) {
		t.Fatalf("affine: %s %s, buckets %v", st.Status, st.Reason, st.Batching.BatchBuckets)
	}
	if !slices.Equal(rec.rows, []int{1, 2, 4, 8}) {
		t.Errorf("warm-up batches %v, want one per bucket [1 2 4 8]", rec.rows)
	}
}
