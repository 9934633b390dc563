package preprocess

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"sync"
	"testing"

	"github.com/nfnt/resize"

	"github.com/imgserve/imgserve/internal/testfiles"
)

// Benchmarks for the rembg hot path on a ~1 MP photo (1152x864):
//
//	go test ./preprocess -run '^$' -bench . -benchmem
//
// The budget is well under 25% of a U²-Net-p inference (~270 ms), ideally
// < 40 ms for everything that is not inference.

const benchW, benchH = 1152, 864

// photoNRGBA is photo-like content: smooth gradients, soft shapes and mild
// texture, so JPEG and PNG sizes are realistic (noise would inflate both).
func photoNRGBA(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			fx, fy := float64(x)/float64(w), float64(y)/float64(h)
			r := 120 + 80*math.Sin(6*fx+2*fy) + 10*math.Sin(float64(x*y%97))
			g := 100 + 70*math.Cos(4*fy-3*fx) + 8*math.Sin(float64((x+3*y)%89))
			b := 90 + 60*math.Sin(9*fx*fy)
			if dx, dy := fx-0.5, fy-0.55; dx*dx/0.05+dy*dy/0.08 < 1 { // the "subject"
				r, g, b = 220-60*fy, 60+90*fx, 40+20*math.Sin(float64(x)/7)
			}
			o := m.PixOffset(x, y)
			m.Pix[o], m.Pix[o+1], m.Pix[o+2], m.Pix[o+3] = uint8(r), uint8(g), uint8(b), 255
		}
	}
	return m
}

var benchData = sync.OnceValues(func() ([]byte, *image.NRGBA) {
	src := photoNRGBA(benchW, benchH)
	var b bytes.Buffer
	jpeg.Encode(&b, src, &jpeg.Options{Quality: 90})
	img, _, err := Decode(b.Bytes(), Limits{})
	if err != nil {
		panic(err)
	}
	return b.Bytes(), img
})

// benchPred is a plausible U²-Net output: a soft ellipse.
func benchPred() []float32 {
	p := make([]float32, 320*320)
	for y := 0; y < 320; y++ {
		for x := 0; x < 320; x++ {
			dx, dy := float64(x)/320-0.5, float64(y)/320-0.55
			p[y*320+x] = float32(1 / (1 + math.Exp(40*(dx*dx/0.05+dy*dy/0.08-1))))
		}
	}
	return p
}

func BenchmarkDecodeJPEG(b *testing.B) {
	data, _ := benchData()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJPEGStdlib is image/jpeg alone, to show what the
// libjpeg-compatible colour conversion adds.
func BenchmarkDecodeJPEGStdlib(b *testing.B) {
	data, _ := benchData()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResizePack320Lanczos(b *testing.B) {
	_, img := benchData()
	dst := make([]float32, 3*320*320)
	b.ReportAllocs()
	for b.Loop() {
		PackNCHW(dst, ResizeRGB(img, 320, 320, Lanczos3), NormRembg)
	}
}

func BenchmarkResizePack1024Bilinear(b *testing.B) {
	_, img := benchData()
	dst := make([]float32, 3*1024*1024)
	b.ReportAllocs()
	for b.Loop() {
		PackNCHW(dst, ResizeRGB(img, 1024, 1024, Bilinear), NormIMGLY)
	}
}

func BenchmarkResizeCLIP224Bicubic(b *testing.B) {
	_, img := benchData()
	dst := make([]float32, 3*224*224)
	b.ReportAllocs()
	for b.Loop() {
		PackNCHW(dst, ResizeShortestEdgeCenterCrop(img, 224, Bicubic), NormCLIP)
	}
}

// The nfnt/resize baselines the brief suggested, on its fast paths.
func BenchmarkNfnt320LanczosRGBA(b *testing.B) {
	_, img := benchData()
	rgba := &image.RGBA{Pix: img.Pix, Stride: img.Stride, Rect: img.Rect}
	b.ReportAllocs()
	for b.Loop() {
		resize.Resize(320, 320, rgba, resize.Lanczos3)
	}
}

func BenchmarkNfnt320LanczosYCbCr(b *testing.B) {
	data, _ := benchData()
	ycc, _ := jpeg.Decode(bytes.NewReader(data))
	b.ReportAllocs()
	for b.Loop() {
		resize.Resize(320, 320, ycc, resize.Lanczos3)
	}
}

func BenchmarkMaskFromPrediction(b *testing.B) {
	pred := benchPred()
	b.ReportAllocs()
	for b.Loop() {
		MaskFromPrediction(pred, 320, 320, benchW, benchH)
	}
}

func BenchmarkPostProcessMask(b *testing.B) {
	m, _ := MaskFromPrediction(benchPred(), 320, 320, benchW, benchH)
	b.ReportAllocs()
	for b.Loop() {
		PostProcessMask(m)
	}
}

func BenchmarkCutout(b *testing.B) {
	_, img := benchData()
	m, _ := MaskFromPrediction(benchPred(), 320, 320, benchW, benchH)
	b.ReportAllocs()
	for b.Loop() {
		Cutout(img, m)
	}
}

func BenchmarkApplyBackgroundColor(b *testing.B) {
	_, img := benchData()
	m, _ := MaskFromPrediction(benchPred(), 320, 320, benchW, benchH)
	cut, _ := Cutout(img, m)
	b.ReportAllocs()
	for b.Loop() {
		ApplyBackgroundColor(cut, color.NRGBA{255, 255, 255, 255})
	}
}

func benchCutout() *image.NRGBA {
	_, img := benchData()
	m, _ := MaskFromPrediction(benchPred(), 320, 320, benchW, benchH)
	cut, _ := Cutout(img, m)
	return cut
}

func BenchmarkEncodePNG(b *testing.B) {
	cut := benchCutout()
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		c := &countWriter{}
		EncodePNG(c, cut)
		n = c.n
	}
	b.ReportMetric(float64(n), "bytes")
}

// rembgCloth is rembg's real cloth-1 cutout (739x1134, photo texture),
// rebuilt from rembg's reference output.
func rembgCloth(b *testing.B) *image.NRGBA {
	img, _, err := Decode(testfiles.Rembg(b, "cloth-1.jpg"), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	ref, err := png.Decode(bytes.NewReader(testfiles.Rembg(b, "cloth-1.u2netp.png")))
	if err != nil {
		b.Fatal(err)
	}
	m := image.NewGray(img.Rect)
	for i, p := 0, ToNRGBA(ref).Pix; i < len(m.Pix); i++ {
		m.Pix[i] = p[4*i+3]
	}
	cut, err := Cutout(img, m)
	if err != nil {
		b.Fatal(err)
	}
	return cut
}

// BenchmarkEncodePNGCloth compares PNG writers on a real cutout: ours, and
// image/png at BestSpeed and at its default level.
func BenchmarkEncodePNGCloth(b *testing.B) {
	cut := rembgCloth(b)
	for _, c := range []struct {
		name string
		enc  func(io.Writer, image.Image) error
	}{
		{"ours", EncodePNG},
		{"stdlib-bestspeed", (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode},
		{"stdlib-default", png.Encode},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int64
			b.ReportAllocs()
			for b.Loop() {
				w := &countWriter{}
				c.enc(w, cut)
				n = w.n
			}
			b.ReportMetric(float64(n), "bytes")
		})
	}
}

func BenchmarkEncodeJPEG(b *testing.B) {
	cut := ApplyBackgroundColor(benchCutout(), color.NRGBA{255, 255, 255, 255})
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		c := &countWriter{}
		EncodeJPEG(c, cut, 0)
		n = c.n
	}
	b.ReportMetric(float64(n), "bytes")
}

// BenchmarkRembgPipeline is everything rembg's remove() does around the
// model: decode, resize + normalise, mask from the prediction, cutout, PNG
// encode; on the synthetic 1 MP photo and on rembg's real cloth-1.jpg.
func BenchmarkRembgPipeline(b *testing.B) {
	synthetic, _ := benchData()
	inputs := []struct {
		name string
		data []byte
	}{{"synthetic-1152x864", synthetic}, {"cloth-739x1134", testfiles.Rembg(b, "cloth-1.jpg")}}
	pred := benchPred()
	dst := make([]float32, 3*320*320)
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				img, _, err := Decode(in.data, Limits{})
				if err != nil {
					b.Fatal(err)
				}
				PackNCHW(dst, ResizeRGB(img, 320, 320, Lanczos3), NormRembg)
				m, _ := MaskFromPrediction(pred, 320, 320, img.Rect.Dx(), img.Rect.Dy())
				cut, _ := Cutout(img, m)
				EncodePNG(io.Discard, cut)
			}
		})
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
