package inference

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/testmodels"
)

func batchedSession(t *testing.T, model []byte) (*Session, BatchMode, string) {
	t.Helper()
	s, mode, note, err := testRuntime.NewBatchedSession(model, SessionOptions{IntraOpThreads: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, mode, note
}

func TestNativeDynamicBatchIsKept(t *testing.T) {
	_, mode, _ := batchedSession(t, testmodels.Bytes("affine_f32.onnx"))
	if mode != BatchNative {
		t.Fatalf("mode %v, want native", mode)
	}
}

func TestFixedBatchIsRewrittenAndVerified(t *testing.T) {
	s, mode, note := batchedSession(t, testmodels.Bytes("fixed1_affine.onnx"))
	if mode != BatchRewritten {
		t.Fatalf("mode %v (%s), want rewritten", mode, note)
	}
	if s.Inputs()[0].Shape[0] != -1 || s.Outputs()[0].Shape[0] != -1 {
		t.Fatalf("rewritten signature %v -> %v still fixed", s.Inputs(), s.Outputs())
	}
	in := affineRows(3, 3)
	out, err := s.Run([]Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	checkAffine(t, in, out)
}

func TestBatchRewriteFallsBackWhenRowsMix(t *testing.T) {
	// fixed1_reshape reshapes to a constant [1,2,2]: a batch of two cannot run.
	s, mode, note := batchedSession(t, testmodels.Bytes("fixed1_reshape.onnx"))
	if mode != BatchFixed || !strings.Contains(note, "rejected") {
		t.Fatalf("mode %v note %q, want fixed with a rejection note", mode, note)
	}
	if s.Inputs()[0].Shape[0] != 1 {
		t.Fatalf("fallback serves %v, want the original fixed batch", s.Inputs()[0].Shape)
	}
	out, err := s.Run([]Tensor{NewTensor([]int64{1, 4}, []float32{1, 2, 3, 4})})
	if err != nil {
		t.Fatal(err)
	}
	// y = [x0+1, x2+1, x1+1, x3+1]
	if got := Values[float32](out[0]); !slices.Equal(got, []float32{2, 4, 3, 5}) {
		t.Fatalf("fallback output %v", got)
	}
}

func TestRealU2netpBatchRewrite(t *testing.T) {
	model, err := os.ReadFile(filepath.Join(paths.Models(paths.RepoHome()), "u2netp.onnx"))
	if err != nil {
		t.Fatalf("u2netp.onnx (run scripts/fetch-models.sh): %v", err)
	}
	s, mode, note := batchedSession(t, model)
	if mode != BatchRewritten {
		t.Fatalf("u2netp: mode %v (%s), want rewritten", mode, note)
	}
	if len(s.Outputs()) != 7 || s.Outputs()[0].Shape[0] != -1 {
		t.Fatalf("outputs %v", s.Outputs())
	}
}

func TestMakeBatchDynamicRefusesDynamicModel(t *testing.T) {
	if _, err := MakeBatchDynamic(testmodels.Bytes("affine_f32.onnx")); err == nil {
		t.Fatal("rewrote a model that has no fixed leading dimension")
	}
	if _, err := MakeBatchDynamic([]byte{0xff, 0xff, 0xff}); err == nil {
		t.Fatal("accepted garbage as a model")
	}
}

func TestSessionDatatypes(t *testing.T) {
	s := loadSession(t, "dtypes.onnx")
	fp16 := Tensor{DType: FP16, Shape: []int64{1, 3}, Data: []byte{0x00, 0x3e, 0x00, 0xc0, 0x00, 0x34}} // 1.5, -2, 0.25
	in := []Tensor{
		NewTensor([]int64{1, 3}, []float32{1.5, -2, 0.25}),
		fp16,
		NewTensor([]int64{1, 3}, []int64{-9000000000, 0, 5}),
		NewTensor([]int64{1, 3}, []int32{-5, 0, 7}),
		NewTensor([]int64{1, 3}, []uint8{0, 200, 255}),
		NewTensor([]int64{1, 3}, []bool{true, false, true}),
	}
	out, err := s.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := Values[float32](out[0]); !slices.Equal(got, []float32{2.5, -1, 1.25}) {
		t.Errorf("f32 %v", got)
	}
	// FP16 outputs need preallocated buffers (onnxruntime_go truncates them
	// otherwise): 3, -4, 0.5.
	if out[1].DType != FP16 || !slices.Equal(out[1].Data, []byte{0x00, 0x42, 0x00, 0xc4, 0x00, 0x38}) {
		t.Errorf("f16 %v %x", out[1].DType, out[1].Data)
	}
	if got := Values[int64](out[2]); !slices.Equal(got, []int64{-8999999993, 7, 12}) {
		t.Errorf("i64 %v", got)
	}
	if got := Values[int32](out[3]); !slices.Equal(got, []int32{-8, -3, 4}) {
		t.Errorf("i32 %v", got)
	}
	if got := Values[uint8](out[4]); !slices.Equal(got, []uint8{1, 201, 0}) {
		t.Errorf("u8 %v", got)
	}
	if got := Values[bool](out[5]); !slices.Equal(got, []bool{false, true, false}) {
		t.Errorf("bool %v", got)
	}
}

func TestSessionRejectsWrongInputs(t *testing.T) {
	s := loadSession(t, "affine_f32.onnx")
	if _, err := s.Run(nil); err == nil {
		t.Fatal("ran with no inputs")
	}
	short := Tensor{DType: FP32, Shape: []int64{1, 4}, Data: make([]byte, 12)}
	if _, err := s.Run([]Tensor{short}); err == nil || !strings.Contains(err.Error(), "needs 16 bytes") {
		t.Fatalf("short data: %v", err)
	}
}

func TestCUDAWithoutProviderFailsClearly(t *testing.T) {
	// The CPU build of ONNX Runtime has no CUDA provider: asking for one must
	// say so, not crash or silently run on the CPU.
	r := &Runtime{device: Device{CUDA: true, ID: 0}}
	_, err := r.sessionOptions(SessionOptions{IntraOpThreads: 1})
	if !errors.Is(err, ErrCUDAUnavailable) || !strings.Contains(err.Error(), "scripts/fetch-models.sh --gpu") {
		t.Fatalf("got %v, want ErrCUDAUnavailable with advice", err)
	}
}

func TestParseDevice(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Device
		name string
	}{
		{"cpu", Device{}, "cpu"},
		{"cuda", Device{CUDA: true}, "cuda:0"},
		{"cuda:1", Device{CUDA: true, ID: 1}, "cuda:1"},
		{"auto", Device{Auto: true}, "auto"},
	} {
		got, err := ParseDevice(c.in)
		if err != nil || got != c.want || got.String() != c.name {
			t.Errorf("ParseDevice(%q) = %v (%s), %v", c.in, got, got.String(), err)
		}
	}
	for _, bad := range []string{"gpu", "cuda:", "cuda:-1", "cuda:x", "AUTO"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) accepted", bad)
		}
	}
}
