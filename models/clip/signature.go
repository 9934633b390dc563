package clip

import (
	"fmt"
	"slices"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/tokenizer"
)

// Tasks, tensor names and sizes of the export.
const (
	TaskVision = "clip-vision"
	TaskText   = "clip-text"

	// Dim is the length of an embedding.
	Dim = 512

	InputPixels        = "pixel_values"
	InputIDs           = "input_ids"
	InputAttentionMask = "attention_mask"
	OutputImageEmbeds  = "image_embeds"
	OutputTextEmbeds   = "text_embeds"
)

func init() {
	models.RegisterTask(TaskVision, checkVision)
	models.RegisterTask(TaskText, checkText)
	models.RegisterDimBounds(TaskText, textBounds)
}

// textBounds: a text tower reads at most CLIP's 77 positions; longer
// sequences from a client would only cost memory and time (attention is
// quadratic in them).
func textBounds(in []inference.TensorInfo) [][]int64 {
	out := make([][]int64, len(in))
	for i, t := range in {
		if (t.Name == InputIDs || t.Name == InputAttentionMask) && len(t.Shape) == 2 {
			out[i] = []int64{0, tokenizer.CLIPContextLength}
		}
	}
	return out
}

// fits reports whether a declared dimension accepts n (-1 is dynamic).
func fits(dim, n int64) bool { return dim == n || dim < 0 }

func find(infos []inference.TensorInfo, name string) (inference.TensorInfo, int) {
	i := slices.IndexFunc(infos, func(t inference.TensorInfo) bool { return t.Name == name })
	if i < 0 {
		return inference.TensorInfo{}, -1
	}
	return infos[i], i
}

func checkVision(in, out []inference.TensorInfo) error {
	size := int64(DefaultImageConfig.Size)
	if len(in) != 1 || in[0].Name != InputPixels || !models.IsImageBatch(in[0], 3) ||
		!fits(in[0].Shape[2], size) || !fits(in[0].Shape[3], size) {
		return fmt.Errorf("want one input %s FP32 [B,3,%d,%d], got %s", InputPixels, size, size, models.Describe(in))
	}
	return checkEmbeds(out, OutputImageEmbeds)
}

func checkText(in, out []inference.TensorInfo) error {
	ids, _ := find(in, InputIDs)
	mask, maskAt := find(in, InputAttentionMask)
	ok := isTokenBatch(ids) && len(in) <= 2
	if len(in) == 2 {
		ok = ok && maskAt >= 0 && isTokenBatch(mask) && fits(mask.Shape[1], ids.Shape[1]) && fits(ids.Shape[1], mask.Shape[1])
	}
	if !ok {
		return fmt.Errorf("want input %s INT64 [B,T] (T dynamic or >= 2) and optionally %s INT64 [B,T], got %s",
			InputIDs, InputAttentionMask, models.Describe(in))
	}
	return checkEmbeds(out, OutputTextEmbeds)
}

func isTokenBatch(t inference.TensorInfo) bool {
	return t.DType == inference.INT64 && len(t.Shape) == 2 && (t.Shape[1] < 0 || t.Shape[1] >= 2)
}

func checkEmbeds(out []inference.TensorInfo, name string) error {
	t, i := find(out, name)
	if i < 0 || t.DType != inference.FP32 || len(t.Shape) != 2 || !fits(t.Shape[1], Dim) {
		return fmt.Errorf("want an output %s FP32 [B,%d], got %s", name, Dim, models.Describe(out))
	}
	return nil
}
