package preprocess

import (
	"bytes"
	"fmt"
	"image"
	"math/rand/v2"
	"testing"
)

// TestCutoutPNGKernelMatchesGo: where the cutout's rows are composited and
// filtered by AVX2 code, the PNG is byte for byte the one the Go rows
// give, for widths that are and are not multiples of eight pixels,
// sub-images with offsets and strides, and images split into bands; and
// it decodes to Cutout's pixels.
func TestCutoutPNGKernelMatchesGo(t *testing.T) {
	if cutoutBand == nil {
		t.Skip("this build composites in Go only (no cgo or no AVX2): nothing to compare")
	}
	rng := rand.New(rand.NewPCG(12, 3))
	for _, sz := range [][2]int{{1, 1}, {7, 3}, {8, 8}, {9, 2}, {33, 17}, {480, 360}, {987, 1481}, {1001, 555}} {
		t.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(t *testing.T) {
			w, h := sz[0], sz[1]
			big := image.NewNRGBA(image.Rect(0, 0, w+3, h+2))
			for i := range big.Pix {
				big.Pix[i] = byte(rng.Uint32())
			}
			img := big.SubImage(image.Rect(2, 1, 2+w, 1+h)).(*image.NRGBA)
			bigM := image.NewGray(image.Rect(0, 0, w+5, h+1))
			for i := range bigM.Pix {
				switch rng.IntN(4) { // the mask's usual 0 and 255, and the rest
				case 0:
					bigM.Pix[i] = 0
				case 1:
					bigM.Pix[i] = 255
				default:
					bigM.Pix[i] = byte(rng.Uint32())
				}
			}
			mask := bigM.SubImage(image.Rect(4, 1, 4+w, 1+h)).(*image.Gray)

			var got, want bytes.Buffer
			if err := EncodeCutoutPNG(&got, img, mask); err != nil {
				t.Fatal(err)
			}
			saved := cutoutBand
			cutoutBand = nil
			err := EncodeCutoutPNG(&want, img, mask)
			cutoutBand = saved
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("AVX2 cutout PNG (%d bytes) differs from the Go one (%d bytes)", got.Len(), want.Len())
			}
			dec, _, err := Decode(got.Bytes(), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			cut, err := Cutout(img, mask)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dec.Pix, cut.Pix) {
				t.Error("the PNG does not decode to Cutout's pixels")
			}
		})
	}
}

// BenchmarkCutoutPNGKernel: EncodeCutoutPNG of a 1.5 MP photo with its rows
// composited and filtered in Go and by the kernel in use.
func BenchmarkCutoutPNGKernel(b *testing.B) {
	img := photoNRGBA(987, 1481)
	mask, _ := MaskFromPrediction(benchPred(), 320, 320, 987, 1481)
	saved := cutoutBand
	defer func() { cutoutBand = saved }()
	for _, name := range []string{"go", "avx2"} {
		if name == "avx2" && saved == nil {
			break
		}
		b.Run(name, func(b *testing.B) {
			cutoutBand = nil
			if name == "avx2" {
				cutoutBand = saved
			}
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := EncodeCutoutPNG(&buf, img, mask); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
