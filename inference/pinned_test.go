package inference

import (
	"errors"
	"sync"
	"testing"
	"unsafe"
)

// goPinned stands in for page-locked memory with Go memory, counting
// allocations and frees; the pool's bookkeeping is what is under test (the
// CUDA allocator itself needs a GPU).
type goPinned struct {
	mu     sync.Mutex
	live   map[unsafe.Pointer][]byte
	allocs int
	frees  int
	fail   bool
}

func newGoPinned() *goPinned { return &goPinned{live: map[unsafe.Pointer][]byte{}} }

func (g *goPinned) pool(keep int) *pinnedPool {
	return newPinnedPool(keep, func(n int) (unsafe.Pointer, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.fail {
			return nil, errors.New("out of page-locked memory")
		}
		b := make([]byte, n)
		p := unsafe.Pointer(&b[0])
		g.live[p] = b
		g.allocs++
		return p, nil
	}, func(p unsafe.Pointer) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if _, ok := g.live[p]; !ok {
			panic("freeing a buffer the pool did not allocate")
		}
		delete(g.live, p)
		g.frees++
	})
}

func TestPinnedPoolReusesAndBounds(t *testing.T) {
	g := newGoPinned()
	p := g.pool(2)
	a := p.get(100)
	if len(*a) != 100 || cap(*a) != 128 || g.allocs != 1 {
		t.Fatalf("len %d cap %d allocs %d", len(*a), cap(*a), g.allocs)
	}
	first := unsafe.SliceData(*a)
	p.put(a)
	b := p.get(120) // the same size class: the same buffer
	if unsafe.SliceData(*b) != first || len(*b) != 120 || g.allocs != 1 {
		t.Fatalf("not reused: allocs %d", g.allocs)
	}
	c, d := p.get(120), p.get(120)
	p.put(b)
	p.put(c)
	p.put(d) // a third idle buffer of the class is one too many
	if g.allocs != 3 || g.frees != 1 {
		t.Fatalf("allocs %d frees %d, want 3 and 1", g.allocs, g.frees)
	}
	out := p.get(1000)
	p.close()
	if g.frees != 3 {
		t.Fatalf("close freed %d of the idle buffers", g.frees-1)
	}
	p.put(out) // handed back after close: freed at once
	if len(g.live) != 0 {
		t.Fatalf("%d buffers never freed", len(g.live))
	}

	// Without page-locked memory, batches still get buffers.
	g.fail = true
	p = g.pool(2)
	e := p.get(64)
	if len(*e) != 64 {
		t.Fatal("no fallback buffer")
	}
	p.put(e)
	p.close()
	if g.frees != 4 || len(g.live) != 0 {
		t.Fatalf("fallback buffer went through the page-locked free: frees %d", g.frees)
	}
}

// pinnedRunner offers a pool, as a CUDA session does, and counts the runs
// whose input sits in one of the pool's buffers.
type pinnedRunner struct {
	Runner
	g    *goPinned
	keep int

	mu           sync.Mutex
	runs, pinned int
}

func (r *pinnedRunner) pinnedPool(keep int) *pinnedPool {
	r.keep = keep
	return r.g.pool(keep)
}

func (r *pinnedRunner) Run(in []Tensor) ([]Tensor, error) {
	r.g.mu.Lock()
	_, pinned := r.g.live[unsafe.Pointer(unsafe.SliceData(in[0].Data))]
	r.g.mu.Unlock()
	r.mu.Lock()
	r.runs++
	if pinned {
		r.pinned++
	}
	r.mu.Unlock()
	return r.Runner.Run(in)
}

// A scheduler over a runner with page-locked buffers packs its batches into
// them, and frees them when it closes. Every batch here is packed: the
// buckets pad even a lone request.
func TestSchedulerPacksIntoPinnedBuffers(t *testing.T) {
	r := &pinnedRunner{Runner: loadSession(t, "affine_f32.onnx"), g: newGoPinned()}
	s := NewScheduler(r, BatchConfig{MaxBatchSize: 8, BatchBuckets: []int{4, 8}, MaxQueueSize: 64, Instances: 2}, nil)
	if r.keep != 4 {
		t.Errorf("pool keeps %d per class, want 2 per instance", r.keep)
	}
	var wg sync.WaitGroup
	for id := range 12 {
		wg.Go(func() { submitAffine(t, s, id, 1+id%3) })
	}
	wg.Wait()
	s.Close()
	if r.runs == 0 || r.pinned != r.runs {
		t.Errorf("%d of %d runs read page-locked buffers", r.pinned, r.runs)
	}
	if len(r.g.live) != 0 || r.g.frees != r.g.allocs {
		t.Errorf("after Close: %d allocated, %d freed", r.g.allocs, r.g.frees)
	}
}
