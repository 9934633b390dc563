package matte

import (
	"context"
	"errors"
	"image"
	"math"
	"testing"

	"github.com/imgserve/imgserve/internal/testfiles"
	"github.com/imgserve/imgserve/preprocess"
)

func decode(t testing.TB, name string) *image.NRGBA {
	t.Helper()
	img, _, err := preprocess.Decode(testfiles.Rembg(t, name), preprocess.Limits{})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return img
}

// alphaOf is the alpha channel of rembg's output: the u2netp mask.
func alphaOf(img *image.NRGBA) *image.Gray {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = img.Pix[4*i+3]
	}
	return m
}

// TestAgainstPymatting is the goal: rembg's alpha matting of its
// test images, from our own JPEG decoding, within 1.5 levels of mean alpha
// difference and 3 levels of mean RGB difference (where alpha >= 16) of
// pymatting's output on rembg's u2netp masks
// (internal/testfiles/rembg/ALPHA-MATTING.md).
func TestAgainstPymatting(t *testing.T) {
	for _, name := range []string{"car-1", "cloth-1"} {
		t.Run(name, func(t *testing.T) {
			img := decode(t, name+".jpg")
			mask := alphaOf(decode(t, name+".u2netp.png"))
			want := decode(t, name+".u2netp.alpha-matting.png")
			trimap, unknown, _, err := Plan(mask, Defaults)
			if err != nil {
				t.Fatal(err)
			}
			got, st, err := Cutout(context.Background(), img, trimap)
			if err != nil {
				t.Fatal(err)
			}
			d := testfiles.CompareMatte(t, got, want)
			t.Logf("%d unknown pixels, factor %.1f entries a column, shift %g, %d iterations; "+
				"alpha mean |diff| %.4f (max %d), RGB where alpha >= 16 mean %.4f (max %d)",
				unknown, float64(st.Factor)/float64(unknown), st.Shift, st.Iterations, d.AlphaMean, d.AlphaMax, d.RGBMean, d.RGBMax)
			if !(d.AlphaMean <= 1.5) {
				t.Errorf("alpha mean absolute difference %.4f > 1.5", d.AlphaMean)
			}
			if !(d.RGBMean <= 3) {
				t.Errorf("RGB mean absolute difference %.4f > 3 where alpha >= 16", d.RGBMean)
			}
		})
	}
}

// TestAgainstPymattingSamePixels runs the matting on the very pixels
// pymatting saw (car-1 as PIL decodes it, testdata/car-1.pil.png): what
// remains of the difference is then the algorithm's, and it is at most one
// level anywhere. (Through our own JPEG decoder, which differs from
// libjpeg-turbo by a level or so on a few percent of samples, the nearly
// flat windows of the matting Laplacian turn those into larger
// differences on a few hundred pixels; the means stay far inside the goal.)
func TestAgainstPymattingSamePixels(t *testing.T) {
	img, _, err := preprocess.Decode(readTestdata(t, "car-1.pil.png"), preprocess.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	mask := alphaOf(decode(t, "car-1.u2netp.png"))
	want := decode(t, "car-1.u2netp.alpha-matting.png")
	trimap, _, _, err := Plan(mask, Defaults)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Cutout(context.Background(), img, trimap)
	if err != nil {
		t.Fatal(err)
	}
	d := testfiles.CompareMatte(t, got, want)
	t.Logf("alpha mean |diff| %.5f (max %d), RGB mean %.5f (max %d)", d.AlphaMean, d.AlphaMax, d.RGBMean, d.RGBMax)
	if d.AlphaMax > 1 || d.RGBMax > 1 || d.AlphaMean > 0.01 || d.RGBMean > 0.01 {
		t.Errorf("on pymatting's own pixels: alpha mean %.5f max %d, RGB mean %.5f max %d; want at most one level anywhere",
			d.AlphaMean, d.AlphaMax, d.RGBMean, d.RGBMax)
	}
}

// TestFallbacks are the cases where pymatting raises a ValueError and rembg
// returns the plain cutout instead.
func TestFallbacks(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	mask := image.NewGray(img.Rect)
	for name, fill := range map[string]func(x, y int) byte{
		"all foreground": func(x, y int) byte { return 255 },
		"all background": func(x, y int) byte { return 0 },
		"no unknown pixel": func(x, y int) byte { // left half sure background, right sure foreground, no erosion
			if x < 20 {
				return 0
			}
			return 255
		},
	} {
		for y := range 30 {
			for x := range 40 {
				mask.Pix[y*40+x] = fill(x, y)
			}
		}
		o := Defaults
		if name == "no unknown pixel" {
			o.ErodeSize = 1
		}
		trimap, _, _, err := Plan(mask, o)
		if name != "no unknown pixel" && !errors.Is(err, ErrFallback) {
			t.Errorf("%s: Plan error %v, want ErrFallback", name, err)
		}
		if _, _, err := Cutout(context.Background(), img, trimap); !errors.Is(err, ErrFallback) {
			t.Errorf("%s: Cutout error %v, want ErrFallback", name, err)
		}
	}
}

// TestUnknownNotConnectedToForeground: pymatting's cg divides 0 by 0 when
// no unknown pixel touches the foreground, and rembg falls back.
func TestUnknownNotConnectedToForeground(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 60, 20))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 13)
	}
	tri := image.NewGray(img.Rect)
	for y := range 20 {
		for x := range 60 {
			switch {
			case x >= 50:
				tri.Pix[y*60+x] = Foreground
			case x >= 10 && x < 20 && y >= 5 && y < 15:
				tri.Pix[y*60+x] = Unknown
			}
		}
	}
	if _, _, err := Cutout(context.Background(), img, tri); !errors.Is(err, ErrFallback) {
		t.Errorf("error %v, want ErrFallback", err)
	}
}

func TestCanceled(t *testing.T) {
	img := decode(t, "cloth-1.jpg")
	mask := alphaOf(decode(t, "cloth-1.u2netp.png"))
	trimap, _, _, err := Plan(mask, Defaults)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Cutout(ctx, img, trimap); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		o  Options
		ok bool
	}{
		{Defaults, true},
		{Options{0, 0, 0}, true},
		{Options{255, 255, 100}, true},
		{Options{256, 10, 10}, false},
		{Options{240, -1, 10}, false},
		{Options{240, 10, -1}, false},
		{Options{240, 10, 101}, false},
	} {
		if err := tc.o.Validate(100); (err == nil) != tc.ok {
			t.Errorf("%+v: error %v, want ok=%v", tc.o, err, tc.ok)
		}
	}
}

func TestEstimateGrowsWithWork(t *testing.T) {
	small, mid, big := Estimate(100, 100, 1000), Estimate(1000, 1000, 50000), Estimate(4000, 3000, 500000)
	if !(0 < small && small < mid && mid < big) || big < 500<<20 || big > 2<<30 || math.IsInf(float64(big), 0) {
		t.Errorf("Estimate: %d for 0.01 MP, %d for 1 MP, %d for 12 MP", small, mid, big)
	}
	// Without unknown pixels the foreground stage is what counts.
	if got := Estimate(1000, 1000, 0); got != 1000*1000*bytesPerPixelFG {
		t.Errorf("Estimate(1000, 1000, 0) = %d", got)
	}
}
