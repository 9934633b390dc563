package bench

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
)

// Thread configurations for one model on this machine's cores: how fast a
// lone request is, and how many requests per second 4 concurrent clients
// get, through the scheduler as the server runs it.
//
//	go test -run '^$' -bench Threads -benchtime 1x -v ./bench/
//	THREADS_MODEL=isnet-imgly-small.onnx THREADS_CANDIDATES=2x1,1x2,2x-elastic \
//	    go test -run '^$' -bench Threads -benchtime 1x -v ./bench/
type threadCandidate struct {
	name      string
	instances int
	runner    func(b *testing.B, model []byte) inference.Runner
}

func sessionWith(b *testing.B, model []byte, threads, narrow int, spin bool) *inference.Session {
	s, err := benchRuntime.NewSession(model, inference.SessionOptions{IntraOpThreads: threads, NarrowThreads: narrow, Spin: spin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkThreads measures each candidate in turn, round after round, and
// reports each one's best lone latency and best throughput: on a shared,
// noisy machine the best of several interleaved rounds is what the
// configuration can do, where a single pass mostly measures the neighbours.
func BenchmarkThreads(b *testing.B) {
	file := os.Getenv("THREADS_MODEL")
	if file == "" {
		file = "u2netp.onnx"
	}
	size := int64(320)
	if file != "u2netp.onnx" {
		size = 1024
	}
	model, err := os.ReadFile(paths.Models(paths.RepoHome()) + "/" + file)
	if err != nil {
		b.Fatal(err)
	}
	// The graph the server runs (models.Registry does the same at load).
	model, _, _ = benchRuntime.RewriteResizes(model, "")
	// Names: instances x threads. "shared" is concurrent runs on one
	// session's 2-thread pool, which is what ONNX Runtime's global thread
	// pool gives one model; "elastic" is 2 threads alone, 1 beside others.
	cands := []threadCandidate{
		{"2x1", 2, func(b *testing.B, m []byte) inference.Runner { return sessionWith(b, m, 1, 0, false) }},
		{"1x2", 1, func(b *testing.B, m []byte) inference.Runner { return sessionWith(b, m, 2, 0, false) }},
		{"1x2-spin", 1, func(b *testing.B, m []byte) inference.Runner { return sessionWith(b, m, 2, 0, true) }},
		{"2x2-shared", 2, func(b *testing.B, m []byte) inference.Runner { return sessionWith(b, m, 2, 0, false) }},
		{"2x-elastic", 2, func(b *testing.B, m []byte) inference.Runner { return sessionWith(b, m, 2, 1, false) }},
		{"2x-elastic-spin", 2, func(b *testing.B, m []byte) inference.Runner { return sessionWith(b, m, 2, 1, true) }},
	}
	if only := os.Getenv("THREADS_CANDIDATES"); only != "" {
		cands = slices.DeleteFunc(cands, func(c threadCandidate) bool {
			return !slices.Contains(strings.Split(only, ","), c.name)
		})
	}
	data := make([]float32, 3*size*size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = rng.Float32()*4 - 2
	}
	in := []inference.Tensor{inference.NewTensor([]int64{1, 3, size, size}, data)}
	lone, loaded, rounds := 6, 4, 6 // runs; loaded is per client
	if size > 320 {
		lone, loaded, rounds = 2, 1, 2
	}
	ctx := context.Background()
	scheds := make([]*inference.Scheduler, len(cands))
	for i, c := range cands {
		scheds[i] = inference.NewScheduler(c.runner(b, model), inference.BatchConfig{Instances: c.instances, MaxQueueSize: 64}, nil)
		defer scheds[i].Close()
		for range 2 { // warm-up
			if _, err := scheds[i].Submit(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	}
	bestLone := make([]time.Duration, len(cands))
	bestRate := make([]float64, len(cands))
	for b.Loop() {
		for round := 0; round < rounds; round++ {
			for i, s := range scheds {
				start := time.Now()
				for range lone {
					if _, err := s.Submit(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				l := time.Since(start) / time.Duration(lone)
				start = time.Now()
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for range loaded {
							if _, err := s.Submit(ctx, in); err != nil {
								b.Error(err)
							}
						}
					})
				}
				wg.Wait()
				r := float64(4*loaded) / time.Since(start).Seconds()
				b.Logf("round %d %-28s lone %4d ms  c4 %.2f items/s", round, cands[i].name, l.Milliseconds(), r)
				if bestLone[i] == 0 || l < bestLone[i] {
					bestLone[i] = l
				}
				bestRate[i] = max(bestRate[i], r)
			}
		}
	}
	for i, c := range cands {
		b.Logf("best %-28s lone %4d ms  c4 %.2f items/s", c.name, bestLone[i].Milliseconds(), bestRate[i])
	}
}
