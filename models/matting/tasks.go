package matting

import (
	"fmt"
	"slices"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
)

// The tasks of rembg's models besides the salient-object ones
// (models.TaskMatting).
const (
	TaskCloth      = "cloth-seg"   // u2net_cloth_seg: [1,3,H,W] in, class logits [1,4,H,W] out
	TaskSAM        = "sam"         // SAM's image encoder; options.decoder names its decoder
	TaskSAMDecoder = "sam-decoder" // SAM's prompt encoder and mask decoder
)

func init() {
	models.RegisterTask(TaskCloth, checkCloth)
	models.RegisterTask(TaskSAM, checkSAMEncoder)
	models.RegisterTask(TaskSAMDecoder, checkSAMDecoder)
	models.RegisterWarmUp(TaskSAM, samEncoderWarmUp)
	models.RegisterWarmUp(TaskSAMDecoder, samDecoderWarmUp)
}

func checkCloth(in, out []inference.TensorInfo) error {
	if len(in) != 1 || !models.IsImageBatch(in[0], 3) {
		return fmt.Errorf("want one input FP32 [N,3,H,W], got %s", models.Describe(in))
	}
	if len(out) == 0 || !models.IsImageBatch(out[0], 4) {
		return fmt.Errorf("want a first output FP32 [N,4,H,W] (background, upper, lower, full), got %s", models.Describe(out))
	}
	return nil
}

// checkSAMEncoder wants the encoder exported with its preprocessing, as
// rembg's is: raw RGB [H,W,3] in, embeddings [1,C,h,w] out.
func checkSAMEncoder(in, out []inference.TensorInfo) error {
	if len(in) != 1 || in[0].DType != inference.FP32 || len(in[0].Shape) != 3 || in[0].Shape[2] != 3 && in[0].Shape[2] >= 0 {
		return fmt.Errorf("want one input FP32 [H,W,3] (raw RGB, the export doing SAM's preprocessing), got %s", models.Describe(in))
	}
	if len(out) == 0 || out[0].DType != inference.FP32 || len(out[0].Shape) != 4 {
		return fmt.Errorf("want a first output FP32 [1,C,h,w] (image_embeddings), got %s", models.Describe(out))
	}
	return nil
}

func checkSAMDecoder(in, out []inference.TensorInfo) error {
	for _, name := range samDecoderInputs {
		i := slices.IndexFunc(in, func(t inference.TensorInfo) bool { return t.Name == name })
		if i < 0 || in[i].DType != inference.FP32 {
			return fmt.Errorf("want FP32 inputs %v, got %s", samDecoderInputs, models.Describe(in))
		}
	}
	if len(in) != len(samDecoderInputs) {
		return fmt.Errorf("want exactly the inputs %v, got %s", samDecoderInputs, models.Describe(in))
	}
	if len(out) == 0 || out[0].DType != inference.FP32 || len(out[0].Shape) != 4 {
		return fmt.Errorf("want a first output FP32 [1,M,H,W] (masks), got %s", models.Describe(out))
	}
	return nil
}

// samEncoderWarmUp runs a black frame of the size rembg always sends.
func samEncoderWarmUp([]inference.TensorInfo) []inference.Tensor {
	return []inference.Tensor{inference.NewTensor([]int64{samFrameH, samFrameW, 3}, make([]float32, samFrameH*samFrameW*3))}
}

// samDecoderWarmUp decodes one point on zero embeddings: zeros everywhere
// would ask SAM for a 0x0 mask.
func samDecoderWarmUp(infos []inference.TensorInfo) []inference.Tensor {
	inputs := make([]inference.Tensor, len(infos))
	for i, info := range infos {
		switch info.Name {
		case samCoords:
			inputs[i] = inference.NewTensor([]int64{1, 2, 2}, []float32{512, 342, 0, 0})
		case samLabels:
			inputs[i] = inference.NewTensor([]int64{1, 2}, []float32{1, -1})
		case samHasMask:
			inputs[i] = inference.NewTensor([]int64{1}, []float32{0})
		case samOrigSize:
			inputs[i] = inference.NewTensor([]int64{2}, []float32{samFrameH, samFrameW})
		default: // image_embeddings, mask_input: zeros of the declared shape
			shape := slices.Clone(info.Shape)
			defaults := []int64{1, 256, 64, 64}
			if info.Name == samMaskInput {
				defaults = []int64{1, 1, 256, 256}
			}
			n := int64(1)
			for d := range shape {
				if shape[d] < 0 && d < len(defaults) {
					shape[d] = defaults[d]
				}
				n *= max(shape[d], 1)
			}
			inputs[i] = inference.NewTensor(shape, make([]float32, n))
		}
	}
	return inputs
}
