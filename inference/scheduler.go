package inference

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
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
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("scheduler closed")
	// ErrBadRequest wraps inputs that cannot be batched.
	ErrBadRequest = errors.New("bad request")
)

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

	mu     sync.Mutex
	queue  []*request
	closed bool

	wake    chan struct{} // a request arrived, or Close was called
	slots   chan struct{} // one token per running batch
	stopped chan struct{} // the dispatcher has exited
	running sync.WaitGroup
}

type request struct {
	ctx    context.Context
	inputs []Tensor
	rows   int
	key    string // requests batch together only with the same key
	// submitted is when Submit was called, queued when the request joined
	// the queue.
	submitted, queued time.Time
	done              chan result
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

// Submit queues one request and waits for its outputs. With batching on,
// every input's leading dimension is the request's row count, and the
// outputs hold the same rows. Submit returns early with ctx's error when ctx
// ends; a request whose context ended is never packed into a batch.
func (s *Scheduler) Submit(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	r := &request{ctx: ctx, inputs: inputs, done: make(chan result, 1), submitted: s.clock.Now()}
	if err := s.enqueue(r); err != nil {
		s.stats.fail(s.clock.Now().Sub(r.submitted))
		return nil, err
	}
	s.signal()

	select {
	case res := <-r.done:
		return res.out, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
	if len(s.queue) >= s.cfg.MaxQueueSize {
		s.dropEnded()
	}
	if len(s.queue) >= s.cfg.MaxQueueSize {
		return ErrQueueFull
	}
	r.queued = s.clock.Now()
	s.queue = append(s.queue, r)
	demand.Add(1)
	return nil
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
		batch := s.nextBatch()
		if batch == nil {
			<-s.slots
			return
		}
		s.running.Add(1)
		go s.execute(batch)
	}
}

// nextBatch blocks until a batch is due and takes it off the queue. It
// returns nil once the scheduler is closed and the queue is empty.
func (s *Scheduler) nextBatch() []*request {
	for {
		s.mu.Lock()
		s.dropEnded()
		if len(s.queue) == 0 {
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			<-s.wake
			continue
		}
		take, due := s.candidates()
		due = due || s.closed
		deadline := s.queue[0].queued.Add(s.cfg.MaxQueueDelay)
		wait := deadline.Sub(s.clock.Now())
		if due || wait <= 0 {
			batch := s.remove(take)
			s.mu.Unlock()
			return batch
		}
		s.mu.Unlock()

		t := s.clock.NewTimer(wait)
		select {
		case <-s.wake:
		case <-t.C():
		}
		t.Stop()
	}
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
		s.queue[p] = nil
	}
	s.queue = slices.DeleteFunc(s.queue, func(r *request) bool { return r == nil })
	return batch
}

// dropEnded answers and removes requests whose context has ended, so they
// never take a batch slot.
func (s *Scheduler) dropEnded() {
	now := s.clock.Now()
	s.queue = slices.DeleteFunc(s.queue, func(r *request) bool {
		err := r.ctx.Err()
		if err == nil {
			return false
		}
		s.obs.ObserveRequest(now.Sub(r.queued), 0, err)
		s.stats.fail(now.Sub(r.submitted))
		r.done <- result{err: err}
		demand.Add(-1)
		return true
	})
}

func (s *Scheduler) execute(batch []*request) {
	defer func() {
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
	inputs, release := s.pack(batch, padded)
	packed := s.clock.Now()
	out, err := s.run.Run(inputs)
	release()
	ran := s.clock.Now()
	split := len(batch) > 1 || padded != rows
	if err == nil && split {
		err = checkRows(out, padded)
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

// pack concatenates the requests' inputs along the batch dimension into
// pooled buffers, with zero rows after them up to rows (a bucket). A batch
// of one request that fills its bucket is passed through without a copy.
func (s *Scheduler) pack(batch []*request, rows int) ([]Tensor, func()) {
	if len(batch) == 1 && batch[0].rows == rows {
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
