package inference

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"
)

// clockRunner moves a fake clock forward by d inside every run, so that the
// run takes exactly d on the scheduler's clock.
type clockRunner struct {
	Runner
	clk *fakeClock
	d   time.Duration
}

func (r clockRunner) Run(in []Tensor) ([]Tensor, error) {
	r.clk.advance(r.d)
	return r.Runner.Run(in)
}

func TestStatsCountWhatTheSchedulerMeasured(t *testing.T) {
	const ms = time.Millisecond
	clk := newFakeClock()
	t0 := clk.Now()
	g := newGated(clockRunner{loadSession(t, "affine_f32.onnx"), clk, 7 * ms})
	s := newScheduler(g, BatchConfig{MaxBatchSize: 4, MaxQueueSize: 8, Instances: 1}, nil, clk)
	defer func() {
		g.open()
		s.Close()
	}()

	var wg sync.WaitGroup
	submit := func(id, rows int) {
		defer wg.Done()
		submitAffine(t, s, id, rows)
	}
	// A runs alone and is held at the gate; B (1 row) and C (2 rows) queue
	// behind it; 3 ms pass; then A's run takes 7 ms more, and B and C run
	// as one batch of 3 rows in 7 ms.
	wg.Add(1)
	go submit(1, 1)
	<-g.started
	wg.Add(2)
	go submit(2, 1)
	go submit(3, 2)
	waitFor(t, "B and C queued", func() bool { return s.Pending() == 2 })
	clk.advance(3 * ms)
	// A request whose context has already ended fails without queueing.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Submit(ended, []Tensor{affineRows(4, 1)}); err == nil {
		t.Fatal("a cancelled request succeeded")
	}
	g.open()
	wg.Wait()

	d := func(n uint64, total time.Duration) Duration { return Duration{Count: n, Total: total} }
	want := Stats{
		Success:        d(3, 10*ms+17*ms+17*ms), // A: 3+7 ms; B and C: 10 ms queued, 7 ms run
		Fail:           d(1, 0),
		Queue:          d(3, 0+10*ms+10*ms),
		ComputeInput:   d(3, 0),
		ComputeInfer:   d(3, 10*ms+7*ms+7*ms),
		ComputeOutput:  d(3, 0),
		InferenceCount: 4,
		ExecutionCount: 2,
		LastInference:  t0.Add(17 * ms),
		Batches: []BatchStats{
			{Size: 1, ComputeInput: d(1, 0), ComputeInfer: d(1, 10*ms), ComputeOutput: d(1, 0)},
			{Size: 3, ComputeInput: d(1, 0), ComputeInfer: d(1, 7*ms), ComputeOutput: d(1, 0)},
		},
	}
	if got := s.Stats(); !reflect.DeepEqual(got, want) {
		t.Fatalf("stats\n got %+v\nwant %+v", got, want)
	}
	s.ResetStats()
	if got := s.Stats(); !reflect.DeepEqual(got, Stats{Batches: []BatchStats{}}) {
		t.Fatalf("after reset: %+v", got)
	}
}
