package diffusion

import (
	"fmt"
	"slices"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
)

// Tasks of the pipeline's components, and the tensor names of the
// diffusers/optimum ONNX layout.
const (
	TaskTextEncoder   = "diffusion-text-encoder"
	TaskUNet          = "diffusion-unet"
	TaskVAEDecoder    = "diffusion-vae-decoder"
	TaskVAEEncoder    = "diffusion-vae-encoder"
	TaskSafetyChecker = "diffusion-safety-checker"

	inputIDs            = "input_ids"
	outputHidden        = "last_hidden_state"
	inputSample         = "sample"
	inputTimestep       = "timestep"
	inputEncoderHidden  = "encoder_hidden_states"
	outputSample        = "out_sample"
	inputLatent         = "latent_sample"
	outputImage         = "sample"
	outputLatentParams  = "latent_parameters"
	outputLatentSample  = "latent_sample"
	inputClip           = "clip_input"
	inputImages         = "images"
	outputOutImages     = "out_images"
	outputHasNSFW       = "has_nsfw_concepts"
	vaeDownsample       = 8    // SD's VAE: 2^(len(block_out_channels)-1)
	latentChannels      = 4    // SD 1.x/2.x latents
	defaultTextHidden   = 1024 // SD 2.x / SD-Turbo; used only to warm up a UNet that does not say
	safetyCheckerPixels = 224  // CLIP ViT-L/14 input of the SD safety checker
	warmUpLatentSize    = 8    // 64x64 pixels: small, and deep enough for a UNet's downsampling
	warmUpTextLength    = 77
	clipBOS, clipEOS    = 49406, 49407
)

func init() {
	register := func(task string, check models.SignatureCheck, o models.TaskOptions) {
		models.RegisterTask(task, check)
		// Every component is internal: what a VAE decoder makes is an image
		// that has not passed the NSFW guard, and KServe v2 would hand it
		// out as raw tensors.
		o.Internal = true
		models.RegisterTaskOptions(task, o)
	}
	register(TaskTextEncoder, func(in, out []inference.TensorInfo) error { _, err := parseTextEncoder(in, out); return err },
		models.TaskOptions{WarmUp: warmTextEncoder, OutputShapes: predictRows})
	register(TaskUNet, func(in, out []inference.TensorInfo) error { _, err := parseUNet(in, out); return err },
		models.TaskOptions{WarmUp: warmUNet, OutputShapes: predictUNet, SharedInputs: []string{inputTimestep}})
	register(TaskVAEDecoder, func(in, out []inference.TensorInfo) error { _, err := parseVAEDecoder(in, out); return err },
		models.TaskOptions{WarmUp: warmLatents, OutputShapes: predictVAEDecoder})
	register(TaskVAEEncoder, func(in, out []inference.TensorInfo) error { _, err := parseVAEEncoder(in, out); return err },
		models.TaskOptions{WarmUp: warmVAEEncoder, OutputShapes: predictVAEEncoder})
	register(TaskSafetyChecker, func(in, out []inference.TensorInfo) error { _, err := parseSafetyChecker(in, out); return err },
		models.TaskOptions{WarmUp: warmSafetyChecker, OutputShapes: predictSafetyChecker})
}

func find(infos []inference.TensorInfo, name string) int {
	return slices.IndexFunc(infos, func(t inference.TensorInfo) bool { return t.Name == name })
}

func isFloat(dt inference.DType) bool { return dt == inference.FP32 || dt == inference.FP16 }

// fits reports whether a declared dimension accepts n (-1 is dynamic).
func fits(dim, n int64) bool { return dim == n || dim < 0 }

// fixed is a declared dimension, or 0 when it is dynamic.
func fixed(dim int64) int { return int(max(dim, 0)) }

func sigError(in, out []inference.TensorInfo, format string, args ...any) error {
	return fmt.Errorf(format+"; inputs %s, outputs %s", append(args, models.Describe(in), models.Describe(out))...)
}

// textEncoderSig: input_ids INT32|INT64 [B,T] -> last_hidden_state FP [B,T,D].
type textEncoderSig struct {
	idsType    inference.DType
	seqLen     int // 0 when dynamic
	hidden     int // output position of last_hidden_state
	hiddenType inference.DType
	hiddenSize int // 0 when dynamic
}

func parseTextEncoder(in, out []inference.TensorInfo) (textEncoderSig, error) {
	h := find(out, outputHidden)
	switch {
	case len(in) != 1 || in[0].Name != inputIDs || len(in[0].Shape) != 2 ||
		(in[0].DType != inference.INT32 && in[0].DType != inference.INT64) || (in[0].Shape[1] >= 0 && in[0].Shape[1] < 2):
		return textEncoderSig{}, sigError(in, out, "text encoder: want one input %s INT32 or INT64 [B,T]", inputIDs)
	case h < 0 || !isFloat(out[h].DType) || len(out[h].Shape) != 3:
		return textEncoderSig{}, sigError(in, out, "text encoder: want an output %s FP32 or FP16 [B,T,D]", outputHidden)
	}
	return textEncoderSig{idsType: in[0].DType, seqLen: fixed(in[0].Shape[1]), hidden: h,
		hiddenType: out[h].DType, hiddenSize: fixed(out[h].Shape[2])}, nil
}

// unetSig: sample FP [B,4,h,w], timestep (a scalar or [1], integer or
// float), encoder_hidden_states FP [B,T,D] -> out_sample FP [B,4,h,w].
type unetSig struct {
	sample, timestep, hidden int // input positions
	sampleType, hiddenType   inference.DType
	timestepType             inference.DType
	timestepShape            []int64
	hiddenSize               int // 0 when dynamic
	out                      int
	outType                  inference.DType
}

func parseUNet(in, out []inference.TensorInfo) (unetSig, error) {
	s := unetSig{sample: find(in, inputSample), timestep: find(in, inputTimestep), hidden: find(in, inputEncoderHidden), out: find(out, outputSample)}
	fail := func(format string, args ...any) (unetSig, error) {
		return unetSig{}, sigError(in, out, "unet: "+format, args...)
	}
	switch {
	case s.sample < 0 || !isFloat(in[s.sample].DType) || len(in[s.sample].Shape) != 4 || !fits(in[s.sample].Shape[1], latentChannels):
		return fail("want input %s FP32 or FP16 [B,4,h,w]", inputSample)
	case s.hidden < 0 || !isFloat(in[s.hidden].DType) || len(in[s.hidden].Shape) != 3:
		return fail("want input %s FP32 or FP16 [B,T,D]", inputEncoderHidden)
	case s.timestep < 0:
		return fail("want input %s", inputTimestep)
	case s.out < 0 || !isFloat(out[s.out].DType) || len(out[s.out].Shape) != 4:
		return fail("want output %s FP32 or FP16 [B,4,h,w]", outputSample)
	case len(in) != 3:
		// SDXL adds text_embeds and time_ids, LCM timestep_cond: their
		// pipelines differ, and feeding zeros would give wrong images.
		return fail("unexpected inputs: this pipeline feeds %s, %s and %s only (SDXL and LCM UNets are not supported)",
			inputSample, inputTimestep, inputEncoderHidden)
	}
	ts := in[s.timestep]
	switch ts.DType {
	case inference.INT64, inference.INT32, inference.FP32, inference.FP16, inference.FP64:
	default:
		return fail("%s must be an integer or float, got %v", inputTimestep, ts.DType)
	}
	switch {
	case len(ts.Shape) == 0:
		s.timestepShape = []int64{}
	case len(ts.Shape) == 1 && fits(ts.Shape[0], 1):
		// [1], or [batch]: diffusers' ONNX pipelines pass one timestep,
		// which the graph broadcasts over the batch.
		s.timestepShape = []int64{1}
	default:
		return fail("%s must be a scalar or [1], got %v", inputTimestep, ts.Shape)
	}
	s.sampleType, s.hiddenType, s.timestepType = in[s.sample].DType, in[s.hidden].DType, ts.DType
	s.hiddenSize = fixed(in[s.hidden].Shape[2])
	s.outType = out[s.out].DType
	return s, nil
}

// vaeDecoderSig: latent_sample FP [B,4,h,w] -> sample FP [B,3,8h,8w].
type vaeDecoderSig struct {
	inType, outType inference.DType
	out             int
}

func parseVAEDecoder(in, out []inference.TensorInfo) (vaeDecoderSig, error) {
	o := find(out, outputImage)
	switch {
	case len(in) != 1 || in[0].Name != inputLatent || !isFloat(in[0].DType) || len(in[0].Shape) != 4 || !fits(in[0].Shape[1], latentChannels):
		return vaeDecoderSig{}, sigError(in, out, "vae decoder: want one input %s FP32 or FP16 [B,4,h,w]", inputLatent)
	case o < 0 || !isFloat(out[o].DType) || len(out[o].Shape) != 4 || !fits(out[o].Shape[1], 3):
		return vaeDecoderSig{}, sigError(in, out, "vae decoder: want an output %s FP32 or FP16 [B,3,H,W]", outputImage)
	}
	return vaeDecoderSig{inType: in[0].DType, outType: out[o].DType, out: o}, nil
}

// vaeEncoderSig: sample FP [B,3,H,W] -> latent_parameters FP [B,8,h,w]
// (optimum: mean and log-variance) or latent_sample FP [B,4,h,w] (older
// exports: already sampled).
type vaeEncoderSig struct {
	inType, outType inference.DType
	out             int
	parameters      bool
}

func parseVAEEncoder(in, out []inference.TensorInfo) (vaeEncoderSig, error) {
	if len(in) != 1 || in[0].Name != inputSample || !isFloat(in[0].DType) || len(in[0].Shape) != 4 || !fits(in[0].Shape[1], 3) {
		return vaeEncoderSig{}, sigError(in, out, "vae encoder: want one input %s FP32 or FP16 [B,3,H,W]", inputSample)
	}
	s := vaeEncoderSig{inType: in[0].DType, out: find(out, outputLatentParams), parameters: true}
	if s.out < 0 {
		s.out, s.parameters = find(out, outputLatentSample), false
	}
	want := int64(latentChannels)
	if s.parameters {
		want *= 2
	}
	if s.out < 0 || !isFloat(out[s.out].DType) || len(out[s.out].Shape) != 4 || !fits(out[s.out].Shape[1], want) {
		return vaeEncoderSig{}, sigError(in, out, "vae encoder: want an output %s FP [B,8,h,w] or %s FP [B,4,h,w]", outputLatentParams, outputLatentSample)
	}
	s.outType = out[s.out].DType
	return s, nil
}

// safetySig: clip_input FP [B,3,224,224], images FP [B,H,W,3] ->
// has_nsfw_concepts BOOL [B] (and out_images, which is not used: a flagged
// image is withheld, not blacked out).
type safetySig struct {
	clip, images         int
	clipType, imagesType inference.DType
	flags                int
}

func parseSafetyChecker(in, out []inference.TensorInfo) (safetySig, error) {
	s := safetySig{clip: find(in, inputClip), images: find(in, inputImages), flags: find(out, outputHasNSFW)}
	switch {
	case len(in) != 2 || s.clip < 0 || s.images < 0:
		return safetySig{}, sigError(in, out, "safety checker: want inputs %s and %s", inputClip, inputImages)
	case !isFloat(in[s.clip].DType) || len(in[s.clip].Shape) != 4 || !fits(in[s.clip].Shape[1], 3) ||
		!fits(in[s.clip].Shape[2], safetyCheckerPixels) || !fits(in[s.clip].Shape[3], safetyCheckerPixels):
		return safetySig{}, sigError(in, out, "safety checker: want %s FP32 or FP16 [B,3,224,224]", inputClip)
	case !isFloat(in[s.images].DType) || len(in[s.images].Shape) != 4 || !fits(in[s.images].Shape[3], 3):
		return safetySig{}, sigError(in, out, "safety checker: want %s FP32 or FP16 [B,H,W,3]", inputImages)
	case s.flags < 0 || out[s.flags].DType != inference.BOOL || len(out[s.flags].Shape) != 1:
		return safetySig{}, sigError(in, out, "safety checker: want an output %s BOOL [B]", outputHasNSFW)
	}
	s.clipType, s.imagesType = in[s.clip].DType, in[s.images].DType
	return s, nil
}

// Output shape predictors. Each returns nil for what it cannot know, and
// ONNX Runtime then allocates that output itself (fine for FP32).

// predictRows fills in a leading batch dimension and, for rank-3 outputs,
// the sequence length of a [B,T] first input: a text encoder's outputs.
func predictRows(_, outputs []inference.TensorInfo) func([]inference.Tensor) [][]int64 {
	return func(in []inference.Tensor) [][]int64 {
		if len(in) == 0 || len(in[0].Shape) != 2 {
			return nil
		}
		shapes := make([][]int64, len(outputs))
		for i, o := range outputs {
			s := slices.Clone(o.Shape)
			if len(s) > 0 {
				s[0] = in[0].Shape[0]
			}
			if len(s) == 3 {
				s[1] = in[0].Shape[1]
			}
			shapes[i] = s
		}
		return shapes
	}
}

func predictUNet(inputs, outputs []inference.TensorInfo) func([]inference.Tensor) [][]int64 {
	sample := find(inputs, inputSample)
	out := find(outputs, outputSample)
	return func(in []inference.Tensor) [][]int64 {
		shapes := make([][]int64, len(outputs))
		if sample >= 0 && out >= 0 && sample < len(in) {
			shapes[out] = slices.Clone(in[sample].Shape)
		}
		return shapes
	}
}

func predictVAEDecoder(_, outputs []inference.TensorInfo) func([]inference.Tensor) [][]int64 {
	o := find(outputs, outputImage)
	return func(in []inference.Tensor) [][]int64 {
		shapes := make([][]int64, len(outputs))
		if o >= 0 && len(in) == 1 && len(in[0].Shape) == 4 {
			s := in[0].Shape
			shapes[o] = []int64{s[0], 3, s[2] * vaeDownsample, s[3] * vaeDownsample}
		}
		return shapes
	}
}

func predictVAEEncoder(_, outputs []inference.TensorInfo) func([]inference.Tensor) [][]int64 {
	return func(in []inference.Tensor) [][]int64 {
		shapes := make([][]int64, len(outputs))
		if len(in) != 1 || len(in[0].Shape) != 4 {
			return shapes
		}
		s := in[0].Shape
		for i, o := range outputs {
			ch := int64(latentChannels)
			if o.Name == outputLatentParams {
				ch *= 2
			}
			if o.Name == outputLatentParams || o.Name == outputLatentSample {
				shapes[i] = []int64{s[0], ch, s[2] / vaeDownsample, s[3] / vaeDownsample}
			}
		}
		return shapes
	}
}

func predictSafetyChecker(inputs, outputs []inference.TensorInfo) func([]inference.Tensor) [][]int64 {
	images := find(inputs, inputImages)
	return func(in []inference.Tensor) [][]int64 {
		shapes := make([][]int64, len(outputs))
		if images < 0 || images >= len(in) || len(in[images].Shape) != 4 {
			return shapes
		}
		for i, o := range outputs {
			switch o.Name {
			case outputOutImages:
				shapes[i] = slices.Clone(in[images].Shape)
			case outputHasNSFW:
				shapes[i] = []int64{in[images].Shape[0]}
			}
		}
		return shapes
	}
}

// Warm-up inputs: rows rows (a full batch, so the run does not wait for
// company) of the smallest shapes the real models take.

func warmTextEncoder(in []inference.TensorInfo, rows int) []inference.Tensor {
	n := int64(warmUpTextLength)
	if in[0].Shape[1] > 0 {
		n = in[0].Shape[1]
	}
	ids := make([]int64, int64(rows)*n)
	for r := range rows {
		ids[int64(r)*n], ids[int64(r)*n+1] = clipBOS, clipEOS
	}
	return []inference.Tensor{idsTensor(in[0].DType, []int64{int64(rows), n}, ids)}
}

func warmUNet(in []inference.TensorInfo, rows int) []inference.Tensor {
	out := make([]inference.Tensor, len(in))
	b := int64(rows)
	for i, info := range in {
		switch info.Name {
		case inputSample:
			out[i] = zeros(info.DType, b, latentChannels, warmUpLatentSize, warmUpLatentSize)
		case inputTimestep:
			shape := []int64{}
			if len(info.Shape) == 1 {
				shape = []int64{1}
			}
			out[i] = timestepTensor(info.DType, shape, 999)
		case inputEncoderHidden:
			d := int64(defaultTextHidden)
			if info.Shape[2] > 0 {
				d = info.Shape[2]
			}
			out[i] = zeros(info.DType, b, warmUpTextLength, d)
		}
	}
	return out
}

func warmLatents(in []inference.TensorInfo, rows int) []inference.Tensor {
	return []inference.Tensor{zeros(in[0].DType, int64(rows), latentChannels, warmUpLatentSize, warmUpLatentSize)}
}

func warmVAEEncoder(in []inference.TensorInfo, rows int) []inference.Tensor {
	px := int64(warmUpLatentSize * vaeDownsample)
	return []inference.Tensor{zeros(in[0].DType, int64(rows), 3, px, px)}
}

func warmSafetyChecker(in []inference.TensorInfo, rows int) []inference.Tensor {
	out := make([]inference.Tensor, len(in))
	px := int64(warmUpLatentSize * vaeDownsample)
	for i, info := range in {
		if info.Name == inputClip {
			out[i] = zeros(info.DType, int64(rows), 3, safetyCheckerPixels, safetyCheckerPixels)
		} else {
			out[i] = zeros(info.DType, int64(rows), px, px, 3)
		}
	}
	return out
}

func zeros(dt inference.DType, shape ...int64) inference.Tensor {
	n := int64(dt.Size())
	for _, d := range shape {
		n *= d
	}
	return inference.Tensor{DType: dt, Shape: shape, Data: make([]byte, n)}
}
