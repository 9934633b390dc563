package inference

import (
	"slices"
	"sync"
	"time"
)

// Duration is a count of events and their cumulative time.
type Duration struct {
	Count uint64
	Total time.Duration
}

func (d *Duration) add(t time.Duration) {
	d.Count++
	d.Total += t
}

// Stats are a scheduler's cumulative counters, in the terms of Triton's
// statistics extension, so that the server can report them as Triton does.
//
// A batch runs in three phases, timed around the scheduler's own steps:
// compute input is packing the requests' tensors into the batch (nothing for
// a batch of one request, which is passed through), compute infer is the
// Runner's call (ONNX Runtime, wrapping the buffers included), and compute
// output is cutting each request's rows out of the batch's outputs.
type Stats struct {
	// Success and Fail count requests and their time from Submit to answer.
	// Fail counts every Submit that did not succeed: refused before the
	// queue (queue full, closed, malformed, context already ended), dropped
	// from the queue when its context ended, or in a batch that failed.
	Success, Fail Duration
	// Queue, ComputeInput, ComputeInfer and ComputeOutput count successful
	// requests; each request is charged its batch's whole phase, as Triton
	// does.
	Queue, ComputeInput, ComputeInfer, ComputeOutput Duration
	// InferenceCount counts the rows of successful requests, ExecutionCount
	// the batches that ran successfully.
	InferenceCount, ExecutionCount uint64
	// LastInference is when the last successful batch finished (zero if
	// none has).
	LastInference time.Time
	// Batches are per batch size (in rows), smallest first.
	Batches []BatchStats
}

// BatchStats are the phases of the successful batches of one size; each
// phase's Count is the number of such batches.
type BatchStats struct {
	Size                                      int
	ComputeInput, ComputeInfer, ComputeOutput Duration
}

// phases are one batch's timings.
type phases struct {
	input, infer, output time.Duration
}

type statsRecorder struct {
	mu      sync.Mutex
	s       Stats
	batches map[int]*BatchStats
}

func (r *statsRecorder) fail(d time.Duration) {
	r.mu.Lock()
	r.s.Fail.add(d)
	r.mu.Unlock()
}

func (r *statsRecorder) batch(rows int, p phases, end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches == nil {
		r.batches = map[int]*BatchStats{}
	}
	b := r.batches[rows]
	if b == nil {
		b = &BatchStats{Size: rows}
		r.batches[rows] = b
	}
	b.ComputeInput.add(p.input)
	b.ComputeInfer.add(p.infer)
	b.ComputeOutput.add(p.output)
	r.s.ExecutionCount++
	r.s.LastInference = end
}

func (r *statsRecorder) success(rows int, total, queue time.Duration, p phases) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Success.add(total)
	r.s.Queue.add(queue)
	r.s.ComputeInput.add(p.input)
	r.s.ComputeInfer.add(p.infer)
	r.s.ComputeOutput.add(p.output)
	r.s.InferenceCount += uint64(rows)
}

func (r *statsRecorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.Batches = make([]BatchStats, 0, len(r.batches))
	for _, b := range r.batches {
		s.Batches = append(s.Batches, *b)
	}
	slices.SortFunc(s.Batches, func(a, b BatchStats) int { return a.Size - b.Size })
	return s
}

func (r *statsRecorder) reset() {
	r.mu.Lock()
	r.s, r.batches = Stats{}, nil
	r.mu.Unlock()
}

// Stats returns the counters since the scheduler started or was last reset.
func (s *Scheduler) Stats() Stats { return s.stats.snapshot() }

// ResetStats zeroes the counters; the registry calls it after its warm-up
// run, so that statistics count clients' requests only.
func (s *Scheduler) ResetStats() { s.stats.reset() }
