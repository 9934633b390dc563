package inference

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/imgserve/imgserve/internal/recovered"
)

// BatchConfig is one model's scheduling policy, after Triton's dynamic
// batcher.
type BatchConfig struct {
	// MaxBatchSize is the most rows one run takes. 1 turns batching off:
	// each request runs as it came, without a copy.
	MaxBatchSize int
	// MaxQueueDelay is how long the oldest request may wait for others to
	// join its batch. 0 starts a batch with whatever is queued.
	MaxQueueDelay time.Duration
	// PreferredBatchSizes start a batch at once when the queued rows reach
	// one of them, without waiting for MaxQueueDelay.
	PreferredBatchSizes []int
	// MaxQueueSize bounds the requests waiting; past it Submit fails fast
	// with ErrQueueFull.
	MaxQueueSize int
	// Instances is how many batches may run at once.
	Instances int
	// BatchBuckets, when set, pad every batch with zero rows up to the
	// smallest bucket that holds it (a batch larger than every bucket runs
	// as it is), and the padding rows' outputs are dropped. On a GPU this
	// keeps the shapes a session sees to a few: the CUDA allocator's arena
	// and cuDNN's algorithm choices are per shape, and would otherwise grow
	// with every new batch size. On a CPU the padding is wasted work.
	BatchBuckets []int
	// MaxQueueWait is the load-shedding budget: a request whose expected
	// wait in the queue exceeds it, or would not let it finish before its
	// deadline, is refused at once with ErrOverloaded. 0 turns shedding
	// off. The expected wait comes from the measured service time of recent
	// batches, like Triton's queue policy with timeouts, but decided before
	// the request queues instead of after it waited in vain.
	MaxQueueWait time.Duration
	// SharedInputs are the positions of inputs without a batch dimension,
	// such as a decoder's use_cache_branch flag. Requests batch together only
	// when these are equal, and the batch passes them through as they are.
	SharedInputs []int
}

func (c BatchConfig) normalised() BatchConfig {
	c.MaxBatchSize = max(c.MaxBatchSize, 1)
	c.MaxQueueSize = max(c.MaxQueueSize, 1)
	c.Instances = max(c.Instances, 1)
	c.MaxQueueDelay = max(c.MaxQueueDelay, 0)
	c.MaxQueueWait = max(c.MaxQueueWait, 0)
	c.PreferredBatchSizes = slices.DeleteFunc(slices.Clone(c.PreferredBatchSizes), func(p int) bool {
		return p < 1 || p > c.MaxBatchSize
	})
	slices.Sort(c.PreferredBatchSizes)
	c.BatchBuckets = slices.DeleteFunc(slices.Clone(c.BatchBuckets), func(b int) bool {
		return b < 1 || b > c.MaxBatchSize
	})
	slices.Sort(c.BatchBuckets)
	c.BatchBuckets = slices.Compact(c.BatchBuckets)
	return c
}

// PowerOfTwoBuckets are 1, 2, 4... up to max, and max itself: the default
// buckets on a GPU.
func PowerOfTwoBuckets(max int) []int {
	var b []int
	for n := 1; n < max; n *= 2 {
		b = append(b, n)
	}
	return append(b, max)
}

// bucket is the batch size a batch of rows runs at.
func (c BatchConfig) bucket(rows int) int {
	for _, b := range c.BatchBuckets {
		if b >= rows {
			return b
		}
	}
	return rows
}

// Runner executes one batch. *Session is the Runner in production.
type Runner interface {
	Run(inputs []Tensor) ([]Tensor, error)
}

// Observer receives the scheduler's measurements; the server turns them into
// metrics. Calls come from the scheduler's goroutines and must not block.
type Observer interface {
	// ObserveBatch reports one executed batch.
	ObserveBatch(rows int, compute time.Duration)
	// ObserveRequest reports each request that left the queue: run, failed,
	// or dropped because its context ended (then compute is 0).
	ObserveRequest(queue, compute time.Duration, err error)
}

var (
	// ErrQueueFull is returned at once when MaxQueueSize requests wait.
	ErrQueueFull = errors.New("queue full")
	// ErrOverloaded is returned at once when a request's expected queue
	// wait exceeds MaxQueueWait or its deadline.
	ErrOverloaded = errors.New("overloaded")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("scheduler closed")
	// ErrBadRequest wraps inputs that cannot be batched.
	ErrBadRequest = errors.New("bad request")
)

// RetryError is a refusal that says when to try again: the server turns
// After into a Retry-After header. The scheduler's load shedding and the
// server's admission both refuse with it.
type RetryError struct {
	Err   error
	After time.Duration
	msg   string
}

// Refuse makes a RetryError wrapping err, with msg for the client.
func Refuse(err error, after time.Duration, msg string) *RetryError {
	return &RetryError{Err: err, After: after, msg: msg}
}

func (e *RetryError) Error() string             { return e.msg }
func (e *RetryError) Unwrap() error             { return e.Err }
func (e *RetryError) RetryAfter() time.Duration { return e.After }

// Scheduler batches requests for one model and runs them on a Runner.
//
// One dispatcher goroutine takes an instance slot first and only then forms a
// batch, so while every instance is busy, requests accumulate into larger
// batches by themselves.
type Scheduler struct {
	cfg   BatchConfig
	run   Runner
	obs   Observer
	clock clock
	pool  bufferPool
	// pinned, on a GPU, replaces pool: batches are packed straight into
	// page-locked memory (see pinnedPool).
	pinned *pinnedPool
	stats  statsRecorder

	mu sync.Mutex
	// queue is ordered by priority, then arrival: an interactive request
	// goes before every background one.
	queue   []*request
	rowsAt  [Background + 1]int // rows waiting in queue, at each priority
	busy    int                 // batches running
	closed  bool
	service time.Duration // moving average of a batch's run time; 0 until measured
	spread  time.Duration // moving average of its deviation from service

	wake    chan struct{} // a request arrived, or Close was called
	slots   chan struct{} // one token per running batch
	stopped chan struct{} // the dispatcher has exited
	running sync.WaitGroup
}

type request struct {
	ctx    context.Context
	inputs []Tensor
	rows   int
	prio   Priority
	key    string // requests batch together only with the same key
	// submitted is when Submit was called, queued when the request joined
	// the queue.
	submitted, queued time.Time
	done              chan result
	// released is closed once no batch reads inputs any more: after
	// packing copied them, after the run that read them in place, or when
	// the request left the queue unrun. Only then may the caller reuse
	// its buffers.
	released chan struct{}
}

type result struct {
	out []Tensor
	err error
}

// NewScheduler starts a scheduler. obs may be nil.
func NewScheduler(run Runner, cfg BatchConfig, obs Observer) *Scheduler {
	return newScheduler(run, cfg, obs, realClock{})
}

func newScheduler(run Runner, cfg BatchConfig, obs Observer, c clock) *Scheduler {
	if obs == nil {
		obs = nopObserver{}
	}
	cfg = cfg.normalised()
	s := &Scheduler{
		cfg:     cfg,
		run:     run,
		obs:     obs,
		clock:   c,
		wake:    make(chan struct{}, 1),
		slots:   make(chan struct{}, cfg.Instances),
		stopped: make(chan struct{}),
	}
	if src, ok := run.(interface{ pinnedPool(keep int) *pinnedPool }); ok && cfg.MaxBatchSize > 1 {
		s.pinned = src.pinnedPool(2 * cfg.Instances)
	}
	go s.dispatch()
	return s
}

// Config is the policy in force, after defaults.
func (s *Scheduler) Config() BatchConfig { return s.cfg }

// Pending is the number of requests waiting for a batch.
func (s *Scheduler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// ServiceTime is the moving average of a batch's run time, 0 before the
// first measured batch.
func (s *Scheduler) ServiceTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.service
}

// ExpectedWait is how long a request submitted now would wait for its
// batch to start, at the most: the batches queued ahead of it and those
// running (as if they had just started), spread over the instances, each
// taking the measured service time plus its mean deviation (as TCP's
// retransmission timer reckons with a round trip's). Erring long keeps the
// requests that are admitted within the budget when run times vary, as
// they do on a shared machine.
func (s *Scheduler) ExpectedWait() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expectedWait(Interactive)
}

// expectedWait counts the rows that would be ahead of a request of
// priority p: those of its priority and higher.
func (s *Scheduler) expectedWait(p Priority) time.Duration {
	if s.service == 0 {
		return 0
	}
	rows := 0
	for q := Interactive; q <= p; q++ {
		rows += s.rowsAt[q]
	}
	ahead := (rows + s.cfg.MaxBatchSize - 1) / s.cfg.MaxBatchSize
	return time.Duration(ahead+s.busy) * (s.service + s.spread) / time.Duration(s.cfg.Instances)
}

// CheckLoad tells whether a request with ctx's deadline would be refused
// now, for a full queue (ErrQueueFull) or for the expected wait
// (ErrOverloaded), as a *RetryError, without queueing anything. Callers
// use it before costly preprocessing; Submit checks again.
func (s *Scheduler) CheckLoad(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkFull(PriorityOf(ctx)); err != nil {
		return err
	}
	return s.shed(ctx)
}

// checkFull refuses a request of priority p when MaxQueueSize live
// requests would be ahead of it: a background backlog does not fill the
// queue for interactive requests. Called with mu held.
func (s *Scheduler) checkFull(p Priority) error {
	if s.queued(p) >= s.cfg.MaxQueueSize {
		s.dropEnded()
	}
	if s.queued(p) >= s.cfg.MaxQueueSize {
		// One slot frees when the oldest batch ahead starts.
		return &RetryError{Err: ErrQueueFull, After: s.service / time.Duration(s.cfg.Instances), msg: "model queue is full"}
	}
	return nil
}

// shed refuses a request whose expected wait exceeds the budget, or whose
// wait and run would outlast its deadline. Background requests are never
// shed: they wait. Called with mu held.
func (s *Scheduler) shed(ctx context.Context) error {
	if s.cfg.MaxQueueWait <= 0 || s.service == 0 || PriorityOf(ctx) != Interactive {
		return nil
	}
	wait := s.expectedWait(Interactive)
	allowed, why := s.cfg.MaxQueueWait, "the queue-wait budget"
	if dl, ok := ctx.Deadline(); ok {
		if left := dl.Sub(s.clock.Now()) - s.service - s.spread; left < allowed {
			allowed, why = max(left, 0), "the request's deadline"
		}
	}
	if wait <= allowed {
		return nil
	}
	return &RetryError{Err: ErrOverloaded, After: wait - allowed, msg: fmt.Sprintf(
		"model busy: the expected queue wait of %v exceeds %s (%v)", wait.Round(time.Millisecond), why, allowed.Round(time.Millisecond))}
}

// testHookAwaitRelease lets a test see a cancelled Submit wait for its batch.
var testHookAwaitRelease = func() {}

// Submit queues one request and waits for its outputs. With batching on,
// every input's leading dimension is the request's row count, and the
// outputs hold the same rows. Submit returns early with ctx's error when ctx
// ends; a request whose context ended is never packed into a batch. When
// Submit returns, no batch reads the inputs any more: the caller may reuse
// them, even after an error.
func (s *Scheduler) Submit(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	r := &request{ctx: ctx, inputs: inputs, prio: min(max(PriorityOf(ctx), Interactive), Background),
		done: make(chan result, 1), released: make(chan struct{}), submitted: s.clock.Now()}
	if err := s.enqueue(r); err != nil {
		s.stats.fail(s.clock.Now().Sub(r.submitted))
		return nil, err
	}
	s.signal()

	select {
	case res := <-r.done:
		return res.out, res.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	if i := slices.Index(s.queue, r); i >= 0 {
		// Still queued: it leaves now and frees its slot.
		s.queue = slices.Delete(s.queue, i, i+1)
		s.rowsAt[r.prio] -= r.rows
		s.mu.Unlock()
		now := s.clock.Now()
		s.obs.ObserveRequest(now.Sub(r.queued), 0, ctx.Err())
		s.stats.fail(now.Sub(r.submitted))
		demand.Add(-1)
		return nil, ctx.Err()
	}
	s.mu.Unlock()
	// A batch took it: wait until that batch no longer reads the inputs
	// (at most one run), so the caller cannot reuse them under its feet.
	testHookAwaitRelease()
	<-r.released
	return nil, ctx.Err()
}

// enqueue checks a request and queues it, or says why it cannot wait.
func (s *Scheduler) enqueue(r *request) error {
	if err := s.prepare(r); err != nil {
		return err
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.checkFull(r.prio); err != nil {
		return err
	}
	if err := s.shed(r.ctx); err != nil {
		return err
	}
	r.queued = s.clock.Now()
	// After every request of its priority or higher, before the lower ones.
	at := slices.IndexFunc(s.queue, func(q *request) bool { return q.prio > r.prio })
	if at < 0 {
		at = len(s.queue)
	}
	s.queue = slices.Insert(s.queue, at, r)
	s.rowsAt[r.prio] += r.rows
	demand.Add(1)
	return nil
}

// queued counts the requests waiting at priority p or higher. Called with
// mu held.
func (s *Scheduler) queued(p Priority) int {
	n := 0
	for _, q := range s.queue {
		if q.prio <= p {
			n++
		}
	}
	return n
}

// prepare validates a request and computes its row count and batch key.
func (s *Scheduler) prepare(r *request) error {
	if len(r.inputs) == 0 {
		return fmt.Errorf("%w: no inputs", ErrBadRequest)
	}
	for _, t := range r.inputs {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	if s.cfg.MaxBatchSize == 1 {
		r.rows = 1
		return nil
	}
	key := make([]byte, 0, 64)
	for i, t := range r.inputs {
		if slices.Contains(s.cfg.SharedInputs, i) {
			key = appendShape(key, t.DType, t.Shape)
			key = append(append(key, t.Data...), ';')
			continue
		}
		if len(t.Shape) == 0 {
			return fmt.Errorf("%w: input %d has no batch dimension", ErrBadRequest, i)
		}
		if r.rows == 0 {
			r.rows = int(t.Shape[0])
		} else if int(t.Shape[0]) != r.rows {
			return fmt.Errorf("%w: inputs disagree on the batch dimension (%d and %d)", ErrBadRequest, r.rows, t.Shape[0])
		}
		key = append(appendShape(key, t.DType, t.Shape[1:]), ';')
	}
	if r.rows < 1 || r.rows > s.cfg.MaxBatchSize {
		return fmt.Errorf("%w: batch of %d rows, the model takes 1 to %d", ErrBadRequest, r.rows, s.cfg.MaxBatchSize)
	}
	r.key = string(key)
	return nil
}

func appendShape(key []byte, dt DType, shape []int64) []byte {
	key = strconv.AppendInt(key, int64(dt), 10)
	for _, d := range shape {
		key = append(key, ',')
		key = strconv.AppendInt(key, d, 10)
	}
	return key
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops taking requests, runs those already queued, and waits for
// every batch to finish.
func (s *Scheduler) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
	<-s.stopped
	s.running.Wait()
	if s.pinned != nil {
		s.pinned.close()
	}
}

func (s *Scheduler) dispatch() {
	defer close(s.stopped)
	for {
		s.slots <- struct{}{}
		batch, ok := s.nextBatchRecovering()
		if !ok {
			<-s.slots
			continue
		}
		if batch == nil {
			<-s.slots
			return
		}
		s.running.Add(1)
		go s.execute(batch)
	}
}

// nextBatchRecovering is nextBatch with a panic (a bug in forming a
// batch, an observer's) failing every queued request instead of the
// process; ok is false then, and the dispatcher goes on.
func (s *Scheduler) nextBatchRecovering() (batch []*request, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			err := recovered.Report("scheduler.dispatch", v)
			s.mu.Lock()
			// The panic may have struck while a request was being
			// answered: answer and release each at most once.
			now := s.clock.Now()
			for _, r := range s.queue {
				s.stats.fail(now.Sub(r.submitted))
				demand.Add(-1)
				select {
				case <-r.released:
				default:
					close(r.released)
				}
				select {
				case r.done <- result{err: err}:
				default:
				}
			}
			s.queue, s.rowsAt = nil, [Background + 1]int{}
			s.mu.Unlock()
			batch, ok = nil, false
		}
	}()
	return s.nextBatch(), true
}

// nextBatch blocks until a batch is due and takes it off the queue. It
// returns nil once the scheduler is closed and the queue is empty.
func (s *Scheduler) nextBatch() []*request {
	for {
		batch, wait, closed := s.takeBatch()
		switch {
		case batch != nil:
			return batch
		case closed:
			return nil
		case wait < 0:
			<-s.wake
			continue
		}
		t := s.clock.NewTimer(wait)
		select {
		case <-s.wake:
		case <-t.C():
		}
		t.Stop()
	}
}

// takeBatch takes the next batch off the queue if one is due; else it
// says how long until the oldest request's delay passes (-1: the queue is
// empty) and whether the scheduler is closed with nothing left.
func (s *Scheduler) takeBatch() (batch []*request, wait time.Duration, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropEnded()
	if len(s.queue) == 0 {
		return nil, -1, s.closed
	}
	take, due := s.candidates()
	due = due || s.closed
	// The oldest request's delay, wherever its priority put it.
	oldest := s.queue[0].queued
	for _, r := range s.queue {
		if r.queued.Before(oldest) {
			oldest = r.queued
		}
	}
	deadline := oldest.Add(s.cfg.MaxQueueDelay)
	wait = deadline.Sub(s.clock.Now())
	if due || wait <= 0 {
		s.busy++
		return s.remove(take), 0, false
	}
	return nil, wait, false
}

// candidates returns how many queue positions, among requests with the
// oldest request's key, form the next batch, and whether it is due now: full,
// or at a preferred size.
func (s *Scheduler) candidates() (take []int, due bool) {
	if s.cfg.MaxBatchSize == 1 {
		return []int{0}, true
	}
	key := s.queue[0].key
	rows := 0
	preferredAt := -1 // length of take at the largest preferred size reached
	for i, r := range s.queue {
		if r.key != key {
			continue
		}
		if rows+r.rows > s.cfg.MaxBatchSize {
			return take, true
		}
		rows += r.rows
		take = append(take, i)
		if slices.Contains(s.cfg.PreferredBatchSizes, rows) {
			preferredAt = len(take)
		}
		if rows == s.cfg.MaxBatchSize {
			return take, true
		}
	}
	if preferredAt > 0 {
		return take[:preferredAt], true
	}
	return take, false
}

// remove takes the requests at the given ascending positions off the queue.
func (s *Scheduler) remove(positions []int) []*request {
	batch := make([]*request, len(positions))
	for i, p := range positions {
		batch[i] = s.queue[p]
		s.rowsAt[batch[i].prio] -= batch[i].rows
		s.queue[p] = nil
	}
	s.queue = slices.DeleteFunc(s.queue, func(r *request) bool { return r == nil })
	return batch
}

// dropEnded answers and removes requests whose context has ended, so they
// never take a batch slot, and, when shedding is on, requests that have
// waited past MaxQueueWait: the estimate that admitted them fell short
// (the runs slowed down), and like Triton's queue policy with timeouts the
// queue answers them 429 rather than let them finish ever later. So an
// interactive request that runs has waited no longer than the budget;
// background requests wait as long as it takes.
func (s *Scheduler) dropEnded() {
	now := s.clock.Now()
	s.queue = slices.DeleteFunc(s.queue, func(r *request) bool {
		err := r.ctx.Err()
		if waited := now.Sub(r.queued); err == nil && r.prio == Interactive && s.cfg.MaxQueueWait > 0 && waited > s.cfg.MaxQueueWait {
			err = &RetryError{Err: ErrOverloaded, After: max(s.expectedWait(Interactive)-s.cfg.MaxQueueWait, time.Second), msg: fmt.Sprintf(
				"model busy: the request waited %v in the queue, past the queue-wait budget of %v", waited.Round(time.Millisecond), s.cfg.MaxQueueWait)}
		}
		if err == nil {
			return false
		}
		s.rowsAt[r.prio] -= r.rows
		close(r.released)
		s.obs.ObserveRequest(now.Sub(r.queued), 0, err)
		s.stats.fail(now.Sub(r.submitted))
		r.done <- result{err: err}
		demand.Add(-1)
		return true
	})
}

func (s *Scheduler) execute(batch []*request) {
	defer func() {
		s.mu.Lock()
		s.busy--
		s.mu.Unlock()
		<-s.slots
		s.running.Done()
	}()
	start := s.clock.Now()
	rows := 0
	for _, r := range batch {
		rows += r.rows
	}
	padded := rows
	if s.cfg.MaxBatchSize > 1 {
		padded = s.cfg.bucket(rows)
	}
	split := len(batch) > 1 || padded != rows
	out, packed, ran, err := s.runBatch(batch, padded, split)
	if err == nil {
		s.measured(ran.Sub(start))
	}
	results := make([]result, len(batch))
	offset := 0
	for i, r := range batch {
		results[i].err = err
		if err == nil {
			results[i].out = out
			if split {
				results[i].out = sliceRows(out, offset, r.rows)
			}
		}
		offset += r.rows
	}
	end := s.clock.Now()
	p := phases{input: packed.Sub(start), infer: ran.Sub(packed), output: end.Sub(ran)}
	compute := end.Sub(start)
	s.obs.ObserveBatch(rows, compute)
	if err == nil {
		s.stats.batch(rows, p, end)
	}
	for i, r := range batch {
		s.obs.ObserveRequest(start.Sub(r.queued), compute, err)
		if err == nil {
			s.stats.success(r.rows, end.Sub(r.submitted), start.Sub(r.queued), p)
		} else {
			s.stats.fail(end.Sub(r.submitted))
		}
		r.done <- results[i]
		demand.Add(-1)
	}
}

// runBatch packs a batch into padded rows and runs it; split says the
// outputs will be cut per request. A panic in the runner (ONNX Runtime's
// wrapper, a test double) fails this batch's requests, not the process.
// Each request's inputs are released as soon as nothing reads them: after
// the copy into the batch, or after a run that read them in place.
func (s *Scheduler) runBatch(batch []*request, padded int, split bool) (out []Tensor, packed, ran time.Time, err error) {
	release, copied := func() {}, false
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, recovered.Report("scheduler.run", v)
			ran = s.clock.Now()
			if packed.IsZero() {
				packed = ran
			}
		}
		release()
		if !copied {
			for _, r := range batch {
				close(r.released)
			}
		}
	}()
	var inputs []Tensor
	inputs, release = s.pack(batch, padded)
	if !passedThrough(batch, padded) {
		for _, r := range batch {
			close(r.released)
		}
		copied = true
	}
	packed = s.clock.Now()
	out, err = s.run.Run(inputs)
	ran = s.clock.Now()
	if err == nil && split {
		err = checkRows(out, padded)
	}
	return out, packed, ran, err
}

// measured folds one batch's run time into the service time and its
// deviation, moving averages that follow a change of load within a few
// batches.
func (s *Scheduler) measured(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.service == 0 {
		s.service, s.spread = d, 0
		return
	}
	dev := d - s.service
	s.service += dev / 4
	s.spread += (max(dev, -dev) - s.spread) / 4
}

// ResetServiceTime forgets the measured service time, as after warm-up
// runs that paid for lazy initialisation; until the next batch nothing is
// shed.
func (s *Scheduler) ResetServiceTime() {
	s.mu.Lock()
	s.service, s.spread = 0, 0
	s.mu.Unlock()
}

// passedThrough tells a batch whose request's own inputs are run, uncopied.
func passedThrough(batch []*request, rows int) bool { return len(batch) == 1 && batch[0].rows == rows }

// pack concatenates the requests' inputs along the batch dimension into
// pooled buffers, with zero rows after them up to rows (a bucket). A batch
// of one request that fills its bucket is passed through without a copy.
func (s *Scheduler) pack(batch []*request, rows int) ([]Tensor, func()) {
	if passedThrough(batch, rows) {
		return batch[0].inputs, func() {}
	}
	first := batch[0].inputs
	inputs := make([]Tensor, len(first))
	bufs := make([]*[]byte, len(first))
	for i, t := range first {
		if slices.Contains(s.cfg.SharedInputs, i) {
			inputs[i] = t
			continue
		}
		rb := rowBytes(t.DType, t.Shape)
		if s.pinned != nil {
			bufs[i] = s.pinned.get(rows * rb)
		} else {
			bufs[i] = s.pool.get(rows * rb)
		}
		data := *bufs[i]
		off := 0
		for _, r := range batch {
			off += copy(data[off:], r.inputs[i].Data)
		}
		clear(data[off:]) // pooled buffers hold an earlier batch's rows
		shape := slices.Clone(t.Shape)
		shape[0] = int64(rows)
		inputs[i] = Tensor{DType: t.DType, Shape: shape, Data: data}
	}
	return inputs, func() {
		for _, b := range bufs {
			switch {
			case b == nil:
			case s.pinned != nil:
				s.pinned.put(b)
			default:
				s.pool.put(b)
			}
		}
	}
}

func checkRows(out []Tensor, rows int) error {
	for i, t := range out {
		if len(t.Shape) == 0 || t.Shape[0] != int64(rows) {
			return fmt.Errorf("output %d has shape %v, not %d rows: the model does not batch", i, t.Shape, rows)
		}
	}
	return nil
}

// sliceRows views rows [offset, offset+n) of each output. The capacity is
// clipped so that one caller's append cannot write into another's rows.
func sliceRows(out []Tensor, offset, n int) []Tensor {
	res := make([]Tensor, len(out))
	for i, t := range out {
		rb := rowBytes(t.DType, t.Shape)
		shape := slices.Clone(t.Shape)
		shape[0] = int64(n)
		lo, hi := offset*rb, (offset+n)*rb
		res[i] = Tensor{DType: t.DType, Shape: shape, Data: t.Data[lo:hi:hi]}
	}
	return res
}

type nopObserver struct{}

func (nopObserver) ObserveBatch(int, time.Duration)                    {}
func (nopObserver) ObserveRequest(time.Duration, time.Duration, error) {}
