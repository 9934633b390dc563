package inference

import (
	"encoding/binary"
	"math"
	"math/big"
	"testing"
)

func TestShapeArithmeticIsChecked(t *testing.T) {
	for _, c := range []struct {
		shape []int64
		dt    DType
		bytes int64
		ok    bool
	}{
		{[]int64{1, 3, 320, 320}, FP32, 1228800, true},
		{[]int64{}, INT64, 8, true},
		{[]int64{0, 4}, FP32, 0, true},
		{[]int64{2, math.MaxInt64}, FP32, 0, false}, // wraps to a small number unchecked
		{[]int64{4, 1 << 62}, FP32, 0, false},       // wraps to 0 unchecked
		{[]int64{8, 1 << 28}, INT64, 1 << 34, true},
		{[]int64{0, 1 << 62, 1 << 62}, FP32, 0, false},
		{[]int64{1, -1}, FP32, 0, false},
	} {
		n, ok := ShapeBytes(c.dt, c.shape)
		if ok != c.ok || n != c.bytes {
			t.Errorf("ShapeBytes(%v, %v) = %d, %v; want %d, %v", c.dt, c.shape, n, ok, c.bytes, c.ok)
		}
	}
	// A shape whose product wraps to the data's length must not validate.
	bad := Tensor{DType: FP32, Shape: []int64{4, 1 << 62}, Data: nil}
	if bad.Validate() == nil {
		t.Fatal("an overflowing shape validated")
	}
}

// FuzzShapeBytes: for any shape, ShapeBytes either refuses it or returns the
// exact product, computed here in arbitrary precision; Validate and the
// scheduler never panic on it.
func FuzzShapeBytes(f *testing.F) {
	seed := func(dt DType, dims ...int64) []byte {
		b := []byte{byte(dt)}
		for _, d := range dims {
			b = binary.LittleEndian.AppendUint64(b, uint64(d))
		}
		return b
	}
	f.Add(seed(FP32, 1, 3, 320, 320))
	f.Add(seed(FP32, 2, math.MaxInt64))
	f.Add(seed(INT64, 4, 1<<62))
	f.Add(seed(INT64, 8, 1<<28))
	f.Add(seed(FP16, 0, 1<<62, 1<<62))
	f.Add(seed(BOOL, -1, 2))
	s := NewScheduler(echoRunner{}, BatchConfig{MaxBatchSize: 4, MaxQueueSize: 4, Instances: 1}, nil)
	f.Cleanup(s.Close)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1 || len(b) > 1+8*8 {
			return
		}
		dt := DType(b[0])
		var shape []int64
		for rest := b[1:]; len(rest) >= 8; rest = rest[8:] {
			shape = append(shape, int64(binary.LittleEndian.Uint64(rest)))
		}
		n, ok := ShapeBytes(dt, shape)
		// exact is the size; nonzero the size without zero dimensions, which
		// must be sane too.
		exact, nonzero := big.NewInt(int64(dt.Size())), big.NewInt(int64(dt.Size()))
		sane := dt.Size() > 0
		for _, d := range shape {
			sane = sane && d >= 0
			exact.Mul(exact, big.NewInt(d))
			if d != 0 {
				nonzero.Mul(nonzero, big.NewInt(d))
			}
		}
		if ok {
			if !sane || exact.Cmp(big.NewInt(n)) != 0 {
				t.Fatalf("ShapeBytes(%v, %v) = %d, exact %v", dt, shape, n, exact)
			}
		} else if sane && nonzero.Cmp(big.NewInt(MaxTensorBytes/8)) < 0 {
			t.Fatalf("ShapeBytes(%v, %v) refused a small shape (%v bytes)", dt, shape, exact)
		}
		// Data sized from the bytes at hand, never from the shape.
		data := make([]byte, min(len(b), 64))
		tensor := Tensor{DType: dt, Shape: shape, Data: data}
		if tensor.Validate() == nil && (!ok || n != int64(len(data))) {
			t.Fatalf("Validate accepted %v %v with %d bytes", dt, shape, len(data))
		}
		s.Submit(t.Context(), []Tensor{tensor})
	})
}

type echoRunner struct{}

func (echoRunner) Run(in []Tensor) ([]Tensor, error) { return in, nil }
