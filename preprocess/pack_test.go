package preprocess

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"math"
	"testing"
)

func floatsHash(f []float32) string {
	b := make([]byte, 0, 4*len(f))
	for _, v := range f {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// TestPackMatchesReference hashes whole tensors against the Python
// reference pipelines run on the same pattern (testdata/golden.py): rembg's
// BaseSession.normalize, Hugging Face's CLIP processor steps, IMG.LY's
// (x-128)/256. Equal hashes mean bit-identical float32 inputs.
func TestPackMatchesReference(t *testing.T) {
	big := synthNRGBA(1152, 864)
	dark := synthNRGBA(200, 150)
	for i := range dark.Pix {
		if i%4 != 3 {
			dark.Pix[i] /= 3
		}
	}
	for _, c := range []struct {
		name string
		img  *image.NRGBA
		n    Norm
		sha  string
	}{
		{"rembg u2net", ResizeRGB(big, 320, 320, Lanczos3), NormRembg, "a7746ddfcfe5b948"},
		{"rembg dark (max 115)", ResizeRGB(dark, 320, 320, Lanczos3), NormRembg, "36a117408d0a9cd6"},
		{"rembg black", image.NewNRGBA(image.Rect(0, 0, 8, 8)), NormRembg, "92771d2feb2af697"},
		{"clip", ResizeShortestEdgeCenterCrop(synthNRGBA(640, 480), 224, Bicubic), NormCLIP, "7cf8f79bd0bc5f42"},
		{"imgly", ResizeRGB(big, 1024, 1024, Bilinear), NormIMGLY, "eae72bb56a72f8a8"},
	} {
		dst := make([]float32, 3*c.img.Rect.Dx()*c.img.Rect.Dy())
		if err := PackNCHW(dst, c.img, c.n); err != nil {
			t.Fatal(err)
		}
		if got := floatsHash(dst); got != c.sha {
			t.Errorf("%s: tensor sha %s, reference %s", c.name, got, c.sha)
		}
	}
}

func TestPackNCHWLayout(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for y := 0; y < 2; y++ {
		for x := 0; x < 3; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(10*x + y), uint8(100 + 10*x + y), uint8(200 + 10*x + y), uint8(x)})
		}
	}
	// Batch of two: the second item is packed into the back half of a
	// larger buffer and the front half must stay untouched.
	buf := make([]float32, 2*18)
	for i := range buf {
		buf[i] = -7
	}
	ident := Norm{Scale: 1, Std: [3]float64{1, 1, 1}}
	if err := PackNCHW(buf[18:], img, ident); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 18; i++ {
		if buf[i] != -7 {
			t.Fatal("wrote outside its slice")
		}
	}
	item := buf[18:]
	for c := 0; c < 3; c++ {
		for y := 0; y < 2; y++ {
			for x := 0; x < 3; x++ {
				want := float32(100*c + 10*x + y)
				if got := item[c*6+y*3+x]; got != want {
					t.Fatalf("c%d (%d,%d) = %v, want %v", c, x, y, got, want)
				}
			}
		}
	}
	// Generic normalisation, alpha ignored.
	n := Norm{Scale: 1.0 / 255, Mean: [3]float64{0.5, 0.25, 0}, Std: [3]float64{0.5, 0.25, 2}}
	if err := PackNCHW(item, img, n); err != nil {
		t.Fatal(err)
	}
	if got, want := item[6*1+3*1+2], float32((float32(121.0/255)-0.25)/0.25); got != want {
		t.Errorf("g(2,1) = %v, want %v", got, want)
	}
	if err := PackNCHW(make([]float32, 17), img, n); !errors.Is(err, ErrSize) {
		t.Errorf("short dst: %v", err)
	}
	// Sub-images pack their own pixels.
	sub := img.SubImage(image.Rect(1, 1, 3, 2)).(*image.NRGBA)
	d := make([]float32, 6)
	if err := PackNCHW(d, sub, ident); err != nil || d[0] != 11 || d[1] != 21 || d[5] != 221 {
		t.Errorf("sub-image: %v %v", err, d)
	}
}

func TestPackGray(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 4, 1))
	copy(g.Pix, []byte{0, 64, 128, 255})
	d := make([]float32, 4)
	if err := PackGray(d, g, Norm{Scale: 1.0 / 255, Std: [3]float64{1, 1, 1}}); err != nil {
		t.Fatal(err)
	}
	if d[0] != 0 || d[3] != 1 || d[2] != float32(128.0/255) {
		t.Errorf("scaled: %v", d)
	}
	if err := PackGray(d, g, Norm{DivideByMax: true, Std: [3]float64{1, 1, 1}}); err != nil || d[3] != 1 || d[1] != float32(64.0/255) {
		t.Errorf("divide by max: %v %v", err, d)
	}
	if err := PackGray(d[:3], g, NormHalf); !errors.Is(err, ErrSize) {
		t.Errorf("short dst: %v", err)
	}
}

func TestPackNoAllocs(t *testing.T) {
	img := ResizeRGB(synthNRGBA(64, 64), 32, 32, Bilinear)
	dst := make([]float32, 3*32*32)
	if a := testing.AllocsPerRun(10, func() { PackNCHW(dst, img, NormRembg) }); a != 0 {
		t.Errorf("PackNCHW allocates %v times", a)
	}
}
