package inference

import (
	"slices"
	"testing"

	"github.com/x448/float16"

	"github.com/imgserve/imgserve/internal/testmodels"
)

// An FP16 output whose height and width are dynamic comes out whole only
// when its shape is predicted (onnxruntime_go copies one byte per element
// of FP16 values it did not allocate); a rank-0 input (optimum's scalar
// timestep) goes in as a scalar. The synthetic fp16 VAE decoder and UNet
// have both.
func TestPredictedOutputShapesAndScalars(t *testing.T) {
	dec := loadSession(t, testmodels.SDVAEDecoderSynthFP16)
	latents := make([]uint16, 4*2*3)
	for i := range latents {
		latents[i] = float16.Fromfloat32(0.1 * float32(i%5)).Bits()
	}
	in := Tensor{DType: FP16, Shape: []int64{1, 4, 2, 3}, Data: NewTensor([]int64{24}, latents).Data}
	if _, err := dec.Run([]Tensor{in}); err == nil {
		t.Error("an FP16 output of unknown shape came out without a predicted shape")
	}
	dec.PredictOutputShapes(func(in []Tensor) [][]int64 {
		s := in[0].Shape
		return [][]int64{{s[0], 3, s[2] * 8, s[3] * 8}}
	})
	out, err := dec.Run([]Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[0].Shape, []int64{1, 3, 16, 24}) || out[0].DType != FP16 || len(out[0].Data) != 2*3*16*24 {
		t.Fatalf("output %v %v, %d bytes", out[0].DType, out[0].Shape, len(out[0].Data))
	}
	// A prediction that contradicts the declared shape is ignored.
	dec.PredictOutputShapes(func([]Tensor) [][]int64 { return [][]int64{{1, 4, 16, 24}} })
	if _, err := dec.Run([]Tensor{in}); err == nil {
		t.Error("a wrong prediction was used")
	}

	unet := loadSession(t, testmodels.SDUNetSynthFP16)
	unet.PredictOutputShapes(func(in []Tensor) [][]int64 { return [][]int64{slices.Clone(in[0].Shape)} })
	sample := Tensor{DType: FP16, Shape: []int64{2, 4, 8, 8}, Data: make([]byte, 2*2*4*8*8)}
	hidden := Tensor{DType: FP16, Shape: []int64{2, 77, 1024}, Data: make([]byte, 2*2*77*1024)}
	out, err = unet.Run([]Tensor{sample, NewTensor([]int64{}, []float32{999}), hidden})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[0].Shape, []int64{2, 4, 8, 8}) {
		t.Errorf("out_sample %v", out[0].Shape)
	}
}
