package inference

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// affineRows makes an input for affine_f32.onnx (x [B,4] -> y = 2x+1,
// sum = Σx) whose values are unique to id, so crossed results show.
func affineRows(id, rows int) Tensor {
	x := make([]float32, rows*4)
	for r := 0; r < rows; r++ {
		for j := 0; j < 4; j++ {
			x[r*4+j] = float32(id) + float32(r)*0.125 + float32(j)*0.03125
		}
	}
	return NewTensor([]int64{int64(rows), 4}, x)
}

func checkAffine(t *testing.T, in Tensor, out []Tensor) {
	t.Helper()
	if len(out) != 2 {
		t.Fatalf("want 2 outputs, got %d", len(out))
	}
	x, y, sum := Values[float32](in), Values[float32](out[0]), Values[float32](out[1])
	rows := int(in.Shape[0])
	if !slices.Equal(out[0].Shape, []int64{int64(rows), 4}) || !slices.Equal(out[1].Shape, []int64{int64(rows), 1}) {
		t.Fatalf("output shapes %v %v for %d rows", out[0].Shape, out[1].Shape, rows)
	}
	for i := range x {
		if y[i] != 2*x[i]+1 {
			t.Fatalf("y[%d] = %v, want %v (crossed or wrong result)", i, y[i], 2*x[i]+1)
		}
	}
	for r := 0; r < rows; r++ {
		var want float64
		for j := 0; j < 4; j++ {
			want += float64(x[r*4+j])
		}
		if math.Abs(float64(sum[r])-want) > 1e-3 {
			t.Fatalf("sum[%d] = %v, want %v", r, sum[r], want)
		}
	}
}

func TestBatchesFormUpToMaxBatchSize(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	rec := &recorder{}
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 8, MaxQueueSize: 64, Instances: 1}, rec)

	var wg sync.WaitGroup
	submit := func(id int) {
		defer wg.Done()
		in := affineRows(id, 1)
		out, err := s.Submit(context.Background(), []Tensor{in})
		if err != nil {
			t.Errorf("request %d: %v", id, err)
			return
		}
		checkAffine(t, in, out)
	}
	wg.Add(1)
	go submit(0)
	<-g.started // the only instance is now busy
	for id := 1; id <= 16; id++ {
		wg.Add(1)
		go submit(id)
	}
	waitFor(t, "16 queued requests", func() bool { return s.Pending() == 16 })
	g.open()
	wg.Wait()

	if got := rec.batchSizes(); !slices.Equal(got, []int{1, 8, 8}) {
		t.Fatalf("batch sizes %v, want [1 8 8]", got)
	}
}

func TestMultiRowRequestsShareABatch(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	rec := &recorder{}
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 4, MaxQueueSize: 64, Instances: 1}, rec)

	var wg sync.WaitGroup
	submit := func(id, rows int) {
		defer wg.Done()
		submitAffine(t, s, id, rows)
	}
	wg.Add(1)
	go submit(0, 1)
	<-g.started
	for id, rows := range []int{3, 1, 2, 2} {
		wg.Add(1)
		go submit(id+1, rows)
		waitFor(t, "queued", func() bool { return s.Pending() == id+1 })
	}
	g.open()
	wg.Wait()
	// 3+1 fill a batch of 4, then 2+2.
	if got := rec.batchSizes(); !slices.Equal(got, []int{1, 4, 4}) {
		t.Fatalf("batch sizes %v, want [1 4 4]", got)
	}
	if _, err := s.Submit(context.Background(), []Tensor{affineRows(9, 5)}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("5 rows into max batch 4: got %v, want ErrBadRequest", err)
	}
}

func TestResultsNeverCrossed(t *testing.T) {
	rec := &recorder{}
	s := NewScheduler(loadSession(t, "affine_f32.onnx"), BatchConfig{
		MaxBatchSize: 8, MaxQueueDelay: 200 * time.Microsecond, MaxQueueSize: 1024, Instances: 2,
	}, rec)
	defer s.Close()

	const requests = 400
	var wg sync.WaitGroup
	var mu sync.Mutex
	cancelled, completed := 0, 0
	for id := 0; id < requests; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			rows := 1 + rng.IntN(3)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if id%5 == 0 { // cancel some requests while they may be queued or running
				go func() {
					time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
					cancel()
				}()
			}
			in := affineRows(id, rows)
			out, err := s.Submit(ctx, []Tensor{in})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("request %d: %v", id, err)
				}
				cancelled++
				return
			}
			completed++
			checkAffine(t, in, out)
		}()
	}
	wg.Wait()
	if completed < requests/2 {
		t.Fatalf("only %d of %d requests completed", completed, requests)
	}
	batched := false
	for _, b := range rec.batchSizes() {
		if b > 8 {
			t.Fatalf("batch of %d rows exceeds max 8", b)
		}
		batched = batched || b > 3
	}
	if !batched {
		t.Fatalf("no batch combined several requests: %v", rec.batchSizes())
	}
	t.Logf("%d completed, %d cancelled, %d batches", completed, cancelled, len(rec.batchSizes()))
}

func TestFullQueueIsRejectedAtOnce(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 1, MaxQueueSize: 2, Instances: 1}, nil)

	var wg sync.WaitGroup
	for id := 0; id < 3; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Submit(context.Background(), []Tensor{affineRows(id, 1)}); err != nil {
				t.Errorf("request %d: %v", id, err)
			}
		}()
		if id == 0 {
			<-g.started
		}
	}
	waitFor(t, "a full queue", func() bool { return s.Pending() == 2 })
	// The gate is still shut: if Submit waited for room, this would hang.
	if _, err := s.Submit(context.Background(), []Tensor{affineRows(9, 1)}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("got %v, want ErrQueueFull", err)
	}
	g.open()
	wg.Wait()
}

func TestEndedRequestsAreDroppedBeforePacking(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	rec := &recorder{}
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 8, MaxQueueSize: 16, Instances: 1}, rec)

	errs := make([]error, 4)
	var wg sync.WaitGroup
	run := func(i int, ctx context.Context) {
		defer wg.Done()
		_, errs[i] = s.Submit(ctx, []Tensor{affineRows(100+i, 1)})
	}
	wg.Add(1)
	go run(0, context.Background())
	<-g.started

	cancelCtx, cancel := context.WithCancel(context.Background())
	expiring := newExpiringContext()
	for i, ctx := range []context.Context{cancelCtx, expiring, context.Background()} {
		wg.Add(1)
		go run(i+1, ctx)
		waitFor(t, "queued", func() bool { return s.Pending() == i+1 })
	}
	cancel()
	expiring.expire()
	g.open()
	wg.Wait()

	if !errors.Is(errs[1], context.Canceled) || !errors.Is(errs[2], context.DeadlineExceeded) {
		t.Fatalf("cancelled: %v, expired: %v", errs[1], errs[2])
	}
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("live requests failed: %v, %v", errs[0], errs[3])
	}
	if got := rec.batchSizes(); !slices.Equal(got, []int{1, 1}) {
		t.Fatalf("batch sizes %v, want [1 1]: ended requests took batch slots", got)
	}
	g.mu.Lock()
	second := Values[float32](g.runs[1][0])
	g.mu.Unlock()
	if second[0] != 103 {
		t.Fatalf("second batch packed input %v, want only request 3's", second)
	}
}

func TestSameShapeBucketing(t *testing.T) {
	g := newGated(loadSession(t, "affine_dyn.onnx"))
	rec := &recorder{}
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 8, MaxQueueSize: 16, Instances: 1}, rec)

	vec := func(id, n int) Tensor {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(id*10 + i)
		}
		return NewTensor([]int64{1, int64(n)}, x)
	}
	var wg sync.WaitGroup
	submit := func(id, n int) {
		defer wg.Done()
		in := vec(id, n)
		out, err := s.Submit(context.Background(), []Tensor{in})
		if err != nil {
			t.Errorf("request %d: %v", id, err)
			return
		}
		x, y := Values[float32](in), Values[float32](out[0])
		if len(y) != n {
			t.Errorf("request %d: %d outputs for %d inputs", id, len(y), n)
			return
		}
		for i := range x {
			if y[i] != 2*x[i]+1 {
				t.Errorf("request %d: y[%d] = %v, want %v", id, i, y[i], 2*x[i]+1)
			}
		}
	}
	wg.Add(1)
	go submit(0, 3)
	<-g.started
	for id, n := range []int{3, 5, 3, 5, 5} {
		wg.Add(1)
		go submit(id+1, n)
		waitFor(t, "queued", func() bool { return s.Pending() == id+1 })
	}
	g.open()
	wg.Wait()
	// The oldest queued request has width 3, so the two width-3 requests go
	// first, then the three width-5 ones.
	if got := rec.batchSizes(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("batch sizes %v, want [1 2 3]", got)
	}
}

// fakeClock is a clock the test moves by hand: timers fire when advance
// passes their deadline, and each new timer is announced on created.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	created chan *fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1000, 0), created: make(chan *fakeTimer, 64)}
}

type fakeTimer struct {
	d        time.Duration
	deadline time.Time
	c        chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return true }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) timer {
	c.mu.Lock()
	t := &fakeTimer{d: d, deadline: c.now.Add(d), c: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.created <- t
	return t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.deadline.After(c.now) {
			return false
		}
		t.c <- c.now
		return true
	})
}

func TestLoneRequestWaitsMaxQueueDelay(t *testing.T) {
	const delay = 5 * time.Millisecond
	clk := newFakeClock()
	rec := &recorder{}
	s := newScheduler(loadSession(t, "affine_f32.onnx"), BatchConfig{
		MaxBatchSize: 8, MaxQueueDelay: delay, MaxQueueSize: 8, Instances: 1,
	}, rec, clk)
	defer s.Close()

	done := make(chan error, 1)
	in := affineRows(1, 1)
	go func() {
		out, err := s.Submit(context.Background(), []Tensor{in})
		if err == nil {
			checkAffine(t, in, out)
		}
		done <- err
	}()
	tm := <-clk.created
	if tm.d != delay {
		t.Fatalf("the lone request waits %v, want max_queue_delay %v", tm.d, delay)
	}
	if b := rec.batchSizes(); len(b) != 0 {
		t.Fatalf("a batch ran before the delay passed: %v", b)
	}
	clk.advance(delay)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.batchSizes(), []int{1}) || rec.queued[0] != delay {
		t.Fatalf("batches %v, queue time %v; want one batch after exactly %v", rec.batchSizes(), rec.queued, delay)
	}
}

func TestPreferredBatchSizeStartsWithoutWaiting(t *testing.T) {
	clk := newFakeClock()
	rec := &recorder{}
	s := newScheduler(loadSession(t, "affine_f32.onnx"), BatchConfig{
		MaxBatchSize: 8, MaxQueueDelay: time.Hour, PreferredBatchSizes: []int{2}, MaxQueueSize: 8, Instances: 1,
	}, rec, clk)
	defer s.Close()

	var wg sync.WaitGroup
	for id := 0; id < 2; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := affineRows(id, 1)
			out, err := s.Submit(context.Background(), []Tensor{in})
			if err != nil {
				t.Errorf("request %d: %v", id, err)
				return
			}
			checkAffine(t, in, out)
		}()
		if id == 0 {
			waitFor(t, "queued", func() bool { return s.Pending() == 1 })
		}
	}
	// No timer ever fires and the fake clock never moves: only reaching the
	// preferred size can have started the batch.
	wg.Wait()
	if got := rec.batchSizes(); !slices.Equal(got, []int{2}) {
		t.Fatalf("batch sizes %v, want [2]", got)
	}
}

func TestCloseRunsQueuedAndRefusesNew(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	s := NewScheduler(g, BatchConfig{MaxBatchSize: 4, MaxQueueSize: 8, Instances: 1}, nil)
	t.Cleanup(g.open) // a failing test must not leave Close waiting on the gate
	var wg sync.WaitGroup
	for id := 0; id < 3; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := affineRows(id, 1)
			out, err := s.Submit(context.Background(), []Tensor{in})
			if err != nil {
				t.Errorf("queued request %d failed on close: %v", id, err)
				return
			}
			checkAffine(t, in, out)
		}()
		if id == 0 {
			<-g.started
		}
	}
	waitFor(t, "queued", func() bool { return s.Pending() == 2 })
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	waitFor(t, "closing", func() bool {
		// Until Close takes effect the probe is queued behind the shut gate;
		// its short deadline lets it give up instead of waiting there.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		_, err := s.Submit(ctx, []Tensor{affineRows(9, 1)})
		return errors.Is(err, ErrClosed)
	})
	g.open()
	wg.Wait()
	<-closed
}

func TestRunErrorReachesTheCaller(t *testing.T) {
	s := NewScheduler(loadSession(t, "affine_f32.onnx"), BatchConfig{MaxBatchSize: 4, MaxQueueSize: 8, Instances: 1}, nil)
	defer s.Close()
	// A float64 input for a float32 model passes validation; the run fails.
	bad := Tensor{DType: FP64, Shape: []int64{1, 4}, Data: make([]byte, 32)}
	if _, err := s.Submit(context.Background(), []Tensor{bad}); err == nil || !strings.Contains(err.Error(), "wants FP32") {
		t.Fatalf("got %v, want a dtype error", err)
	}
	in := affineRows(1, 1)
	out, err := s.Submit(context.Background(), []Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	checkAffine(t, in, out)
}

// With batch buckets, a batch runs padded with zero rows to the smallest
// bucket that holds it, and every request still gets exactly its rows.
func TestBatchBucketsPadWithZeroRows(t *testing.T) {
	g := newGated(loadSession(t, "affine_f32.onnx"))
	rec := &recorder{}
	s := gatedScheduler(t, g, BatchConfig{MaxBatchSize: 8, BatchBuckets: []int{8, 2, 4, 1, 16, 4}, MaxQueueSize: 64, Instances: 1}, rec)
	if got := s.Config().BatchBuckets; !slices.Equal(got, []int{1, 2, 4, 8}) {
		t.Fatalf("buckets normalised to %v, want [1 2 4 8]", got)
	}

	// A lone request of 3 rows runs at 4; then three single rows queued
	// behind it run together at 4; then one of 5 rows at 8.
	var wg sync.WaitGroup
	wg.Go(func() { submitAffine(t, s, 0, 3) })
	<-g.started
	for id := 1; id <= 3; id++ {
		wg.Go(func() { submitAffine(t, s, id, 1) })
	}
	waitFor(t, "3 queued requests", func() bool { return s.Pending() == 3 })
	g.open()
	wg.Wait()
	submitAffine(t, s, 4, 5)

	if got := rec.batchSizes(); !slices.Equal(got, []int{3, 3, 5}) {
		t.Errorf("observed batch sizes %v, want the real rows [3 3 5]", got)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var ran []int64
	for _, in := range g.runs {
		ran = append(ran, in[0].Shape[0])
		x := Values[float32](in[0])
		if pad := x[len(x)-4:]; slices.ContainsFunc(pad, func(v float32) bool { return v != 0 }) {
			t.Errorf("padding row %v is not zero", pad)
		}
	}
	if !slices.Equal(ran, []int64{4, 4, 8}) {
		t.Errorf("runs had %v rows, want [4 4 8]", ran)
	}
}

func TestBucketChoice(t *testing.T) {
	c := BatchConfig{MaxBatchSize: 16, BatchBuckets: PowerOfTwoBuckets(16)}.normalised()
	if !slices.Equal(c.BatchBuckets, []int{1, 2, 4, 8, 16}) {
		t.Fatalf("PowerOfTwoBuckets(16) = %v", c.BatchBuckets)
	}
	for rows, want := range map[int]int{1: 1, 2: 2, 3: 4, 5: 8, 9: 16, 16: 16} {
		if got := c.bucket(rows); got != want {
			t.Errorf("bucket(%d) = %d, want %d", rows, got, want)
		}
	}
	if got := PowerOfTwoBuckets(12); !slices.Equal(got, []int{1, 2, 4, 8, 12}) {
		t.Errorf("PowerOfTwoBuckets(12) = %v", got)
	}
	if got := PowerOfTwoBuckets(1); !slices.Equal(got, []int{1}) {
		t.Errorf("PowerOfTwoBuckets(1) = %v", got)
	}
	// Without buckets a batch runs at its own size.
	if got := (BatchConfig{MaxBatchSize: 8}).normalised().bucket(3); got != 3 {
		t.Errorf("no buckets: bucket(3) = %d", got)
	}
	// Past the largest bucket, as it is.
	if got := (BatchConfig{MaxBatchSize: 8, BatchBuckets: []int{1, 2}}).normalised().bucket(5); got != 5 {
		t.Errorf("past the buckets: bucket(5) = %d", got)
	}
}

// submitAffine submits rows rows for request id and checks its results.
func submitAffine(t *testing.T, s *Scheduler, id, rows int) {
	in := affineRows(id, rows)
	out, err := s.Submit(context.Background(), []Tensor{in})
	if err != nil {
		t.Errorf("request %d: %v", id, err)
		return
	}
	checkAffine(t, in, out)
}
