package models

import (
	"fmt"

	"github.com/imgserve/imgserve/inference"
)

// checkMatting wants one image batch in and a mask batch as first output.
func checkMatting(in, out []inference.TensorInfo) error {
	if len(in) != 1 || !IsImageBatch(in[0], 3) {
		return fmt.Errorf("want one input FP32 [N,3,H,W], got %s", Describe(in))
	}
	if len(out) == 0 || !IsImageBatch(out[0], 1) {
		return fmt.Errorf("want a first output FP32 [N,1,H,W], got %s", Describe(out))
	}
	return nil
}

// IsImageBatch tells an FP32 [N,C,H,W] tensor with the given channels.
func IsImageBatch(t inference.TensorInfo, channels int64) bool {
	return t.DType == inference.FP32 && len(t.Shape) == 4 && (t.Shape[1] == channels || t.Shape[1] < 0)
}

// Describe lists tensors for error messages.
func Describe(infos []inference.TensorInfo) string {
	s := ""
	for i, t := range infos {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %v %v", t.Name, t.DType, t.Shape)
	}
	return "[" + s + "]"
}
