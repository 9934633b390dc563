package models

import (
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
