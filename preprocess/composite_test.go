package preprocess

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"testing"

	"github.com/imgserve/imgserve/internal/testfiles"
)

// compositeInputs are testdata/golden.py's inputs for the PIL references.
func compositeInputs() (rgb, rgba *image.NRGBA, mask *image.Gray) {
	const w, h = 61, 37
	rgb = synthNRGBA(w, h)
	rgba = synthNRGBA(w, h)
	mask = image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			rgba.Pix[rgba.PixOffset(x, y)+3] = synthPix(x, y, 4)
			m := synthPix(x, y, 3)
			if x < 5 || y < 3 || y >= h-2 || x >= w-7 {
				m = 0
			}
			if y >= 10 && y < 12 && x >= 10 && x < 20 {
				m = 255
			}
			mask.Pix[y*w+x] = m
		}
	}
	return rgb, rgba, mask
}

func TestCompositeMatchesPIL(t *testing.T) {
	rgb, rgba, mask := compositeInputs()
	cut, err := Cutout(rgb, mask)
	if err != nil {
		t.Fatal(err)
	}
	cut2, err := Cutout(rgba, mask)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		img  *image.NRGBA
		sha  string
	}{
		{"naive_cutout rgb", cut, "cbda77b1e2095d51"},
		{"naive_cutout rgba", cut2, "7873428403f7ede4"},
		{"bgcolor opaque", ApplyBackgroundColor(cut, color.NRGBA{10, 200, 30, 255}), "f64c68774d59a45c"},
		{"bgcolor translucent", ApplyBackgroundColor(cut, color.NRGBA{10, 200, 30, 128}), "4ef447fc81641ef2"},
		{"bgcolor transparent", ApplyBackgroundColor(cut2, color.NRGBA{255, 255, 255, 0}), "89cf3070a8ab45ce"},
	} {
		if got := shortHash(c.img.Pix); got != c.sha {
			t.Errorf("%s: sha %s, PIL %s", c.name, got, c.sha)
		}
	}
	r, ok := SubjectBounds(cut)
	if !ok || r != image.Rect(5, 3, 54, 35) { // PIL getbbox() = (5, 3, 54, 35)
		t.Errorf("SubjectBounds %v %v", r, ok)
	}
	cropped := CropToSubject(cut)
	if cropped.Rect != r || cropped.NRGBAAt(10, 10) != cut.NRGBAAt(10, 10) {
		t.Errorf("CropToSubject %v", cropped.Rect)
	}
}

func TestCutoutSemantics(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	img.Pix = []byte{200, 100, 50, 255, 200, 100, 50, 255, 200, 100, 50, 255}
	mask := image.NewGray(image.Rect(0, 0, 3, 1))
	mask.Pix = []byte{0, 128, 255}
	cut, _ := Cutout(img, mask)
	want := []byte{0, 0, 0, 0, 100, 50, 25, 128, 200, 100, 50, 255}
	if !bytes.Equal(cut.Pix, want) {
		t.Errorf("cutout %v, want %v (colour scaled by mask, as PIL paste)", cut.Pix, want)
	}
	if _, err := Cutout(img, image.NewGray(image.Rect(0, 0, 2, 1))); !errors.Is(err, ErrSize) {
		t.Errorf("size mismatch: %v", err)
	}
	// rembg's bgcolor over an opaque colour leaves edges translucent.
	bg := ApplyBackgroundColor(cut, color.NRGBA{255, 255, 255, 255})
	if bg.Pix[3] != 255 || bg.Pix[11] != 255 || bg.Pix[7] != 191 {
		t.Errorf("bgcolor alpha %v", bg.Pix)
	}
	// Fully transparent: no bounds, crop returns the image unchanged.
	empty := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	if _, ok := SubjectBounds(empty); ok {
		t.Error("bounds of nothing")
	}
	if CropToSubject(empty) != empty {
		t.Error("crop of nothing")
	}
	// Bounds of a single pixel, and of a sub-image (coordinates stay in
	// the parent's space, as SubImage's do).
	one := image.NewNRGBA(image.Rect(0, 0, 9, 9))
	one.SetNRGBA(6, 2, color.NRGBA{A: 1})
	if r, ok := SubjectBounds(one); !ok || r != image.Rect(6, 2, 7, 3) {
		t.Errorf("single pixel bounds %v", r)
	}
	if r, ok := SubjectBounds(one.SubImage(image.Rect(3, 1, 9, 9)).(*image.NRGBA)); !ok || r != image.Rect(6, 2, 7, 3) {
		t.Errorf("sub-image bounds %v", r)
	}
}

func rembgTestdata(t *testing.T, name string) (src, out []byte) {
	return testfiles.Rembg(t, name+".jpg"), testfiles.Rembg(t, name+".u2netp.png")
}

// TestCutoutMatchesRembgOutput takes the alpha of rembg's own u2netp output
// as the mask and rebuilds the cutout from our decode of the original JPEG:
// alpha must match exactly, and colour wherever alpha > 0 must match up to
// the JPEG IDCT difference between Go and libjpeg-turbo (a few levels).
func TestCutoutMatchesRembgOutput(t *testing.T) {
	for _, name := range []string{"car-1", "cloth-1"} {
		srcBytes, outBytes := rembgTestdata(t, name)
		img, info, err := Decode(srcBytes, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		ref, err := png.Decode(bytes.NewReader(outBytes))
		if err != nil {
			t.Fatal(err)
		}
		want := ToNRGBA(ref)
		if want.Rect != img.Rect {
			t.Fatalf("%s: decoded %v (orientation %d), rembg %v", name, img.Rect, info.Orientation, want.Rect)
		}
		mask := image.NewGray(want.Rect)
		for i := range mask.Pix {
			mask.Pix[i] = want.Pix[4*i+3]
		}
		cut, err := Cutout(img, mask)
		if err != nil {
			t.Fatal(err)
		}
		var maxd, ndiff, nalpha int
		for i := 0; i < len(cut.Pix); i += 4 {
			if cut.Pix[i+3] != want.Pix[i+3] {
				t.Fatalf("%s: alpha differs at %d", name, i/4)
			}
			if want.Pix[i+3] == 0 {
				continue
			}
			nalpha++
			for c := 0; c < 3; c++ {
				d := int(cut.Pix[i+c]) - int(want.Pix[i+c])
				if d != 0 {
					ndiff++
				}
				maxd = max(maxd, d, -d)
			}
		}
		t.Logf("%s: %d pixels with alpha > 0; colour max diff %d, %d of %d samples differ", name, nalpha, maxd, ndiff, 3*nalpha)
		if maxd > 3 || ndiff > 3*nalpha/10 {
			t.Errorf("%s: colour max diff %d, %d samples differ", name, maxd, ndiff)
		}
		r, ok := SubjectBounds(cut)
		if !ok || r.Empty() {
			t.Errorf("%s: no subject bounds", name)
		}
	}
}

// TestEncodeCutoutPNG: the fused writer gives the pixels of Cutout.
func TestEncodeCutoutPNG(t *testing.T) {
	for _, size := range [][2]int{{1, 1}, {37, 5}, {900, 700}} {
		img := synthNRGBA(size[0], size[1])
		mask := image.NewGray(img.Rect)
		for i := range mask.Pix {
			mask.Pix[i] = byte(i * 7 % 300) // 0, 255 and everything between
		}
		want, err := Cutout(img, mask)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := EncodeCutoutPNG(&b, img, mask); err != nil {
			t.Fatal(err)
		}
		got, err := png.Decode(&b)
		if err != nil {
			t.Fatal(err)
		}
		if g, ok := got.(*image.NRGBA); !ok || !bytes.Equal(g.Pix, want.Pix) {
			t.Errorf("%v: fused cutout PNG differs from Cutout", size)
		}
	}
	if err := EncodeCutoutPNG(io.Discard, synthNRGBA(4, 4), image.NewGray(image.Rect(0, 0, 4, 3))); !errors.Is(err, ErrSize) {
		t.Errorf("mismatched mask: %v, want ErrSize", err)
	}
}
