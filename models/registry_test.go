package models

import (
	"strings"
	"testing"

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
