package caption

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
)

// Tasks and the tensor names of the Optimum export.
const (
	TaskEncoder = "caption-encoder"
	TaskDecoder = "caption-decoder"

	InputPixels         = "pixel_values"
	OutputHidden        = "last_hidden_state"
	InputIDs            = "input_ids"
	InputEncoderHidden  = "encoder_hidden_states"
	InputUseCacheBranch = "use_cache_branch"
	OutputLogits        = "logits"
)

func init() {
	models.RegisterTask(TaskEncoder, func(in, out []inference.TensorInfo) error {
		_, err := parseEncoder(in, out)
		return err
	})
	models.RegisterTask(TaskDecoder, func(in, out []inference.TensorInfo) error {
		_, err := parseDecoder(in, out)
		return err
	})
}

// encoderSig is where the encoder's tensors are.
type encoderSig struct {
	width, height int // 0 when dynamic
	hidden        int // output index of last_hidden_state
	hiddenSize    int // its last dimension, 0 when dynamic
}

func parseEncoder(in, out []inference.TensorInfo) (encoderSig, error) {
	if len(in) != 1 || in[0].Name != InputPixels || !models.IsImageBatch(in[0], 3) {
		return encoderSig{}, fmt.Errorf("want one input %s FP32 [B,3,H,W], got %s", InputPixels, models.Describe(in))
	}
	i := slices.IndexFunc(out, func(t inference.TensorInfo) bool { return t.Name == OutputHidden })
	if i < 0 || out[i].DType != inference.FP32 || len(out[i].Shape) != 3 {
		return encoderSig{}, fmt.Errorf("want an output %s FP32 [B,S,E], got %s", OutputHidden, models.Describe(out))
	}
	return encoderSig{
		width:      int(max(in[0].Shape[3], 0)),
		height:     int(max(in[0].Shape[2], 0)),
		hidden:     i,
		hiddenSize: int(max(out[i].Shape[2], 0)),
	}, nil
}

// decoderSig is where the merged decoder's tensors are, and the cache's
// geometry, read from the past_key_values declarations.
type decoderSig struct {
	ids, encoder, useCache int // input positions
	pastKey, pastValue     []int
	logits                 int // output positions
	presentKey             []int
	presentValue           []int

	layers, heads, headSize int
	hiddenSize              int // encoder_hidden_states' last dimension, 0 when dynamic
	vocab                   int // logits' last dimension, 0 when dynamic
	inputs                  int // how many inputs Run takes
}

func parseDecoder(in, out []inference.TensorInfo) (decoderSig, error) {
	fail := func(format string, args ...any) (decoderSig, error) {
		return decoderSig{}, fmt.Errorf("merged decoder: "+format+"; inputs %s, outputs %s",
			append(args, models.Describe(in), models.Describe(out))...)
	}
	find := func(infos []inference.TensorInfo, name string) int {
		return slices.IndexFunc(infos, func(t inference.TensorInfo) bool { return t.Name == name })
	}
	s := decoderSig{ids: find(in, InputIDs), encoder: find(in, InputEncoderHidden),
		useCache: find(in, InputUseCacheBranch), logits: find(out, OutputLogits), inputs: len(in)}
	switch {
	case s.ids < 0 || in[s.ids].DType != inference.INT64 || len(in[s.ids].Shape) != 2:
		return fail("want input %s INT64 [B,T]", InputIDs)
	case s.encoder < 0 || in[s.encoder].DType != inference.FP32 || len(in[s.encoder].Shape) != 3:
		return fail("want input %s FP32 [B,S,E]", InputEncoderHidden)
	case s.useCache < 0 || in[s.useCache].DType != inference.BOOL || !slices.Equal(in[s.useCache].Shape, []int64{1}):
		return fail("want input %s BOOL [1] (a merged decoder export)", InputUseCacheBranch)
	case s.logits < 0 || out[s.logits].DType != inference.FP32 || len(out[s.logits].Shape) != 3:
		return fail("want output %s FP32 [B,T,V]", OutputLogits)
	}
	s.hiddenSize = int(max(in[s.encoder].Shape[2], 0))
	s.vocab = int(max(out[s.logits].Shape[2], 0))

	// Layers are numbered from 0 without gaps; each has a key and a value
	// of one geometry, [B, heads, P, head size], with heads and head size
	// fixed by the export.
	for l := 0; ; l++ {
		names := [4]string{pastName(l, "key"), pastName(l, "value"), presentName(l, "key"), presentName(l, "value")}
		pk, pv, ok, ov := find(in, names[0]), find(in, names[1]), find(out, names[2]), find(out, names[3])
		if pk < 0 && pv < 0 && ok < 0 && ov < 0 {
			break
		}
		for j, pos := range [4]int{pk, pv, ok, ov} {
			if pos < 0 {
				return fail("layer %d has no %s", l, names[j])
			}
			infos := in
			if j >= 2 {
				infos = out
			}
			t := infos[pos]
			if t.DType != inference.FP32 || len(t.Shape) != 4 || t.Shape[1] < 1 || t.Shape[3] < 1 {
				return fail("%s must be FP32 [B,heads,P,head size] with fixed heads and head size, got %v %v", t.Name, t.DType, t.Shape)
			}
			if l == 0 && j == 0 {
				s.heads, s.headSize = int(t.Shape[1]), int(t.Shape[3])
			}
			if int(t.Shape[1]) != s.heads || int(t.Shape[3]) != s.headSize {
				return fail("%s has shape %v, layer 0 has %d heads of size %d", t.Name, t.Shape, s.heads, s.headSize)
			}
		}
		s.pastKey, s.pastValue = append(s.pastKey, pk), append(s.pastValue, pv)
		s.presentKey, s.presentValue = append(s.presentKey, ok), append(s.presentValue, ov)
		s.layers++
	}
	if s.layers == 0 {
		return fail("no %s inputs", pastName(0, "key"))
	}
	if want := 3 + 2*s.layers; len(in) != want {
		// An attention_mask or position_ids input would need feeding; this
		// export has neither, and sequences are batched by past length.
		return fail("unexpected inputs: want %s, %s, %d past_key_values and %s", InputIDs, InputEncoderHidden, 2*s.layers, InputUseCacheBranch)
	}
	return s, nil
}

func pastName(layer int, kind string) string {
	return "past_key_values." + strconv.Itoa(layer) + "." + kind
}

func presentName(layer int, kind string) string {
	return "present." + strconv.Itoa(layer) + "." + kind
}
