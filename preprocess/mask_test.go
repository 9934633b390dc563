package preprocess

import (
	"errors"
	"image"
	"math"
	"testing"
)

// rembgPred is testdata/golden.py's stand-in for a model output plane,
// built with float32 operations that are exact in both numpy and Go.
func rembgPred(w, h int) []float32 {
	p := make([]float32, w*h)
	for i := range p {
		p[i] = float32((i*7919)%1000) / 1000
	}
	return p
}

func TestMaskFromPredictionMatchesRembg(t *testing.T) {
	pred := rembgPred(320, 320)
	m, err := MaskFromPrediction(pred, 320, 320, 320, 320)
	if err != nil {
		t.Fatal(err)
	}
	if got := shortHash(m.Pix); got != "119c22868e55fe86" {
		t.Errorf("320x320 mask sha %s, rembg 119c22868e55fe86", got)
	}
	for _, c := range []struct {
		w, h int
		sha  string
	}{
		{480, 360, "346231487e3f7f34"},
		{1152, 864, "5b24679d8ebb80b1"},
		{100, 77, "5a7eabefeb85101e"},
	} {
		m, err := MaskFromPrediction(pred, 320, 320, c.w, c.h)
		if err != nil {
			t.Fatal(err)
		}
		if m.Rect != image.Rect(0, 0, c.w, c.h) {
			t.Fatalf("bounds %v", m.Rect)
		}
		if got := shortHash(m.Pix); got != c.sha {
			t.Errorf("%dx%d mask sha %s, rembg %s", c.w, c.h, got, c.sha)
		}
	}
}

func TestMaskFromPredictionEdgeCases(t *testing.T) {
	// Truncation, not rounding: 0.999 of the range gives 254.
	m, _ := MaskFromPrediction([]float32{0, 0.999, 1, 0.5}, 2, 2, 2, 2)
	if m.Pix[0] != 0 || m.Pix[1] != 254 || m.Pix[2] != 255 || m.Pix[3] != 127 {
		t.Errorf("scaling: %v", m.Pix)
	}
	// Negative logits are fine: only the range matters.
	m, _ = MaskFromPrediction([]float32{-3, -1, 1, 5}, 2, 2, 2, 2)
	if m.Pix[0] != 0 || m.Pix[3] != 255 || m.Pix[1] != 63 {
		t.Errorf("negative range: %v", m.Pix)
	}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for name, p := range map[string][]float32{
		"constant": {0.3, 0.3, 0.3, 0.3},
		"nan":      {0, nan, 1, 0.5},
		"inf":      {0, inf, 1, 0.5},
	} {
		m, err := MaskFromPrediction(p, 2, 2, 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range m.Pix {
			if v != 0 {
				t.Errorf("%s: %v, want all zero", name, m.Pix)
				break
			}
		}
	}
	for _, c := range []struct{ n, w, h, ow, oh int }{{3, 2, 2, 2, 2}, {4, 2, 2, 0, 2}, {0, 0, 0, 1, 1}} {
		if _, err := MaskFromPrediction(make([]float32, c.n), c.w, c.h, c.ow, c.oh); !errors.Is(err, ErrSize) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// blobMask and hiMask are the patterns of testdata/golden.py's OpenCV
// reference for post_process.
func blobMask(w, h int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	r2 := min(w, h) * min(w, h) / 2
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			s := int(synthPix(x, y, 0))
			if d := (2*x-w)*(2*x-w) + (2*y-h)*(2*y-h); d < r2 {
				g.Pix[y*w+x] = byte(255 - s/3)
			} else {
				g.Pix[y*w+x] = byte(s / 2)
			}
		}
	}
	return g
}

func hiMask(w, h int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := 200 + synthPix(x, y, 0)%56
			if y >= h/2 && x < w/2 {
				v /= 2
			}
			g.Pix[y*w+x] = v
		}
	}
	return g
}

func TestPostProcessMaskMatchesOpenCV(t *testing.T) {
	for _, c := range []struct {
		name string
		m    *image.Gray
		sha  string
	}{
		{"pattern 64x48", synthGray(64, 48), "27734f2ae5fea292"},
		{"pattern 301x217", synthGray(301, 217), "1085b35008c4e5c7"},
		{"blob 64x48", blobMask(64, 48), "87f7070796a379f3"},
		{"blob 301x217", blobMask(301, 217), "119f1d5670158d5b"},
		{"blob 2x3", blobMask(2, 3), "b0f66adc83641586"},
		{"hi 1x1", hiMask(1, 1), "a8100ae6aa1940d0"},
		{"hi 2x3", hiMask(2, 3), "ce8bee525d6736e9"},
		{"hi 5x4", hiMask(5, 4), "9a8dcd3f9ff7aa31"},
		{"hi 3x7", hiMask(3, 7), "be32a73016f6f55b"},
		{"hi 64x48", hiMask(64, 48), "10286e90e14c420a"},
		{"hi 301x217", hiMask(301, 217), "64992e5a17c1fe4e"},
	} {
		got := PostProcessMask(c.m)
		if got.Rect != c.m.Rect {
			t.Fatalf("%s: bounds %v", c.name, got.Rect)
		}
		if h := shortHash(got.Pix); h != c.sha {
			t.Errorf("%s: sha %s, OpenCV %s", c.name, h, c.sha)
		}
		for _, v := range got.Pix {
			if v != 0 && v != 255 {
				t.Fatalf("%s: non-binary value %d", c.name, v)
			}
		}
	}
}

// TestGaussianBlurMatchesOpenCV checks the blur alone (before the
// threshold hides most of it), including the REFLECT_101 border on
// images smaller than the kernel.
func TestGaussianBlurMatchesOpenCV(t *testing.T) {
	for _, c := range []struct {
		w, h int
		sha  string
	}{
		{1, 1, "6e340b9cffb37a98"},
		{2, 3, "fc6d7c4b594c2add"},
		{5, 4, "683487b328994598"},
		{3, 7, "ac054ed46a5d0f9b"},
		{64, 48, "fdd33f544e3945d2"},
		{301, 217, "01e73a80fb36395f"},
	} {
		src := synthGray(c.w, c.h)
		dst := make([]byte, c.w*c.h)
		gaussianBlur5(dst, src.Pix, c.w, c.h)
		if h := shortHash(dst); h != c.sha {
			t.Errorf("%dx%d: sha %s, OpenCV %s", c.w, c.h, h, c.sha)
		}
	}
}

func TestPostProcessMaskOpening(t *testing.T) {
	// A lone bright pixel is removed by the opening; a solid square
	// survives, its corners rounded by the cross.
	g := image.NewGray(image.Rect(0, 0, 20, 20))
	g.Pix[2*20+2] = 255
	for y := 8; y < 16; y++ {
		for x := 8; x < 16; x++ {
			g.Pix[y*20+x] = 255
		}
	}
	out := PostProcessMask(g)
	if out.Pix[2*20+2] != 0 {
		t.Error("speck survived")
	}
	if out.Pix[12*20+12] != 255 || out.Pix[0] != 0 {
		t.Error("square lost or background set")
	}
	// The input is not modified, and sub-images are handled.
	if g.Pix[2*20+2] != 255 {
		t.Error("input modified")
	}
	sub := PostProcessMask(g.SubImage(image.Rect(6, 6, 18, 18)).(*image.Gray))
	if sub.Rect != image.Rect(0, 0, 12, 12) || sub.Pix[6*12+6] != 255 {
		t.Errorf("sub-image: %v", sub.Rect)
	}
	if e := PostProcessMask(image.NewGray(image.Rect(0, 0, 0, 0))); e.Rect.Dx() != 0 {
		t.Error("empty")
	}
}
