package inference

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/testmodels"
)

var testRuntime *Runtime

// TestMain loads the real ONNX Runtime once (one environment per process) and
// checks after all tests that no goroutine outlived its scheduler.
func TestMain(m *testing.M) {
	rt, err := NewRuntime(paths.TestORTLib(), Device{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "inference tests need the ONNX Runtime library:", err)
		os.Exit(1)
	}
	testRuntime = rt
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	rt.Close()
	os.Exit(code)
}

func loadSession(t testing.TB, name string) *Session {
	t.Helper()
	s, err := testRuntime.NewSession(testmodels.Bytes(name), SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatalf("loading %s: %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// gatedRunner holds every run until the gate opens, so tests can fill the
// queue while the instances are busy. It records what each run was given.
type gatedRunner struct {
	Runner
	gate    chan struct{}
	started chan struct{}
	once    sync.Once

	mu   sync.Mutex
	runs [][]Tensor
}

func newGated(r Runner) *gatedRunner {
	return &gatedRunner{Runner: r, gate: make(chan struct{}), started: make(chan struct{}, 1024)}
}

func (g *gatedRunner) open() { g.once.Do(func() { close(g.gate) }) }

// gatedScheduler starts a scheduler over g. On exit the gate opens before
// Close, so a failing test ends instead of waiting on a shut gate.
func gatedScheduler(t *testing.T, g *gatedRunner, cfg BatchConfig, obs Observer) *Scheduler {
	s := NewScheduler(g, cfg, obs)
	t.Cleanup(func() {
		g.open()
		s.Close()
	})
	return s
}

// expiringContext reaches its deadline when the test says so, not when a
// clock does.
type expiringContext struct {
	context.Context
	done    chan struct{}
	expired atomic.Bool
}

func newExpiringContext() *expiringContext {
	return &expiringContext{Context: context.Background(), done: make(chan struct{})}
}

func (c *expiringContext) Done() <-chan struct{} { return c.done }

func (c *expiringContext) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *expiringContext) expire() {
	c.expired.Store(true)
	close(c.done)
}

func (g *gatedRunner) Run(in []Tensor) ([]Tensor, error) {
	g.mu.Lock()
	g.runs = append(g.runs, in)
	g.mu.Unlock()
	g.started <- struct{}{}
	<-g.gate
	return g.Runner.Run(in)
}

// recorder is an Observer that keeps everything it is told.
type recorder struct {
	mu       sync.Mutex
	batches  []int
	queued   []time.Duration
	requests int
	failures int
}

func (r *recorder) ObserveBatch(rows int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, rows)
}

func (r *recorder) ObserveRequest(queue, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.queued = append(r.queued, queue)
	if err != nil {
		r.failures++
	}
}

func (r *recorder) batchSizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.batches...)
}

// waitFor polls a condition that the code under test makes true; the bound
// only guards against a hang and asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
