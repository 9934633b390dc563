package inference

import (
	"slices"
	"strings"
	"testing"
)

func affineOutputs(t *testing.T, s *Session, x Tensor) []Tensor {
	t.Helper()
	out, err := s.Run([]Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTensor(t *testing.T, what string, got, want Tensor) {
	t.Helper()
	if got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !slices.Equal(got.Data, want.Data) {
		t.Errorf("%s: got %v %v, want %v %v", what, got.DType, got.Shape, want.DType, want.Shape)
	}
}

func TestRunBoundGivesWhatRunGives(t *testing.T) {
	s := loadSession(t, "affine_f32.onnx")
	x := affineRows(3, 5)
	want := affineOutputs(t, s, x)
	host, dev, err := s.RunBound([]BoundInput{{Host: x}}, []bool{false, false})
	if err != nil {
		t.Fatal(err)
	}
	if dev[0] != nil || dev[1] != nil {
		t.Fatal("outputs asked for on the host came back on the device")
	}
	for i := range want {
		sameTensor(t, s.Outputs()[i].Name, host[i], want[i])
	}
}

// An output kept in device memory is the next run's input as it is, and
// comes back to the host unchanged.
func TestDeviceOutputFeedsTheNextRun(t *testing.T) {
	s := loadSession(t, "affine_f32.onnx")
	before := LiveDeviceTensors()
	x := affineRows(7, 4)
	first := affineOutputs(t, s, x)
	second := affineOutputs(t, s, first[0])

	host, dev, err := s.RunBound([]BoundInput{{Host: x}}, []bool{true, false})
	if err != nil {
		t.Fatal(err)
	}
	if host[0].Data != nil || dev[0] == nil || dev[1] != nil {
		t.Fatalf("placement wrong: host %v, device %v", host, dev)
	}
	sameTensor(t, "sum on the host", host[1], first[1])
	if dev[0].DType != FP32 || !slices.Equal(dev[0].Shape, []int64{4, 4}) {
		t.Errorf("device tensor %v %v", dev[0].DType, dev[0].Shape)
	}
	y, err := dev[0].Host()
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "y copied back", y, first[0])

	host2, dev2, err := s.RunBound([]BoundInput{{Device: dev[0]}}, []bool{true, false})
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "sum of the second run", host2[1], second[1])
	y2, err := dev2[0].Host()
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "y of the second run", y2, second[0])
	if got := LiveDeviceTensors() - before; got != 2 {
		t.Errorf("%d device tensors live, want 2", got)
	}
	dev[0].Release()
	dev[0].Release() // twice is harmless
	dev2[0].Release()
	if got := LiveDeviceTensors(); got != before {
		t.Errorf("%d device tensors live after release, want %d", got, before)
	}
	if _, _, err := s.RunBound([]BoundInput{{Device: dev[0]}}, []bool{false, false}); err == nil || !strings.Contains(err.Error(), "released") {
		t.Errorf("a released device tensor as input: %v", err)
	}
	if _, err := dev[0].Host(); err == nil {
		t.Error("Host of a released tensor worked")
	}
}

func TestUploadedInput(t *testing.T) {
	s := loadSession(t, "affine_f32.onnx")
	x := affineRows(2, 3)
	want := affineOutputs(t, s, x)
	d, err := s.Upload(x)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	back, err := d.Host()
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "uploaded and back", back, x)
	host, _, err := s.RunBound([]BoundInput{{Device: d}}, []bool{false, false})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		sameTensor(t, s.Outputs()[i].Name, host[i], want[i])
	}
}

func TestRunBoundRejectsBadInputs(t *testing.T) {
	s := loadSession(t, "affine_f32.onnx")
	other := loadSession(t, "affine_f32.onnx")
	foreign, err := other.Upload(affineRows(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Release()
	cases := []struct {
		name string
		in   []BoundInput
		keep []bool
		want string
	}{
		{"too few placements", []BoundInput{{Host: affineRows(1, 1)}}, []bool{false}, "output placements"},
		{"wrong type", []BoundInput{{Host: NewTensor([]int64{1, 4}, []int32{1, 2, 3, 4})}}, []bool{false, false}, "wants FP32"},
		{"bad shape", []BoundInput{{Host: NewTensor([]int64{2, 4}, []float32{1})}}, []bool{false, false}, "needs 32 bytes"},
		{"another session's tensor", []BoundInput{{Device: foreign}}, []bool{false, false}, "another session"},
	}
	for _, c := range cases {
		if _, _, err := s.RunBound(c.in, c.keep); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}
