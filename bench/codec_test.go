package bench

import (
	"bytes"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgserve/imgserve/internal/testfiles"
	"github.com/imgserve/imgserve/preprocess"
)

// Every codec path the server runs, at three sizes: a small upload
// (0.3 MP), a typical photo (1.5 MP, the size of rembg's plants-1.jpg) and
// a camera original (12 MP). The images are internal/testfiles' photos
// (cloth-1 rescaled, with grain); the WebP files are those photos encoded
// by cwebp -q 80 (testdata/README.md).
//
//	go test -run '^$' -bench Codec -benchtime 20x ./bench/
var codecSizes = []image.Point{testfiles.Photo03MP, testfiles.Photo15MP, testfiles.Photo12MP}

func benchDecode(b *testing.B, data func(image.Point) []byte) {
	for _, size := range codecSizes {
		b.Run(testfiles.PhotoName(size), func(b *testing.B) {
			in := data(size)
			b.SetBytes(int64(4 * size.X * size.Y))
			b.ResetTimer()
			for b.Loop() {
				img, _, err := preprocess.Decode(in, preprocess.Limits{})
				if err != nil {
					b.Fatal(err)
				}
				if img.Rect.Size() != size {
					b.Fatalf("decoded %v, want %v", img.Rect.Size(), size)
				}
			}
		})
	}
}

func BenchmarkCodecDecodeJPEG(b *testing.B) { benchDecode(b, testfiles.PhotoJPEG) }

func BenchmarkCodecDecodePNG(b *testing.B) { benchDecode(b, testfiles.PhotoPNG) }

func BenchmarkCodecDecodeWebP(b *testing.B) {
	benchDecode(b, func(size image.Point) []byte {
		data, err := os.ReadFile(filepath.Join("testdata", "photo-"+testfiles.PhotoName(size)+".webp"))
		if err != nil {
			b.Fatal(err)
		}
		return data
	})
}

// cutoutOf is what the server encodes as PNG: the photo with a soft
// elliptical subject opaque and the background transparent.
func cutoutOf(size image.Point) *image.NRGBA {
	src := testfiles.PhotoNRGBA(size)
	m := image.NewNRGBA(src.Rect)
	copy(m.Pix, src.Pix)
	for y := 0; y < size.Y; y++ {
		for x := 0; x < size.X; x++ {
			dx, dy := float64(x)/float64(size.X)-0.5, float64(y)/float64(size.Y)-0.55
			a := 1 / (1 + math.Exp(40*(dx*dx/0.08+dy*dy/0.12-1)))
			o := m.PixOffset(x, y)
			m.Pix[o+3] = uint8(255*a + 0.5)
			if m.Pix[o+3] == 0 {
				m.Pix[o], m.Pix[o+1], m.Pix[o+2] = 0, 0, 0 // as Cutout leaves it
			}
		}
	}
	return m
}

func BenchmarkCodecEncodePNG(b *testing.B) {
	for _, size := range codecSizes {
		b.Run(testfiles.PhotoName(size), func(b *testing.B) {
			img := cutoutOf(size)
			var out bytes.Buffer
			b.SetBytes(int64(len(img.Pix)))
			b.ResetTimer()
			for b.Loop() {
				out.Reset()
				if err := preprocess.EncodePNG(&out, img); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out.Len())/float64(size.X*size.Y), "bytes/px")
		})
	}
}

func BenchmarkCodecEncodeJPEG(b *testing.B) {
	for _, size := range codecSizes {
		b.Run(testfiles.PhotoName(size), func(b *testing.B) {
			img := testfiles.PhotoNRGBA(size)
			b.SetBytes(int64(len(img.Pix)))
			b.ResetTimer()
			for b.Loop() {
				if err := preprocess.EncodeJPEG(io.Discard, img, preprocess.DefaultJPEGQuality); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
