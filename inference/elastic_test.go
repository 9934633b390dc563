package inference

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/testmodels"
)

func TestElasticSessionPicksByLoad(t *testing.T) {
	s, err := testRuntime.NewSession(testmodels.Bytes("affine_f32.onnx"), SessionOptions{IntraOpThreads: 2, NarrowThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Elastic() {
		t.Fatal("IntraOpThreads 2, NarrowThreads 1: not elastic")
	}
	if s.pick(1) != s.sess || s.pick(2) != s.narrow || s.pick(5) != s.narrow {
		t.Error("a lone run must take the wide session, runs beside others the narrow one")
	}
	demand.Add(2) // this run's request and one waiting behind it
	if s.pick(1) != s.narrow {
		t.Error("a run with requests queued behind it must take the narrow session")
	}
	demand.Add(-2)
	for _, so := range []SessionOptions{{IntraOpThreads: 2}, {IntraOpThreads: 2, NarrowThreads: 2}, {IntraOpThreads: 1, NarrowThreads: 1}} {
		p, err := testRuntime.NewSession(testmodels.Bytes("affine_f32.onnx"), so)
		if err != nil {
			t.Fatal(err)
		}
		if p.Elastic() || p.pick(3) != p.sess {
			t.Errorf("%+v: elastic, want one session", so)
		}
		p.Close()
	}
}

// TestElasticSessionSameResults runs the wide and the narrow session side
// by side: whichever runs a request, the outputs equal a plain session's.
func TestElasticSessionSameResults(t *testing.T) {
	model := testmodels.Bytes("affine_f32.onnx")
	plain := loadSession(t, "affine_f32.onnx")
	// WideSpin: the wide session's threads spin inside its runs.
	s, err := testRuntime.NewSession(model, SessionOptions{IntraOpThreads: 2, NarrowThreads: 1, WideSpin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := []Tensor{NewTensor([]int64{3, 4}, []float32{1, 2, 3, 4, -1, 0.5, 7, 9, 0, 0, 1e3, -2})}
	want, err := plain.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				got, err := s.Run(in)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got[0].Data, want[0].Data) {
					t.Error("elastic session's output differs from a plain session's")
					return
				}
			}
		})
	}
	wg.Wait()
	if n := testRuntime.inflight.Load(); n != 0 {
		t.Errorf("%d runs still counted in flight", n)
	}
}

// TestDemandCountsQueuedRequests: every request the scheduler takes is
// counted until it is answered, whether it ran or was dropped.
func TestDemandCountsQueuedRequests(t *testing.T) {
	before := demand.Load()
	sess := loadSession(t, "affine_f32.onnx")
	s := NewScheduler(sess, BatchConfig{MaxBatchSize: 4, MaxQueueDelay: time.Millisecond, Instances: 2, MaxQueueSize: 64}, nil)
	in := []Tensor{NewTensor([]int64{1, 4}, []float32{1, 2, 3, 4})}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			if i%4 == 0 {
				cancel() // some give up before they run
			}
			defer cancel()
			s.Submit(ctx, in)
		})
	}
	wg.Wait()
	s.Close()
	if n := demand.Load(); n != before {
		t.Errorf("demand %d after every request was answered, want %d", n, before)
	}
}
