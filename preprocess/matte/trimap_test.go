package matte

import (
	"crypto/sha256"
	"encoding/hex"
	"image"
	"testing"
)

// TestTrimapMatchesScipy compares with rembg's trimap computed by scipy's
// binary_erosion (testdata/golden.py), including ae=0 (scipy's 3x3 cross),
// even structures (centred one past the middle) and af < ab.
func TestTrimapMatchesScipy(t *testing.T) {
	mask := alphaOf(decode(t, "car-1.u2netp.png"))
	for _, tc := range []struct {
		fg, bg, erode int
		sha           string
	}{
		{240, 10, 10, "1194381647999791"},
		{240, 10, 0, "d4cb3cdff0a1e0e5"},
		{240, 10, 1, "bb3268327aa82ac6"},
		{240, 10, 2, "2e98c24143f6d179"},
		{200, 50, 3, "83a672ecada0d5ef"},
		{128, 128, 7, "0f229978d34e6a66"},
		{10, 240, 4, "02ea86050eb02b38"},
		{250, 5, 25, "a7986fc1a2b04ac8"},
	} {
		tri := Trimap(mask, tc.fg, tc.bg, tc.erode)
		sum := sha256.Sum256(tri.Pix)
		if got := hex.EncodeToString(sum[:8]); got != tc.sha {
			t.Errorf("af=%d ab=%d ae=%d: trimap sha256 %s, scipy's %s", tc.fg, tc.bg, tc.erode, got, tc.sha)
		}
	}
}

// TestTrimapBorders checks the border rule on a tiny mask: outside the
// image is not foreground, but is background.
func TestTrimapBorders(t *testing.T) {
	m := image.NewGray(image.Rect(0, 0, 5, 5))
	for i := range m.Pix {
		m.Pix[i] = 255
	}
	tri := Trimap(m, 240, 10, 3)
	want := []byte{
		128, 128, 128, 128, 128,
		128, 255, 255, 255, 128,
		128, 255, 255, 255, 128,
		128, 255, 255, 255, 128,
		128, 128, 128, 128, 128,
	}
	if string(tri.Pix) != string(want) {
		t.Errorf("all-foreground mask: trimap %v, want %v", tri.Pix, want)
	}
	clear(m.Pix)
	tri = Trimap(m, 240, 10, 3)
	for i, v := range tri.Pix {
		if v != Background {
			t.Fatalf("all-background mask: pixel %d is %d, want background everywhere", i, v)
		}
	}
}
