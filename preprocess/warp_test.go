package preprocess

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"image"
	"math"
	"testing"
)

func warpPattern(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			for c := range 3 {
				img.Pix[4*(y*w+x)+c] = byte((x*37 + y*11 + c*89 + ((x*y)%17)*5) % 256)
			}
			img.Pix[4*(y*w+x)+3] = 255
		}
	}
	return img
}

func warpFloats(w, h int) []float32 {
	v := make([]float32, w*h)
	for y := range h {
		for x := range w {
			v[y*w+x] = float32(math.Sin(float64(x)*0.37+float64(y)*0.11)*3.0 - 0.25)
		}
	}
	return v
}

func hash16(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// TestWarpAffineMatchesOpenCV runs rembg's SAM transforms (scale into a
// frame, scale masks back with the inverse) and compares bytes with
// cv2.warpAffine (testdata/warp_golden.py).
func TestWarpAffineMatchesOpenCV(t *testing.T) {
	for _, tc := range []struct {
		w, h, dw, dh int
		rgb, back    string
	}{
		{61, 37, 40, 25, "e6c5773117ed0d11", "b8f1d8ac22aa88fb"},
		{23, 17, 64, 40, "6e70f62a3fb9a3c0", "ef0cace923d60cf2"},
		{50, 50, 1024, 684, "fdc306fcd9321a83", "e4bb94de640fdabe"},
	} {
		s := min(float64(tc.dw)/float64(tc.w), float64(tc.dh)/float64(tc.h))
		out, err := WarpAffineRGB(warpPattern(tc.w, tc.h), [6]float64{s, 0, 0, 0, s, 0}, tc.dw, tc.dh)
		if err != nil {
			t.Fatal(err)
		}
		if got := hash16(out); got != tc.rgb {
			t.Errorf("%dx%d -> %dx%d RGB: sha256 %s, OpenCV's %s", tc.w, tc.h, tc.dw, tc.dh, got, tc.rgb)
		}
		back, err := WarpAffineFloat(warpFloats(tc.dw, tc.dh), tc.dw, tc.dh, [6]float64{1 / s, 0, 0, 0, 1 / s, 0}, tc.w, tc.h)
		if err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, 4*len(back))
		for i, v := range back {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		if got := hash16(raw); got != tc.back {
			t.Errorf("%dx%d -> %dx%d float back: sha256 %s, OpenCV's %s", tc.dw, tc.dh, tc.w, tc.h, got, tc.back)
		}
	}
}

func TestWarpAffineBadSizes(t *testing.T) {
	if _, err := WarpAffineRGB(warpPattern(4, 4), [6]float64{1, 0, 0, 0, 1, 0}, 0, 3); err == nil {
		t.Error("WarpAffineRGB to 0x3: no error")
	}
	if _, err := WarpAffineFloat(make([]float32, 5), 2, 2, [6]float64{1, 0, 0, 0, 1, 0}, 3, 3); err == nil {
		t.Error("WarpAffineFloat with 5 values for 2x2: no error")
	}
}
