package models

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
)

// A model's file is found inside the models folder, or at an absolute path.
func TestModelFileRelativeOrAbsolute(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(`
models:
  - {name: inside, file: affine_f32.onnx}
  - {name: absolute, file: ` + testmodels.Path(testmodels.AffineF32) + `}
  - {name: elsewhere, file: not-here.onnx}
`))
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(cfg, Options{ModelsDir: testmodels.Dir()})
	want := map[string]Status{"inside": StatusLoading, "absolute": StatusLoading, "elsewhere": StatusUnavailable}
	for _, m := range reg.Models() {
		if st := m.State(); st.Status != want[m.Config.Name] {
			t.Errorf("%s: %s (%s), want %s", m.Config.Name, st.Status, st.Reason, want[m.Config.Name])
		}
	}
}

func TestSessionOptionsElasticByDefault(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(`
models:
  - {name: a, file: a.onnx, batching: {instances: 2}}
  - {name: b, file: b.onnx, intra_op_threads: 3, batching: {instances: 2}}
  - {name: c, file: c.onnx}
  - {name: d, file: d.onnx, wide_spin: false, batching: {instances: 2}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []inference.SessionOptions{
		{IntraOpThreads: 8, NarrowThreads: 4, WideSpin: true}, // all cores alone, a share beside others
		{IntraOpThreads: 3}, // explicit: fixed
		{IntraOpThreads: 8, NarrowThreads: 8, WideSpin: true}, // one instance: never narrower
		{IntraOpThreads: 8, NarrowThreads: 4},                 // elastic, lone runs without spinning
	} {
		got := cfg.Models[i].SessionOptions(8, cfg.Models[i].Batching.Instances)
		if got.IntraOpThreads != want.IntraOpThreads || got.NarrowThreads != want.NarrowThreads || got.WideSpin != want.WideSpin {
			t.Errorf("%s: %+v, want %+v", cfg.Models[i].Name, got, want)
		}
	}
}

// loadTestModels loads a configuration of the synthetic test models.
func loadTestModels(t *testing.T, config string) *Registry {
	t.Helper()
	cfg, err := ParseConfig(strings.NewReader(config))
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(cfg, Options{ModelsDir: testmodels.Dir(), Runtime: testRuntime})
	reg.Load()
	t.Cleanup(reg.Close)
	return reg
}

// Resize nodes sized at run time take constant scales at load unless the
// configuration says resize_rewrite: false, and the batch rewrite still
// applies to the rewritten graph.
func TestResizeRewriteAtLoad(t *testing.T) {
	reg := loadTestModels(t, `
models:
  - {name: rewritten, file: resize_sizes.onnx, intra_op_threads: 1}
  - {name: batched, file: resize_sizes.onnx, intra_op_threads: 1, batching: {max_batch_size: 4}}
  - {name: as-exported, file: resize_sizes.onnx, intra_op_threads: 1, resize_rewrite: false}
`)
	for name, want := range map[string]int{"rewritten": 1, "batched": 1, "as-exported": 0} {
		m, _ := reg.Get(name)
		if st := m.State(); st.Status != StatusReady || st.ResizesRewritten != want {
			t.Errorf("%s: %s %s, %d Resize nodes rewritten, want %d", name, st.Status, st.Reason, st.ResizesRewritten, want)
		}
	}
	m, _ := reg.Get("batched")
	if mode := m.State().BatchMode; mode != inference.BatchRewritten {
		t.Errorf("batched: batch mode %v, want rewritten", mode)
	}
}

// A model whose weights are external data beside it loads and serves.
func TestExternalDataModelLoads(t *testing.T) {
	reg := loadTestModels(t, `
models:
  - {name: ext, file: external_affine.onnx, intra_op_threads: 1}
`)
	m, _ := reg.Get("ext")
	if st := m.State(); st.Status != StatusReady {
		t.Fatalf("ext: %s %s", st.Status, st.Reason)
	}
	out, err := m.Infer(context.Background(), []inference.Tensor{inference.NewTensor([]int64{1, 4}, []float32{1, 1, 2, -1})})
	if err != nil {
		t.Fatal(err)
	}
	if y := inference.Values[float32](out[0]); !slices.Equal(y, []float32{2, 3, 7, -3}) { // x*[1,2,3,4]+1
		t.Fatalf("y = %v", y)
	}
}
