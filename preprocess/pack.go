package preprocess

import (
	"fmt"
	"image"
)

// Norm is a per-channel normalisation from 8-bit samples x to model input:
//
//	(x*Scale - Mean[c]) / Std[c]
//
// or, with DivideByMax, rembg's (x/max(M, 1e-6) - Mean[c]) / Std[c] where M
// is the largest R, G or B sample of the (resized) image.
type Norm struct {
	Scale       float64
	Mean, Std   [3]float64
	DivideByMax bool
}

// Normalisations of the reference pipelines.
var (
	// NormRembg is rembg's U²-Net session normalize(): divide by the image
	// maximum, then ImageNet mean/std.
	NormRembg = Norm{DivideByMax: true, Mean: [3]float64{0.485, 0.456, 0.406}, Std: [3]float64{0.229, 0.224, 0.225}}
	// NormRembgISNet is rembg's isnet-general-use session: std 1.
	NormRembgISNet = Norm{DivideByMax: true, Mean: [3]float64{0.485, 0.456, 0.406}, Std: [3]float64{1, 1, 1}}
	// NormRembgBEN is rembg's BEN session: mean 0.5, std 1.
	NormRembgBEN = Norm{DivideByMax: true, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{1, 1, 1}}
	// NormImageNet is x/255 with ImageNet mean/std (torchvision models).
	NormImageNet = Norm{Scale: 1.0 / 255, Mean: [3]float64{0.485, 0.456, 0.406}, Std: [3]float64{0.229, 0.224, 0.225}}
	// NormCLIP is OpenAI CLIP's x/255 with its own mean/std.
	NormCLIP = Norm{Scale: 1.0 / 255, Mean: [3]float64{0.48145466, 0.4578275, 0.40821073}, Std: [3]float64{0.26862954, 0.26130258, 0.27577711}}
	// NormHalf is ViT's x/255 with mean 0.5, std 0.5, i.e. [-1, 1].
	NormHalf = Norm{Scale: 1.0 / 255, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.5, 0.5, 0.5}}
	// NormIMGLY is IMG.LY's background-removal ISNet: (x - 128) / 256.
	NormIMGLY = Norm{Scale: 1, Mean: [3]float64{128, 128, 128}, Std: [3]float64{256, 256, 256}}
)

// lut tabulates the normalisation of every possible sample value, so
// packing costs one table load per sample whatever the formula. The
// arithmetic copies the reference: rembg computes in float64 and casts once
// (numpy); Hugging Face processors rescale in float64, cast to float32, then
// subtract and divide in float32.
func (n Norm) lut(maxSample byte) (t [3][256]float32) {
	for c := 0; c < 3; c++ {
		for x := 0; x < 256; x++ {
			if n.DivideByMax {
				m := max(float64(maxSample), 1e-6)
				t[c][x] = float32((float64(x)/m - n.Mean[c]) / n.Std[c])
			} else {
				r := float32(float64(x) * n.Scale)
				t[c][x] = (r - float32(n.Mean[c])) / float32(n.Std[c])
			}
		}
	}
	return t
}

// PackNCHW writes the RGB channels of img, normalised by n, into dst as
// planar CHW float32 (one batch item of an NCHW tensor; pass a sub-slice of
// a batch buffer). len(dst) must be 3*width*height. Alpha is ignored, as
// PIL's convert("RGB") drops it.
func PackNCHW(dst []float32, img *image.NRGBA, n Norm) error {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	plane := w * h
	if len(dst) != 3*plane {
		return fmt.Errorf("%w: PackNCHW: dst has %d floats, %dx%d image needs %d", ErrSize, len(dst), w, h, 3*plane)
	}
	var m byte
	if n.DivideByMax {
		m = maxRGB(img)
	}
	t := n.lut(m)
	r, g, b := dst[:plane], dst[plane:2*plane], dst[2*plane:]
	for y := 0; y < h; y++ {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):][:4*w]
		o := y * w
		rr, gg, bb := r[o:o+w], g[o:o+w], b[o:o+w]
		for x := range rr {
			p := row[4*x : 4*x+3]
			rr[x], gg[x], bb[x] = t[0][p[0]], t[1][p[1]], t[2][p[2]]
		}
	}
	return nil
}

// PackGray writes a single-channel image into dst (len width*height) with
// the channel-0 parameters of n, for mask inputs such as LaMa's.
func PackGray(dst []float32, img *image.Gray, n Norm) error {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if len(dst) != w*h {
		return fmt.Errorf("%w: PackGray: dst has %d floats, %dx%d image needs %d", ErrSize, len(dst), w, h, w*h)
	}
	var m byte
	if n.DivideByMax {
		for y := 0; y < h; y++ {
			for _, v := range img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):][:w] {
				m = max(m, v)
			}
		}
	}
	t := n.lut(m)
	for y := 0; y < h; y++ {
		d := dst[y*w : y*w+w]
		for x, v := range img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):][:w] {
			d[x] = t[0][v]
		}
	}
	return nil
}

func maxRGB(img *image.NRGBA) byte {
	var m byte
	w := img.Rect.Dx()
	for y := img.Rect.Min.Y; y < img.Rect.Max.Y; y++ {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, y):][:4*w]
		for x := 0; x < len(row); x += 4 {
			m = max(m, row[x], row[x+1], row[x+2])
		}
		if m == 255 {
			break
		}
	}
	return m
}
