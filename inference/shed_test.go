package inference

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/recovered"
)

// timedRunner takes exactly d of the fake clock per run, so the service
// time the scheduler measures is known, and holds each run until the test
// lets it go.
type timedRunner struct {
	clk     *fakeClock
	d       time.Duration
	started chan struct{}
	proceed chan struct{}
}

func (r *timedRunner) Run(in []Tensor) ([]Tensor, error) {
	r.started <- struct{}{}
	<-r.proceed
	r.clk.advance(r.d)
	return []Tensor{in[0]}, nil
}

// deadlineContext has a deadline on the fake clock and never ends by
// itself.
type deadlineContext struct {
	context.Context
	at time.Time
}

func (c deadlineContext) Deadline() (time.Time, bool) { return c.at, true }

func row() []Tensor { return []Tensor{NewTensor([]int64{1, 1}, []float32{1})} }

func TestShedsByExpectedWait(t *testing.T) {
	clk := newFakeClock()
	run := &timedRunner{clk: clk, d: 400 * time.Millisecond, started: make(chan struct{}, 16), proceed: make(chan struct{}, 16)}
	s := newScheduler(run, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 64, Instances: 1, MaxQueueWait: time.Second}, nil, clk)
	defer s.Close()

	// A slow first run (a warm-up, in production) is forgotten; the next
	// one sets the service time.
	run.d = 5 * time.Second
	run.proceed <- struct{}{}
	if _, err := s.Submit(context.Background(), row()); err != nil {
		t.Fatal(err)
	}
	<-run.started
	s.ResetServiceTime()
	run.d = 400 * time.Millisecond
	run.proceed <- struct{}{}
	if _, err := s.Submit(context.Background(), row()); err != nil {
		t.Fatal(err)
	}
	<-run.started
	if got := s.ServiceTime(); got != 400*time.Millisecond {
		t.Fatalf("service time %v, want 400ms", got)
	}

	// One running and one queued: a third waits (1 + 1) x 400ms = 0.8s,
	// within the budget; a fourth would wait 1.2s.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	submit := func(ctx context.Context) {
		wg.Go(func() {
			_, err := s.Submit(ctx, row())
			errs <- err
		})
	}
	submit(context.Background())
	<-run.started
	for i := 1; i <= 2; i++ {
		submit(context.Background())
		waitFor(t, "queued", func() bool { return s.Pending() == i })
	}
	if w := s.ExpectedWait(); w != 1200*time.Millisecond {
		t.Fatalf("expected wait %v, want 1.2s", w)
	}
	_, err := s.Submit(context.Background(), row())
	var re *RetryError
	if !errors.Is(err, ErrOverloaded) || !errors.As(err, &re) || re.After != 200*time.Millisecond {
		t.Fatalf("got %v, want ErrOverloaded retrying after 200ms", err)
	}
	if err := s.CheckLoad(context.Background()); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("CheckLoad: %v", err)
	}

	// The deadline bounds the budget too: with 1.4s left, wait (1.2s) plus
	// one run (0.4s) does not fit.
	ctx := deadlineContext{Context: context.Background(), at: clk.Now().Add(1400 * time.Millisecond)}
	if err := s.CheckLoad(ctx); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a request that cannot meet its deadline: %v", err)
	}
	for range 3 {
		run.proceed <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("an admitted request failed: %v", err)
		}
	}
	if err := s.CheckLoad(ctx); err != nil {
		t.Fatalf("with the queue drained: %v", err)
	}
}

func TestFullQueueSaysWhenToRetry(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 1, Instances: 1}, nil)
	var wg sync.WaitGroup
	wg.Go(func() { s.Submit(context.Background(), []Tensor{affineRows(1, 1)}) })
	<-g.started
	wg.Go(func() { s.Submit(context.Background(), []Tensor{affineRows(1, 1)}) })
	waitFor(t, "a full queue", func() bool { return s.Pending() == 1 })
	_, err := s.Submit(context.Background(), []Tensor{affineRows(2, 1)})
	var re interface{ RetryAfter() time.Duration }
	if !errors.Is(err, ErrQueueFull) || !errors.As(err, &re) {
		t.Fatalf("got %v, want ErrQueueFull with a retry time", err)
	}
	// CheckLoad, which pipelines ask before decoding, says so too.
	if err := s.CheckLoad(context.Background()); !errors.Is(err, ErrQueueFull) || !errors.As(err, &re) {
		t.Fatalf("CheckLoad with a full queue: %v, want ErrQueueFull", err)
	}
	g.open()
	wg.Wait()
}

func TestCancelledRequestLeavesTheQueueAtOnce(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	rec := &recorder{}
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 1, Instances: 1}, rec)
	var wg sync.WaitGroup
	wg.Go(func() { s.Submit(context.Background(), []Tensor{affineRows(1, 1)}) })
	<-g.started
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, []Tensor{affineRows(2, 1)})
		done <- err
	}()
	waitFor(t, "queued", func() bool { return s.Pending() == 1 })
	cancel()
	// The batch ahead is still running: the cancelled request must not
	// wait for it, and its slot is free for the next one.
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if s.Pending() != 0 {
		t.Fatal("the cancelled request still holds its queue slot")
	}
	wg.Go(func() {
		if _, err := s.Submit(context.Background(), []Tensor{affineRows(3, 1)}); err != nil {
			t.Errorf("the next request: %v", err)
		}
	})
	waitFor(t, "queued", func() bool { return s.Pending() == 1 })
	g.open()
	wg.Wait()
}

// readingRunner reads its input in Go after the test lets it, as ONNX
// Runtime reads a pass-through buffer.
type readingRunner struct {
	started, proceed chan struct{}
	sum              float32
}

func (r *readingRunner) Run(in []Tensor) ([]Tensor, error) {
	r.started <- struct{}{}
	<-r.proceed
	for _, v := range Values[float32](in[0]) {
		r.sum += v
	}
	return []Tensor{in[0]}, nil
}

// A request whose deadline passes while its batch runs returns only once
// the batch no longer reads its input (what a caller does after a 504 is
// hand the buffer to the next request).
func TestInputsAreNotReleasedWhileABatchReadsThem(t *testing.T) {
	waiting := make(chan struct{}, 1)
	testHookAwaitRelease = func() { waiting <- struct{}{} }
	defer func() { testHookAwaitRelease = func() {} }()
	for _, batch := range []int{1, 4} {
		run := &readingRunner{started: make(chan struct{}, 4), proceed: make(chan struct{})}
		s := NewScheduler(run, BatchConfig{MaxBatchSize: batch, MaxQueueSize: 4, Instances: 1}, nil)
		buf := []float32{1, 2, 3, 4}
		ctx := newExpiringContext()
		returned := make(chan error, 1)
		go func() {
			_, err := s.Submit(ctx, []Tensor{NewTensor([]int64{1, 4}, buf)})
			buf[0] = 100
			returned <- err
		}()
		<-run.started
		ctx.expire()
		select {
		case err := <-returned:
			t.Fatalf("batch %d: Submit returned (%v) while its batch had yet to read the input", batch, err)
		case <-waiting:
		}
		close(run.proceed)
		if err := <-returned; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if run.sum != 10 {
			t.Fatalf("batch %d: the run read %v, want the input as submitted", batch, run.sum)
		}
		s.Close()
	}
}

type panickingRunner struct{ calls int }

func (r *panickingRunner) Run(in []Tensor) ([]Tensor, error) {
	r.calls++
	if r.calls == 1 {
		panic("boom")
	}
	return []Tensor{in[0]}, nil
}

func TestPanicInARunFailsItsBatchOnly(t *testing.T) {
	before := panicCount("scheduler.run")
	s := NewScheduler(&panickingRunner{}, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 4, Instances: 1}, nil)
	defer s.Close()
	if _, err := s.Submit(context.Background(), row()); !errors.Is(err, recovered.ErrPanic) {
		t.Fatalf("got %v, want a recovered panic", err)
	}
	if _, err := s.Submit(context.Background(), row()); err != nil {
		t.Fatalf("the scheduler did not survive: %v", err)
	}
	if got := panicCount("scheduler.run"); got != before+1 {
		t.Fatalf("panics counted: %d, want %d", got, before+1)
	}
}

func panicCount(where string) uint64 {
	for _, c := range recovered.Counts() {
		if c.Where == where {
			return c.N
		}
	}
	return 0
}

// panickyObserver panics when told of a dropped request, inside the
// dispatcher.
type panickyObserver struct{ nopObserver }

func (panickyObserver) ObserveRequest(_, compute time.Duration, err error) {
	if err != nil && compute == 0 {
		panic("observer")
	}
}

func TestPanicInTheDispatcherFailsTheQueueOnly(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 8, Instances: 1}, panickyObserver{})
	before := panicCount("scheduler.dispatch")
	var wg sync.WaitGroup
	wg.Go(func() { s.Submit(context.Background(), []Tensor{affineRows(1, 1)}) })
	<-g.started
	// An expired request in the queue makes the dispatcher's drop report it
	// to the observer, which panics; the live request queued with it fails.
	expired := newExpiringContext()
	wg.Go(func() { s.Submit(expired, []Tensor{affineRows(2, 1)}) })
	waitFor(t, "queued", func() bool { return s.Pending() == 1 })
	errs := make(chan error, 1)
	wg.Go(func() {
		_, err := s.Submit(context.Background(), []Tensor{affineRows(3, 1)})
		errs <- err
	})
	waitFor(t, "queued", func() bool { return s.Pending() == 2 })
	expired.expired.Store(true) // ended, but Submit has not seen it
	g.open()
	if err := <-errs; !errors.Is(err, recovered.ErrPanic) {
		t.Fatalf("queued request: %v", err)
	}
	wg.Wait()
	if got := panicCount("scheduler.dispatch"); got != before+1 {
		t.Fatalf("panics: %d", got)
	}
	if _, err := s.Submit(context.Background(), []Tensor{affineRows(4, 1)}); err != nil {
		t.Fatalf("after the panic: %v", err)
	}
}

// Run times that vary make the expected wait err long by their mean
// deviation.
func TestExpectedWaitCountsTheSpreadOfRunTimes(t *testing.T) {
	clk := newFakeClock()
	run := &timedRunner{clk: clk, started: make(chan struct{}, 16), proceed: make(chan struct{}, 16)}
	s := newScheduler(run, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 8, Instances: 1, MaxQueueWait: time.Minute}, nil, clk)
	defer s.Close()
	for _, d := range []time.Duration{400 * time.Millisecond, 800 * time.Millisecond} {
		run.d = d
		run.proceed <- struct{}{}
		if _, err := s.Submit(context.Background(), row()); err != nil {
			t.Fatal(err)
		}
		<-run.started
	}
	// service 400 + (800-400)/4 = 500ms, spread 400/4 = 100ms.
	if got := s.ServiceTime(); got != 500*time.Millisecond {
		t.Fatalf("service time %v", got)
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.Submit(context.Background(), row()) })
	<-run.started
	if got := s.ExpectedWait(); got != 600*time.Millisecond {
		t.Fatalf("expected wait behind one running batch: %v, want 600ms", got)
	}
	run.proceed <- struct{}{}
	wg.Wait()
}

// A request that waited past the budget in the queue (the runs slowed
// down after it was admitted) is answered 429 instead of run late.
func TestRequestsPastTheBudgetLeaveTheQueue(t *testing.T) {
	clk := newFakeClock()
	run := &timedRunner{clk: clk, d: 2 * time.Second, started: make(chan struct{}, 16), proceed: make(chan struct{}, 16)}
	s := newScheduler(run, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 8, Instances: 1, MaxQueueWait: time.Second}, nil, clk)
	defer s.Close()
	var wg sync.WaitGroup
	wg.Go(func() { s.Submit(context.Background(), row()) })
	<-run.started
	errs := make(chan error, 1)
	wg.Go(func() {
		_, err := s.Submit(context.Background(), row())
		errs <- err
	})
	waitFor(t, "queued", func() bool { return s.Pending() == 1 })
	run.proceed <- struct{}{} // the first run takes 2s of the clock
	err := <-errs
	var re *RetryError
	if !errors.Is(err, ErrOverloaded) || !errors.As(err, &re) || re.After < time.Second {
		t.Fatalf("a request that waited 2s with a 1s budget: %v", err)
	}
	wg.Wait()
}
