package bench

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"io"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/testfiles"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/matting"
	"github.com/imgserve/imgserve/preprocess"
)

// oneMegapixelJPEG is a 1152x864 (~1 MP) photo-like JPEG: smooth gradients
// with texture, so the encoders do realistic work.
func oneMegapixelJPEG(b *testing.B) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 1152, 864))
	for y := 0; y < 864; y++ {
		for x := 0; x < 1152; x++ {
			i := img.PixOffset(x, y)
			img.Pix[i] = byte(x / 5)
			img.Pix[i+1] = byte(y/4 + (x*y)%13)
			img.Pix[i+2] = byte((x + y) / 8)
			img.Pix[i+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func mattingPipeline(b *testing.B, name, cfg string) *matting.Pipeline {
	reg := loadRegistry(b, paths.Models(paths.RepoHome()), cfg, models.Options{})
	p, err := matting.NewRegistry(reg).Get(name)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchMatting runs the whole background removal of a 1 MP JPEG and reports
// each stage's mean time per image: decode, resize+pack, inference, mask
// resize, and compositing fused with PNG encoding, as the server does. "pre+post/infer" is the share that
// is ours rather than the model's.
func benchMatting(b *testing.B, p *matting.Pipeline) {
	benchMattingOn(b, p, oneMegapixelJPEG(b))
}

func benchMattingOn(b *testing.B, p *matting.Pipeline, data []byte) {
	var decode, pack, infer, mask, encode time.Duration
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		img, _, err := preprocess.Decode(data, preprocess.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		decode += time.Since(t0)
		m, t, err := p.Mask(ctx, img)
		if err != nil {
			b.Fatal(err)
		}
		pack, infer, mask = pack+t.ResizePack, infer+t.Inference, mask+t.MaskResize
		t0 = time.Now()
		if err := preprocess.EncodeCutoutPNG(io.Discard, img, m); err != nil {
			b.Fatal(err)
		}
		encode += time.Since(t0)
	}
	n := float64(b.N)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	b.ReportMetric(per(decode), "decode-ms")
	b.ReportMetric(per(pack), "resize+pack-ms")
	b.ReportMetric(per(infer), "inference-ms")
	b.ReportMetric(per(mask), "mask-resize-ms")
	b.ReportMetric(per(encode), "cutout+png-ms")
	ours := decode + pack + mask + encode
	b.ReportMetric(float64(ours)/float64(infer), "pre+post/infer")
}

func BenchmarkMattingU2netp1MP(b *testing.B) {
	benchMatting(b, mattingPipeline(b, "u2netp", `
models:
  - {name: u2netp, file: u2netp.onnx, task: matting, intra_op_threads: 2}
`))
}

func BenchmarkMattingISNetSmall1MP(b *testing.B) {
	benchMatting(b, mattingPipeline(b, "isnet-imgly-small", `
models:
  - name: isnet-imgly-small
    file: isnet-imgly-small.onnx
    task: matting
    outputs: [output]
    options: {norm: imgly, resize: bilinear}
    intra_op_threads: 2
`))
}

// BenchmarkMattingU2netpPhotos is the same on the derived photos of
// internal/testfiles (0.3, 1.5 and 12 MP JPEG, and the 1.5 MP one as PNG),
// with u2netp as models/defaults.yaml serves it: elastic threads, so a
// lone request's inference runs on every core.
func BenchmarkMattingU2netpPhotos(b *testing.B) {
	p := mattingPipeline(b, "u2netp", `
models:
  - {name: u2netp, file: u2netp.onnx, task: matting, batching: {max_batch_size: 1, max_queue_size: 64, instances: 2}}
`)
	for _, c := range []struct {
		name string
		data func(image.Point) []byte
		size image.Point
	}{
		{"jpeg-0.3MP", testfiles.PhotoJPEG, testfiles.Photo03MP},
		{"jpeg-1.5MP", testfiles.PhotoJPEG, testfiles.Photo15MP},
		{"png-1.5MP", testfiles.PhotoPNG, testfiles.Photo15MP},
		{"jpeg-12MP", testfiles.PhotoJPEG, testfiles.Photo12MP},
	} {
		b.Run(c.name, func(b *testing.B) { benchMattingOn(b, p, c.data(c.size)) })
	}
}
