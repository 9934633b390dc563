package inference

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// idRecorder notes the request ids of each batch's rows as it runs (the
// batch's buffers are pooled and reused after).
type idRecorder struct {
	Runner
	mu  sync.Mutex
	ids [][]int
}

func (r *idRecorder) Run(in []Tensor) ([]Tensor, error) {
	r.mu.Lock()
	r.ids = append(r.ids, firstIDs(in))
	r.mu.Unlock()
	return r.Runner.Run(in)
}

// firstIDs are the request ids (affineRows' integer parts) of each row of
// a run's input, in order.
func firstIDs(in []Tensor) []int {
	x := Values[float32](in[0])
	ids := make([]int, 0, len(x)/4)
	for r := 0; r+4 <= len(x); r += 4 {
		ids = append(ids, int(x[r]))
	}
	return ids
}

// An interactive request submitted behind a backlog of background (job)
// requests runs in the very next batch, not after the backlog.
func TestInteractiveOvertakesABackgroundBacklog(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	rec := &idRecorder{Runner: g}
	s := NewScheduler(rec, BatchConfig{MaxBatchSize: 2, MaxQueueSize: 8, Instances: 1}, nil)
	t.Cleanup(func() {
		g.open()
		s.Close()
	})
	bg := WithPriority(context.Background(), Background)

	var wg sync.WaitGroup
	submit := func(ctx context.Context, id int) {
		wg.Go(func() {
			in := affineRows(id, 1)
			out, err := s.Submit(ctx, []Tensor{in})
			if err != nil {
				t.Errorf("request %d: %v", id, err)
				return
			}
			checkAffine(t, in, out)
		})
	}
	submit(bg, 0)
	<-g.started // the only instance is busy with a job item
	// Eight background requests fill the queue (MaxQueueSize); the
	// interactive ones still get in, since only what would be ahead of
	// them counts against them.
	for id := 1; id <= 8; id++ {
		submit(bg, id)
		waitFor(t, "queued", func() bool { return s.Pending() == id })
	}
	for id := 100; id <= 101; id++ {
		submit(context.Background(), id)
		waitFor(t, "queued", func() bool { return s.Pending() == id-91 })
	}
	g.open()
	wg.Wait()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	order := rec.ids
	want := [][]int{{0}, {100, 101}, {1, 2}, {3, 4}, {5, 6}, {7, 8}}
	if !slices.EqualFunc(order, want, slices.Equal) {
		t.Fatalf("batches ran %v, want %v: the interactive requests must run right after the batch in flight", order, want)
	}
}

// Background requests are neither shed for the expected wait nor dropped
// for waiting past the budget: they wait. Interactive requests see only
// the interactive queue in their expected wait.
func TestBackgroundRequestsWaitInsteadOfBeingShed(t *testing.T) {
	clk := newFakeClock()
	run := &timedRunner{clk: clk, d: 400 * time.Millisecond, started: make(chan struct{}, 64), proceed: make(chan struct{}, 64)}
	s := newScheduler(run, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 64, Instances: 1, MaxQueueWait: time.Second}, nil, clk)
	defer s.Close()
	run.proceed <- struct{}{}
	if _, err := s.Submit(context.Background(), row()); err != nil {
		t.Fatal(err)
	}
	<-run.started
	if s.ServiceTime() != 400*time.Millisecond {
		t.Fatalf("service time %v", s.ServiceTime())
	}

	bg := WithPriority(context.Background(), Background)
	var wg sync.WaitGroup
	const backlog = 10
	for i := range backlog {
		wg.Go(func() {
			if _, err := s.Submit(bg, row()); err != nil {
				t.Errorf("background request %d: %v", i, err)
			}
		})
		if i == 0 {
			<-run.started // running; the rest queue
		}
	}
	waitFor(t, "the backlog queued", func() bool { return s.Pending() == backlog-1 })
	// Nine queued background rows at 400ms would be 3.6s of wait for
	// anyone behind them; an interactive request goes ahead of them.
	if err := s.CheckLoad(context.Background()); err != nil {
		t.Fatalf("an interactive request is shed for a job's backlog: %v", err)
	}
	if w := s.ExpectedWait(); w != 400*time.Millisecond {
		t.Fatalf("interactive expected wait %v, want 400ms (the running batch only)", w)
	}
	// Waiting long past the budget does not drop them.
	clk.advance(10 * time.Second)
	for range backlog {
		run.proceed <- struct{}{}
	}
	wg.Wait()
}
