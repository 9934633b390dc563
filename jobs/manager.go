package jobs

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed: the backend stopped handing out work.
var ErrClosed = errors.New("jobs: closed")

// Options configure a Manager.
type Options struct {
	// Backend keeps the jobs (NewMemory, OpenRedis).
	Backend Backend
	// Run runs one item.
	Run Runner
	// TTL is how long a job is kept after its last change (at most MaxTTL).
	TTL time.Duration
	// Workers is how many items this process runs at once; 0 takes twice
	// the cores, enough to keep every model instance fed while others
	// decode and encode.
	Workers int
	// Busy tells whether interactive work is in flight: while it is, items
	// wait for it to end (or until no item has run for a second, and then
	// run one at a time), so that a job takes the cores single requests
	// would need only when they are idle. nil: never.
	Busy func() bool
	// Ran is told of each item this process ran to the end (not those
	// cut off by Close) and whether it failed, for metrics; nil: nobody.
	Ran    func(w Work, failed bool)
	Logger *slog.Logger
	Clock  Clock
}

// Manager accepts jobs and runs their items on its workers.
type Manager struct {
	o      Options
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ran    atomic.Int64
	// running counts the items being run; lastEnd is when the last one
	// ended (Unix nanoseconds).
	running atomic.Int64
	lastEnd atomic.Int64
}

// ItemsRun counts the items this process's workers have finished.
func (m *Manager) ItemsRun() int64 { return m.ran.Load() }

// NewManager starts the workers.
func NewManager(o Options) *Manager {
	if o.Workers <= 0 {
		o.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Busy == nil {
		o.Busy = func() bool { return false }
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{o: o, cancel: cancel}
	for range o.Workers {
		m.wg.Go(func() { m.work(ctx) })
	}
	return m
}

// TTL is how long jobs are kept after their last change.
func (m *Manager) TTL() time.Duration { return m.o.TTL }

// Submit stores a job and queues its items. The inputs are the job's from
// now on: they are zeroed when done.
func (m *Manager) Submit(ctx context.Context, spec Spec, inputs []Input) (Status, error) {
	now := m.o.Clock.Now()
	st := Status{ID: newID(), Task: spec.Task, Status: StateQueued, Items: len(inputs),
		CreatedAt: now, ExpiresAt: expiry(now, m.o.TTL), ItemStatus: make([]ItemStatus, len(inputs))}
	for i, in := range inputs {
		st.ItemStatus[i] = ItemStatus{Name: in.Name, Status: StateQueued}
	}
	var bytes int64
	for _, in := range inputs {
		bytes += in.size()
	}
	if err := m.o.Backend.Create(ctx, st, spec, inputs); err != nil {
		return Status{}, err
	}
	m.o.Logger.Info("job created", "job", st.ID, "task", spec.Task, "items", len(inputs), "in_bytes", bytes)
	return st, nil
}

// Status is a job's state.
func (m *Manager) Status(ctx context.Context, id string) (Status, error) {
	if !validID(id) {
		return Status{}, ErrNotFound
	}
	return m.o.Backend.Status(ctx, id)
}

// Output is the result of the item named name (its input's name or its
// output's).
func (m *Manager) Output(ctx context.Context, id, name string) (Output, error) {
	st, err := m.Status(ctx, id)
	if err != nil {
		return Output{}, err
	}
	i := slices.IndexFunc(st.ItemStatus, func(it ItemStatus) bool { return it.Name == name || it.Output == name })
	if i < 0 {
		return Output{}, ErrNoItem
	}
	return m.o.Backend.Output(ctx, id, i)
}

// OutputAt is item i's result.
func (m *Manager) OutputAt(ctx context.Context, id string, i int) (Output, error) {
	return m.o.Backend.Output(ctx, id, i)
}

// ErrNoItem: the job has no item of that name (404).
var ErrNoItem = errors.New("the job has no item of that name")

// Delete cancels a job and erases it now.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	if err := m.o.Backend.Delete(ctx, id); err != nil {
		return err
	}
	m.o.Logger.Info("job deleted", "job", id)
	return nil
}

// Close stops the workers after the items they run; the backend is the
// caller's to close.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

func (m *Manager) work(ctx context.Context) {
	for {
		w, err := m.o.Backend.Next(ctx)
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			m.o.Logger.Warn("jobs: taking work failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if !m.enter(ctx) {
			return
		}
		start := time.Now()
		out, err := m.run(ctx, w)
		m.lastEnd.Store(time.Now().UnixNano())
		m.running.Add(-1)
		if ctx.Err() != nil {
			// Shutting down: the item stays unfinished (Redis hands it to
			// another replica).
			return
		}
		failure := ""
		if err != nil {
			failure = err.Error()
		}
		m.ran.Add(1)
		if m.o.Ran != nil {
			m.o.Ran(w, err != nil)
		}
		st, err := m.o.Backend.Finish(ctx, w, out, failure)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			m.o.Logger.Warn("jobs: recording an item failed", "job", w.Job, "item", w.Index, "err", err)
		case st.Finished() && st.FinishedAt != nil:
			m.o.Logger.Info("job finished", "job", w.Job, "items", st.Items, "failed", st.Failed,
				"ms", st.FinishedAt.Sub(st.CreatedAt).Milliseconds(), "last_item_ms", time.Since(start).Milliseconds())
		}
	}
}

// enter waits for the right to run an item. While no interactive work is
// in flight every worker runs one; while some is, an item waits for it to
// end, or starts anyway once no item has run for maxYield: a job takes
// the cores single requests need only when they are idle, yet always
// makes progress, about one item per maxYield under continuous
// interactive load. It is false when ctx ends first.
func (m *Manager) enter(ctx context.Context) bool {
	start := time.Now()
	for {
		n := m.running.Load()
		// Counted from the last item's end as well as this one's wait, so
		// that the workers waiting do not start one after another.
		idle := time.Since(start)
		if last := time.Unix(0, m.lastEnd.Load()); last.After(start) {
			idle = time.Since(last)
		}
		if !m.o.Busy() || (n == 0 && idle >= maxYield) {
			if m.running.CompareAndSwap(n, n+1) {
				return true
			}
			continue
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// maxYield is the longest an item waits for interactive work to end.
const maxYield = time.Second

// run runs an item, waiting and trying again while the server refuses it
// for now: job items wait for capacity, they are never shed.
func (m *Manager) run(ctx context.Context, w Work) (Output, error) {
	for {
		out, err := m.o.Run(ctx, w)
		var later *RetryLater
		if !errors.As(err, &later) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return Output{}, ctx.Err()
		case <-time.After(min(max(later.After, 10*time.Millisecond), time.Second)):
		}
	}
}
