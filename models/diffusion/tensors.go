package diffusion

import (
	"fmt"
	"math"

	"github.com/x448/float16"

	"github.com/imgserve/imgserve/inference"
)

// The pipeline computes in float32 and converts at each model's boundary
// to the dtype its signature declares, so fp32 and fp16 exports (and mixes
// of them) share every line of the pipeline.

// floatTensor wraps v as a tensor of dt (FP32 or FP16). FP32 shares v.
func floatTensor(dt inference.DType, shape []int64, v []float32) inference.Tensor {
	if dt == inference.FP32 {
		return inference.NewTensor(shape, v)
	}
	h := make([]uint16, len(v))
	for i, x := range v {
		h[i] = float16.Fromfloat32(x).Bits()
	}
	t := inference.NewTensor(shape, h)
	t.DType = inference.FP16
	return t
}

// floats returns a model output's values as float32; FP32 outputs are
// viewed, not copied.
func floats(t inference.Tensor) ([]float32, error) {
	switch t.DType {
	case inference.FP32:
		return inference.Values[float32](t), nil
	case inference.FP16:
		h := inference.Values[uint16](t)
		v := make([]float32, len(h))
		for i, x := range h {
			v[i] = float16.Frombits(x).Float32()
		}
		return v, nil
	}
	return nil, fmt.Errorf("model output is %v, want FP32 or FP16", t.DType)
}

// idsTensor converts token ids to the text encoder's INT32 or INT64.
func idsTensor(dt inference.DType, shape []int64, ids []int64) inference.Tensor {
	if dt == inference.INT64 {
		return inference.NewTensor(shape, ids)
	}
	v := make([]int32, len(ids))
	for i, id := range ids {
		v[i] = int32(id)
	}
	return inference.NewTensor(shape, v)
}

// timestepTensor holds t in the UNet's timestep dtype. Integer inputs get
// it truncated, as diffusers' ONNX pipelines do with
// np.array([t], dtype=timestep_dtype).
func timestepTensor(dt inference.DType, shape []int64, t float64) inference.Tensor {
	switch dt {
	case inference.INT64:
		return inference.NewTensor(shape, []int64{int64(t)})
	case inference.INT32:
		return inference.NewTensor(shape, []int32{int32(t)})
	case inference.FP64:
		return inference.NewTensor(shape, []float64{t})
	case inference.FP16:
		return floatTensor(dt, shape, []float32{float32(t)})
	}
	return inference.NewTensor(shape, []float32{float32(t)})
}

// finite reports whether every value is a number: a model that returns NaN
// or Inf (fp16 overflow, say) makes a broken image, which is an error.
func finite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}
