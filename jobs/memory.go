package jobs

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Memory keeps jobs in this process: the default, for a single replica.
// Everything it holds is counted against its budget and erased, zeroed,
// TTL after the job's last change.
type Memory struct {
	clock  Clock
	ttl    time.Duration
	budget int64

	mu    sync.Mutex
	jobs  map[string]*memJob
	queue []Work // items waiting, in order of arrival; inputs stay in jobs
	used  int64  // bytes reserved by the jobs held
	wake  chan struct{}
	// changed wakes the sweeper when an expiry may have moved earlier.
	changed chan struct{}
	stop    chan struct{}
	swept   chan struct{}
}

type memJob struct {
	status   Status
	spec     Spec
	inputs   []Input
	outputs  []Output
	started  int
	reserved int64
}

// NewMemory makes an in-process store whose jobs may hold budget bytes
// together and are erased ttl after their last change. clock may be nil
// (the real one).
func NewMemory(ttl time.Duration, budget int64, clock Clock) *Memory {
	if clock == nil {
		clock = realClock{}
	}
	m := &Memory{clock: clock, ttl: ttl, budget: budget, jobs: map[string]*memJob{},
		wake: make(chan struct{}, 1), changed: make(chan struct{}, 1), stop: make(chan struct{}), swept: make(chan struct{})}
	go m.sweep()
	return m
}

// InUse is the bytes the jobs held now reserve: 0 once every job is
// erased.
func (m *Memory) InUse() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// Len is the number of jobs held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.jobs)
}

func (m *Memory) Create(_ context.Context, st Status, spec Spec, inputs []Input) error {
	var need int64
	for _, in := range inputs {
		need += in.size() + in.Cost
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	if need > m.budget {
		return &BudgetError{Need: need, Free: m.budget - m.used, Budget: m.budget, Full: true}
	}
	if m.used+need > m.budget {
		return &BudgetError{Need: need, Free: m.budget - m.used, Budget: m.budget, After: m.untilFreed(need)}
	}
	m.used += need
	j := &memJob{status: st, spec: spec, inputs: inputs, outputs: make([]Output, len(inputs)), reserved: need}
	m.jobs[st.ID] = j
	for i := range inputs {
		m.queue = append(m.queue, Work{Job: st.ID, Index: i})
	}
	m.signal(m.wake)
	m.signal(m.changed)
	return nil
}

// untilFreed is how long until enough jobs expire to free need bytes,
// if nothing else changes; a minute when none would.
func (m *Memory) untilFreed(need int64) time.Duration {
	free := m.budget - m.used
	js := make([]*memJob, 0, len(m.jobs))
	for _, j := range m.jobs {
		js = append(js, j)
	}
	slices.SortFunc(js, func(a, b *memJob) int { return a.status.ExpiresAt.Compare(b.status.ExpiresAt) })
	for _, j := range js {
		free += j.reserved
		if free >= need {
			return max(j.status.ExpiresAt.Sub(m.clock.Now()), time.Second)
		}
	}
	return time.Minute
}

func (m *Memory) Status(_ context.Context, id string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.getLocked(id)
	if err != nil {
		return Status{}, err
	}
	st := j.status
	st.ItemStatus = slices.Clone(st.ItemStatus)
	return st, nil
}

// getLocked returns a job that has not expired; an expired one is erased
// now, without waiting for the sweeper.
func (m *Memory) getLocked(id string) (*memJob, error) {
	j, ok := m.jobs[id]
	if !ok {
		return nil, ErrNotFound
	}
	if !m.clock.Now().Before(j.status.ExpiresAt) {
		m.eraseLocked(id)
		return nil, ErrNotFound
	}
	return j, nil
}

func (m *Memory) Output(_ context.Context, id string, i int) (Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.getLocked(id)
	if err != nil {
		return Output{}, err
	}
	switch j.status.ItemStatus[i].Status {
	case StateDone:
		return j.outputs[i], nil
	case StateFailed:
		return Output{}, ErrItemFailed
	}
	return Output{}, ErrNotReady
}

func (m *Memory) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.getLocked(id); err != nil {
		return err
	}
	m.eraseLocked(id)
	return nil
}

// eraseLocked zeroes and drops everything of a job, its queued items
// included.
func (m *Memory) eraseLocked(id string) {
	j := m.jobs[id]
	for i := range j.inputs {
		zeroInput(&j.inputs[i])
	}
	for i := range j.outputs {
		Zero(j.outputs[i].Data)
		j.outputs[i] = Output{}
	}
	m.used -= j.reserved
	delete(m.jobs, id)
	m.queue = slices.DeleteFunc(m.queue, func(w Work) bool { return w.Job == id })
}

func zeroInput(in *Input) {
	Zero(in.Image)
	Zero(in.Mask)
	*in = Input{Name: in.Name}
}

func (m *Memory) Next(ctx context.Context) (Work, error) {
	for {
		m.mu.Lock()
		if len(m.queue) > 0 {
			w := m.queue[0]
			m.queue = m.queue[1:]
			if len(m.queue) > 0 {
				// One signal woke this worker: pass it on, so that every
				// idle worker takes an item, not one at a time.
				m.signal(m.wake)
			}
			j := m.jobs[w.Job]
			w.Spec, w.Input = j.spec, j.inputs[w.Index]
			j.status.ItemStatus[w.Index].Status = StateRunning
			j.started++
			j.status.Status = state(j.status.Items, j.status.Done, j.status.Failed, j.started)
			m.mu.Unlock()
			return w, nil
		}
		m.mu.Unlock()
		select {
		case <-m.wake:
		case <-m.stop:
			return Work{}, ErrClosed
		case <-ctx.Done():
			return Work{}, ctx.Err()
		}
	}
}

func (m *Memory) Finish(_ context.Context, w Work, out Output, failure string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.getLocked(w.Job)
	if err != nil {
		// Deleted or expired while the item ran: its result goes too.
		Zero(out.Data)
		return Status{}, err
	}
	in := &j.inputs[w.Index]
	freed := in.size() + in.Cost
	zeroInput(in)
	it := &j.status.ItemStatus[w.Index]
	if failure != "" {
		it.Status, it.Error = StateFailed, failure
		j.status.Failed++
		Zero(out.Data)
	} else {
		it.Status, it.Output = StateDone, out.Name
		j.outputs[w.Index] = out
		j.status.Done++
		freed -= int64(len(out.Data))
	}
	j.reserved -= freed
	m.used -= freed
	now := m.clock.Now()
	j.status.Status = state(j.status.Items, j.status.Done, j.status.Failed, j.started)
	if j.status.Finished() {
		j.status.FinishedAt = &now
	}
	j.status.ExpiresAt = expiry(now, m.ttl)
	st := j.status
	st.ItemStatus = nil
	return st, nil
}

func (m *Memory) Close() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
		<-m.swept
	}
	return nil
}

func (m *Memory) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// sweep erases each job when its expiry comes, sleeping on the clock
// until the earliest one.
func (m *Memory) sweep() {
	defer close(m.swept)
	for {
		m.mu.Lock()
		m.expireLocked()
		wait := time.Duration(-1)
		for _, j := range m.jobs {
			if d := j.status.ExpiresAt.Sub(m.clock.Now()); wait < 0 || d < wait {
				wait = d
			}
		}
		m.mu.Unlock()
		var at <-chan time.Time
		if wait >= 0 {
			at = m.clock.After(wait)
		}
		select {
		case <-at:
		case <-m.changed:
		case <-m.stop:
			return
		}
	}
}

func (m *Memory) expireLocked() {
	now := m.clock.Now()
	for id, j := range m.jobs {
		if !now.Before(j.status.ExpiresAt) {
			m.eraseLocked(id)
		}
	}
}
