// Package testmodels provides small synthetic ONNX models for tests.
//
// The models mimic the input/output signatures of the real models imgserve
// serves (LaMa inpainting, CLIP ViT-B/32, ViT-GPT2 captioning, rembg's
// BiRefNet, isnet-anime, BRIA RMBG, BEN2, u2net_cloth_seg and SAM, Stable
// Diffusion's text encoder, UNet, VAE and safety checker) plus a few
// generic models for the KServe protocol and the scheduler, but compute
// cheap, exactly documented functions so that tests can check results.
// README.md in this directory lists every model with its exact inputs,
// outputs and semantics.
//
// The *.onnx files are generated and committed. To regenerate them (the
// output is deterministic, byte for byte) run, from the repository root:
//
//	/usr/bin/python3 internal/testmodels/gen.py
//
// and to verify that the committed files are up to date:
//
//	/usr/bin/python3 internal/testmodels/gen.py --check
//
// Debian's python is needed because it has the onnx and numpy packages.
package testmodels

import (
	"embed"
	"fmt"
	"image"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
)

// Model file names.
const (
	AffineF32                 = "affine_f32.onnx"
	AffineDyn                 = "affine_dyn.onnx"
	Dtypes                    = "dtypes.onnx"
	Fixed1Affine              = "fixed1_affine.onnx"
	Fixed1Reshape             = "fixed1_reshape.onnx"
	SlowAffine                = "slow_affine.onnx"
	ExternalAffine            = "external_affine.onnx"
	ResizeSizes               = "resize_sizes.onnx"
	ResizeSizesDyn            = "resize_sizes_dyn.onnx"
	LamaSynth                 = "lama_synth.onnx"
	LamaSynthDyn              = "lama_synth_dyn.onnx"
	LamaSynthUnit             = "lama_synth_unit.onnx"
	ClipVisionSynth           = "clip_vision_synth.onnx"
	ClipTextSynth             = "clip_text_synth.onnx"
	ClipTextSynthNoAttn       = "clip_text_synth_noattn.onnx"
	CaptionEncoderSynth       = "caption_encoder_synth.onnx"
	CaptionDecoderSynth       = "caption_decoder_synth.onnx"
	CaptionDecoderSynth2Layer = "caption_decoder_synth_2layer.onnx"
	// rembg's model set: signatures of the exports rembg downloads.
	BiRefNetSynth   = "birefnet_synth.onnx"
	ISNetAnimeSynth = "isnet_anime_synth.onnx"
	BriaRMBGSynth   = "bria_rmbg_synth.onnx"
	BEN2Synth       = "ben2_synth.onnx"
	ClothSegSynth   = "u2net_cloth_seg_synth.onnx"
	SAMEncoderSynth = "sam_encoder_synth.onnx"
	SAMDecoderSynth = "sam_decoder_synth.onnx"

	// Stable Diffusion components in the diffusers/optimum layout's
	// signatures: the fp32 set as ONNX Runtime's sd-turbo web example runs
	// it (int32 ids, int64 timestep [1], latent_parameters), the fp16 set
	// as optimum's fp16 exports (int64 ids, float scalar timestep,
	// latent_sample).
	SDTextEncoderSynth     = "sd_text_encoder_synth.onnx"
	SDTextEncoderSynthFP16 = "sd_text_encoder_synth_fp16.onnx"
	SDUNetSynth            = "sd_unet_synth.onnx"
	SDUNetSynthFP16        = "sd_unet_synth_fp16.onnx"
	SDVAEDecoderSynth      = "sd_vae_decoder_synth.onnx"
	SDVAEDecoderSynthFP16  = "sd_vae_decoder_synth_fp16.onnx"
	SDVAEEncoderSynth      = "sd_vae_encoder_synth.onnx"
	SDVAEEncoderSynthFP16  = "sd_vae_encoder_synth_fp16.onnx"
	SDSafetyCheckerSynth   = "sd_safety_checker_synth.onnx"
)

//go:embed *.onnx
var files embed.FS

// Bytes returns a fresh copy of the named model file's contents (e.g.
// "affine_f32.onnx"). It panics if there is no such model.
func Bytes(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("testmodels: unknown model %q", name))
	}
	return b
}

// Path returns the absolute path of the named model file in the source tree,
// for code that loads models from a file path. It panics if there is no such
// model.
func Path(name string) string {
	if _, err := fs.Stat(files, name); err != nil {
		panic(fmt.Sprintf("testmodels: unknown model %q", name))
	}
	return filepath.Join(Dir(), name)
}

// Dir returns the absolute path of the directory holding the model files
// in the source tree. It relies on runtime.Caller, so it panics in binaries
// built with -trimpath.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		panic("testmodels: cannot determine the source directory (built with -trimpath?)")
	}
	return filepath.Dir(file)
}

// Names returns the file names of all models, sorted.
func Names() []string {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// GarmentImage is a 160x240 image that the synthetic cloth model
// (ClothSegSynth) segments into all three garment classes: red, green and
// blue bands (upper body, lower body, full body) 100 pixels wide, on black
// (background).
func GarmentImage() *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 160, 240))
	for y := range 240 {
		for x := range 160 {
			p := img.Pix[4*(y*160+x):]
			p[3] = 255
			if x < 30 || x >= 130 {
				continue
			}
			switch {
			case y >= 20 && y < 90:
				p[0] = 255
			case y >= 100 && y < 160:
				p[1] = 255
			case y >= 170 && y < 230:
				p[2] = 255
			}
		}
	}
	return img
}
