package models

import (
	"fmt"

	"github.com/imgserve/imgserve/inference"
)

// checkSignature refuses a model whose inputs and outputs do not fit its
// task's pipeline, so a wrong file fails at load with a clear message rather
// than on the first request.
func checkSignature(task string, s *inference.Session) error {
	switch task {
	case TaskMatting:
		in, out := s.Inputs(), s.Outputs()
		if len(in) != 1 || !isImageBatch(in[0], 3) {
			return fmt.Errorf("want one input FP32 [N,3,H,W], got %s", describe(in))
		}
		if len(out) == 0 || !isImageBatch(out[0], 1) {
			return fmt.Errorf("want a first output FP32 [N,1,H,W], got %s", describe(out))
		}
	}
	return nil
}

func isImageBatch(t inference.TensorInfo, channels int64) bool {
	return t.DType == inference.FP32 && len(t.Shape) == 4 && (t.Shape[1] == channels || t.Shape[1] < 0)
}

func describe(infos []inference.TensorInfo) string {
	s := ""
	for i, t := range infos {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %v %v", t.Name, t.DType, t.Shape)
	}
	return "[" + s + "]"
}
