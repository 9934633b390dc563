package inference

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/testmodels"
)

// runBoth runs the original and the rewritten model on the same random
// input and returns both outputs.
func runBoth(t *testing.T, orig, rewritten []byte) (want, got []Tensor) {
	t.Helper()
	var feed []Tensor
	for _, model := range [][]byte{orig, rewritten} {
		s, err := testRuntime.NewSession(model, SessionOptions{IntraOpThreads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if feed == nil {
			rng := rand.New(rand.NewPCG(7, 8))
			for _, in := range s.Inputs() {
				x, err := randomTensor(rng, in.DType, in.Shape)
				if err != nil {
					t.Fatal(err)
				}
				feed = append(feed, x)
			}
		}
		out, err := s.Run(feed)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = out
		} else {
			got = out
		}
	}
	return want, got
}

func resizeNodes(t *testing.T, model []byte) (nodes []onnxNode) {
	t.Helper()
	graph, err := modelGraphBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range parseNodes(graph) {
		if n.opType == "Resize" {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

func TestResizeRewriteTakesOnlyExactScales(t *testing.T) {
	model := testmodels.Bytes(testmodels.ResizeSizes)
	out, n, note := testRuntime.RewriteResizes(model, "")
	if note != "" {
		t.Fatalf("note %q", note)
	}
	if n != 1 {
		t.Fatalf("rewrote %d nodes, want 1 (up; up_odd has no integer scale)", n)
	}
	nodes := resizeNodes(t, out)
	if len(nodes) != 2 {
		t.Fatalf("%d Resize nodes after the rewrite", len(nodes))
	}
	for _, r := range nodes {
		switch r.outputs[0] {
		case "up":
			if len(r.inputs) != 3 || r.strAttrs["coordinate_transformation_mode"] != "half_pixel" {
				t.Errorf("up: inputs %q, mapping %q; want (x, roi, scales) and half_pixel", r.inputs, r.strAttrs["coordinate_transformation_mode"])
			}
		case "up_odd":
			if len(r.inputs) != 4 || r.strAttrs["coordinate_transformation_mode"] != "pytorch_half_pixel" {
				t.Errorf("up_odd was changed: inputs %q, mapping %q", r.inputs, r.strAttrs["coordinate_transformation_mode"])
			}
		}
	}
	// The Mul that computed up's sizes feeds nothing now and is gone; the
	// Shape that up_odd still needs stays.
	graph, _ := modelGraphBytes(out)
	var ops []string
	for _, n := range parseNodes(graph) {
		ops = append(ops, n.opType)
	}
	if slices.Contains(ops, "Mul") || !slices.Contains(ops, "Shape") {
		t.Errorf("nodes after the rewrite: %v", ops)
	}
	want, got := runBoth(t, model, out)
	for i := range want {
		if !slices.Equal(want[i].Shape, got[i].Shape) || !closeEnough(FP32, got[i].Data, want[i].Data) {
			t.Errorf("output %d: %v differs from the original's %v", i, got[i].Shape, want[i].Shape)
		}
	}

	// Loading the same file again serves the same graph.
	again, n2, _ := testRuntime.RewriteResizes(model, "")
	if n2 != 1 || string(again) != string(out) {
		t.Fatalf("second rewrite: %d nodes, same bytes %v", n2, string(again) == string(out))
	}
	// A rewritten model has nothing left to rewrite.
	if _, n3, _ := testRuntime.RewriteResizes(out, ""); n3 != 0 {
		t.Fatalf("rewriting the rewritten model changed %d more nodes", n3)
	}
}

// Only the bilinear mapping PyTorch exports, with sizes and no attribute
// that changes the result, is a candidate.
func TestResizeCandidates(t *testing.T) {
	node := func(inputs []string, attrs map[string]string, ints map[string]int64) onnxNode {
		n := onnxNode{opType: "Resize", inputs: inputs, outputs: []string{"y"}, strAttrs: attrs, intAttrs: ints}
		for a := range attrs {
			n.attrNames = append(n.attrNames, a)
		}
		for a := range ints {
			n.attrNames = append(n.attrNames, a)
		}
		return n
	}
	sized := []string{"x", "", "", "sizes"}
	torch := map[string]string{"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}
	with := func(k, v string) map[string]string {
		m := map[string]string{"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}
		m[k] = v
		return m
	}
	for _, c := range []struct {
		name string
		n    onnxNode
		want bool
	}{
		{"pytorch export", node(sized, torch, nil), true},
		{"half_pixel", node(sized, with("coordinate_transformation_mode", "half_pixel"), nil), true},
		{"exclude_outside 0", node(sized, torch, map[string]int64{"exclude_outside": 0}), true},
		{"scales already", node([]string{"x", "", "scales"}, torch, nil), false},
		{"empty sizes", node([]string{"x", "", "scales", ""}, torch, nil), false},
		{"nearest", node(sized, with("mode", "nearest"), nil), false},
		{"cubic", node(sized, with("mode", "cubic"), nil), false},
		{"align_corners", node(sized, with("coordinate_transformation_mode", "align_corners"), nil), false},
		{"tf_crop_and_resize", node(sized, with("coordinate_transformation_mode", "tf_crop_and_resize"), nil), false},
		{"exclude_outside 1", node(sized, torch, map[string]int64{"exclude_outside": 1}), false},
		{"antialias", node(sized, torch, map[string]int64{"antialias": 0}), false},
		{"keep_aspect_ratio_policy", node(sized, with("keep_aspect_ratio_policy", "stretch"), nil), false},
		{"another domain", func() onnxNode { n := node(sized, torch, nil); n.domain = "com.example"; return n }(), false},
		{"not a Resize", func() onnxNode { n := node(sized, torch, nil); n.opType = "Upsample"; return n }(), false},
	} {
		if got := resizeCandidate(c.n); got != c.want {
			t.Errorf("%s: candidate %v, want %v", c.name, got, c.want)
		}
	}
}

func TestResizeRewriteLeavesDynamicModels(t *testing.T) {
	model := testmodels.Bytes(testmodels.ResizeSizesDyn)
	out, n, note := testRuntime.RewriteResizes(model, "")
	if n != 0 || !strings.Contains(note, "dynamic shape") || string(out) != string(model) {
		t.Fatalf("dynamic model: %d rewritten, note %q, unchanged %v", n, note, string(out) == string(model))
	}
	for _, name := range []string{testmodels.AffineF32, testmodels.Fixed1Reshape} {
		model := testmodels.Bytes(name)
		out, n, note := testRuntime.RewriteResizes(model, "")
		if n != 0 || note != "" || string(out) != string(model) {
			t.Fatalf("%s (no Resize): %d rewritten, note %q", name, n, note)
		}
	}
	// Bytes that are no model come back as they are, for NewSession to
	// refuse with ONNX Runtime's own message.
	junk := []byte("not a model")
	if out, n, _ := testRuntime.RewriteResizes(junk, ""); n != 0 || string(out) != string(junk) {
		t.Fatalf("junk: %d rewritten, %q", n, out)
	}
}

// On real u2netp and ISNet every upsampling node takes constant scales,
// and the mask stays what it was to float rounding.
func TestRealMattingModelsResizeRewrite(t *testing.T) {
	for file, want := range map[string]int{"u2netp.onnx": 38, "isnet-imgly-small.onnx": 39} {
		model, err := os.ReadFile(filepath.Join(paths.Models(paths.RepoHome()), file))
		if err != nil {
			t.Fatalf("%s (run scripts/fetch-models.sh): %v", file, err)
		}
		out, n, note := testRuntime.RewriteResizes(model, "")
		if note != "" || n != want {
			t.Fatalf("%s: rewrote %d of %d nodes, note %q", file, n, want, note)
		}
		for _, r := range resizeNodes(t, out) {
			if len(r.inputs) != 3 {
				t.Fatalf("%s: %s still sized at run time", file, r.outputs[0])
			}
		}
		before, after := runBoth(t, model, out)
		a, b := Values[float32](before[0]), Values[float32](after[0])
		for i := range a {
			if d := a[i] - b[i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("%s: mask value %d: %v after the rewrite, %v before", file, i, b[i], a[i])
			}
		}
	}
}
