package bench

import (
	"context"
	"image"
	"math"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/inpaint"
)

// inpaintRunner serves the synthetic LaMa (the real export's signature,
// fixed batch 1, a trivial graph) the way defaults.yaml serves lama on a
// CPU, so what is measured around it is the pipeline's own work.
func inpaintRunner(b *testing.B) *inpaint.Runner {
	reg := loadRegistry(b, testmodels.Dir(), `
models:
  - name: lama
    file: lama_synth.onnx
    task: inpaint
    batching: {max_batch_size: 1, instances: 1}
`, models.Options{})
	r, _, err := inpaint.Lookup(context.Background(), reg, "lama")
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// twelveMegapixels is a 4000x3000 photo-like image.
func twelveMegapixels() *image.NRGBA {
	const w, h = 4000, 3000
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			fx, fy := float64(x)/w, float64(y)/h
			copy(img.Pix[img.PixOffset(x, y):], []uint8{
				uint8(40 + 180*fx), uint8(210 - 150*fy + float64((x*y)%17)),
				uint8(128 + 100*math.Sin(9*fx+5*fy)), 255})
		}
	}
	return img
}

// benchBoxes are what users erase on a 12 MP photo: a watermark along the
// bottom right, an object in the middle, a logo in the top left. Each is
// its own crop; the object is larger than the model's 512 and is scaled.
var benchBoxes = []inpaint.Box{{3300, 2750, 600, 160}, {1500, 900, 450, 700}, {120, 100, 260, 120}}

// maskImage is benchBoxes drawn white on black, as a client uploads them.
func maskImage(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 3; i < len(m.Pix); i += 4 {
		m.Pix[i] = 255
	}
	for _, b := range benchBoxes {
		for y := int(b[1]); y < int(b[1]+b[3]); y++ {
			row := m.Pix[m.PixOffset(int(b[0]), y):][:4*int(b[2])]
			for i := range row {
				row[i] = 255
			}
		}
	}
	return m
}

// BenchmarkInpaint12MP measures the pipeline around the model on a 4000x3000
// image with three masked regions: binarising the uploaded mask, dilation,
// region search and plan ("mask"), cutting, scaling and packing each crop
// ("pack"), turning each answer back into pixels at its window's size
// ("unpack") and pasting into the image. overhead-ms is their sum, the
// cost per request excluding inference; ns/op includes the synthetic
// model's runs. Decoding and encoding the 12 MP image are the server's
// and not counted.
func BenchmarkInpaint12MP(b *testing.B) {
	r := inpaintRunner(b)
	src := twelveMegapixels()
	upload := maskImage(4000, 3000)
	for _, c := range []struct {
		name     string
		strategy inpaint.Strategy
		boxes    bool
	}{
		{"crop", inpaint.StrategyCrop, false},
		{"crop-boxes", inpaint.StrategyCrop, true},
		{"resize", inpaint.StrategyResize, false},
		{"original", inpaint.StrategyOriginal, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			o := inpaint.DefaultOptions()
			o.Strategy = c.strategy
			img := image.NewNRGBA(src.Rect)
			var binarise time.Duration
			var sum inpaint.Timings
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				copy(img.Pix, src.Pix) // Inpaint writes into the image
				b.StartTimer()
				start := time.Now()
				var mask *image.Gray
				if c.boxes {
					var err error
					if mask, err = inpaint.MaskFromBoxes(4000, 3000, benchBoxes); err != nil {
						b.Fatal(err)
					}
				} else {
					mask = inpaint.MaskFromImage(upload)
				}
				binarise += time.Since(start)
				t, err := r.Inpaint(ctx, img, mask, o)
				if err != nil {
					b.Fatal(err)
				}
				sum.Mask += t.Mask
				sum.Pack += t.Pack
				sum.Inference += t.Inference
				sum.Unpack += t.Unpack
				sum.Paste += t.Paste
				sum.Crops += t.Crops
			}
			n := float64(b.N)
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
			b.ReportMetric(per(binarise), "binarise-ms")
			b.ReportMetric(per(sum.Mask), "mask-ms")
			b.ReportMetric(per(sum.Pack), "pack-ms")
			b.ReportMetric(per(sum.Unpack), "unpack-ms")
			b.ReportMetric(per(sum.Paste), "paste-ms")
			b.ReportMetric(per(binarise+sum.Overhead()), "overhead-ms")
			b.ReportMetric(per(sum.Inference), "inference-ms")
			b.ReportMetric(float64(sum.Crops)/n, "crops")
		})
	}
}
