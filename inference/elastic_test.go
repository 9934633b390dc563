package inference

import (
	"bytes"
	"sync"
	"testing"

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
	s, err := testRuntime.NewSession(model, SessionOptions{IntraOpThreads: 2, NarrowThreads: 1})
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
