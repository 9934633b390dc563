package inference

import (
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/internal/testmodels"
)

// A model loaded from memory whose weights are external data loads when
// the session is told their folder, and only then.
func TestExternalDataModelLoadsFromItsFolder(t *testing.T) {
	model := testmodels.Bytes(testmodels.ExternalAffine)
	if _, err := testRuntime.NewSession(model, SessionOptions{IntraOpThreads: 1}); err == nil {
		t.Fatal("loaded without the folder of its external data")
	}
	s, err := testRuntime.NewSession(model, SessionOptions{IntraOpThreads: 1, ExternalDataDir: testmodels.Dir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if in, out := s.Inputs(), s.Outputs(); len(in) != 1 || in[0].Name != "x" || !slices.Equal(in[0].Shape, []int64{-1, 4}) ||
		len(out) != 1 || out[0].Name != "y" || out[0].DType != FP32 {
		t.Fatalf("signature %v -> %v", in, out)
	}
	got, err := s.Run([]Tensor{NewTensor([]int64{1, 4}, []float32{1, 1, 2, -1})})
	if err != nil {
		t.Fatal(err)
	}
	if y := Values[float32](got[0]); !slices.Equal(y, []float32{2, 3, 7, -3}) { // x*[1,2,3,4]+1
		t.Fatalf("y = %v", y)
	}
}

// Bytes that are no model are refused while the signature is read.
func TestSignatureRefusesJunk(t *testing.T) {
	if _, err := testRuntime.NewSession([]byte("not a model"), SessionOptions{}); err == nil || !strings.Contains(err.Error(), "reading model signature") {
		t.Fatalf("junk: %v", err)
	}
	if _, err := testRuntime.NewSession(nil, SessionOptions{}); err == nil {
		t.Fatal("empty model loaded")
	}
}
