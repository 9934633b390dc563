package preprocess

import (
	"crypto/sha256"
	"encoding/hex"
	"image"
	"testing"

	"github.com/nfnt/resize"
)

// synth is the deterministic test pattern of testdata/golden.py: gradients,
// a checkerboard and a multiplicative term, so every filter lobe matters.
func synthPix(x, y, c int) byte {
	v := x*31 + y*17 + c*101 + ((x*y)%13)*7
	if (x/5+y/3)%2 == 1 {
		v += 90
	}
	return byte(v % 256)
}

func synthNRGBA(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			o := m.PixOffset(x, y)
			m.Pix[o], m.Pix[o+1], m.Pix[o+2], m.Pix[o+3] = synthPix(x, y, 0), synthPix(x, y, 1), synthPix(x, y, 2), 0xFF
		}
	}
	return m
}

func synthGray(w, h int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Pix[m.PixOffset(x, y)] = synthPix(x, y, 0)
		}
	}
	return m
}

func rgbBytes(m *image.NRGBA) []byte {
	b := make([]byte, 0, 3*m.Rect.Dx()*m.Rect.Dy())
	for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
		for x := m.Rect.Min.X; x < m.Rect.Max.X; x++ {
			o := m.PixOffset(x, y)
			b = append(b, m.Pix[o:o+3]...)
		}
	}
	return b
}

func shortHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// Hashes of PIL 9.4's Image.resize on the same pattern (testdata/golden.py).
var pilResizeGolden = []struct {
	gray         bool
	sw, sh, w, h int
	f            Filter
	sha          string
}{
	{false, 1152, 864, 320, 320, Lanczos3, "c1a6139ec2250cce"},
	{false, 61, 37, 320, 320, Lanczos3, "a373278011fc39f2"},
	{false, 97, 203, 17, 11, Lanczos3, "5c240943f236468b"},
	{false, 1152, 864, 1024, 1024, Bilinear, "d64e21bbf922e0b1"},
	{false, 300, 200, 37, 29, Bilinear, "2772e26086ff0f50"},
	{false, 640, 480, 298, 224, Bicubic, "517c949035213357"},
	{false, 50, 70, 224, 313, Bicubic, "059fd63270e621b0"},
	{false, 33, 33, 33, 33, Lanczos3, "00d9937adda0c666"},
	{false, 33, 40, 33, 20, Lanczos3, "8fd4fb5a614cbc83"},
	{true, 320, 320, 1152, 864, Lanczos3, "9d70844a265bdac6"},
	{true, 320, 320, 480, 360, Lanczos3, "ddd74dacc42716cd"},
	{true, 320, 320, 100, 77, Lanczos3, "e91daad2c7c7ed48"},
	{true, 29, 31, 5, 3, Bicubic, "4705e1e705cac6e4"},
	{true, 7, 5, 1, 1, Lanczos3, "189f40034be7a199"},
	{true, 1, 1, 9, 4, Lanczos3, "6db65fd59fd356f6"},
}

func TestResizeMatchesPIL(t *testing.T) {
	for _, c := range pilResizeGolden {
		var got string
		if c.gray {
			r := ResizeGray(synthGray(c.sw, c.sh), c.w, c.h, c.f)
			if r.Rect.Dx() != c.w || r.Rect.Dy() != c.h {
				t.Fatalf("size %v", r.Rect)
			}
			got = shortHash(r.Pix)
		} else {
			r := ResizeRGB(synthNRGBA(c.sw, c.sh), c.w, c.h, c.f)
			if r.Rect.Dx() != c.w || r.Rect.Dy() != c.h {
				t.Fatalf("size %v", r.Rect)
			}
			for i := 3; i < len(r.Pix); i += 4 {
				if r.Pix[i] != 0xFF {
					t.Fatalf("alpha %d at %d", r.Pix[i], i)
				}
			}
			got = shortHash(rgbBytes(r))
		}
		if got != c.sha {
			t.Errorf("gray=%v %dx%d -> %dx%d %v: sha %s, PIL %s", c.gray, c.sw, c.sh, c.w, c.h, c.f, got, c.sha)
		}
	}
}

func TestResizeIgnoresAlphaAndOffset(t *testing.T) {
	// PIL's convert("RGB") drops alpha without compositing, so translucent
	// pixels must resize exactly like opaque ones with the same RGB.
	src := synthNRGBA(90, 70)
	tr := image.NewNRGBA(image.Rect(0, 0, 90, 70))
	copy(tr.Pix, src.Pix)
	for i := 3; i < len(tr.Pix); i += 4 {
		tr.Pix[i] = byte(i)
	}
	a, b := ResizeRGB(src, 33, 21, Lanczos3), ResizeRGB(tr, 33, 21, Lanczos3)
	if shortHash(a.Pix) != shortHash(b.Pix) {
		t.Error("alpha changed the resized colours")
	}
	// A sub-image must resize as its own pixels.
	big := synthNRGBA(120, 100)
	sub := big.SubImage(image.Rect(10, 20, 100, 90)).(*image.NRGBA)
	crop := image.NewNRGBA(image.Rect(0, 0, 90, 70))
	for y := 0; y < 70; y++ {
		copy(crop.Pix[y*crop.Stride:][:4*90], big.Pix[big.PixOffset(10, 20+y):])
	}
	if shortHash(ResizeRGB(sub, 33, 21, Bicubic).Pix) != shortHash(ResizeRGB(crop, 33, 21, Bicubic).Pix) {
		t.Error("sub-image offset not honoured")
	}
}

func TestResizeShortestEdgeCenterCrop(t *testing.T) {
	src := synthNRGBA(640, 480)
	got := ResizeShortestEdgeCenterCrop(src, 224, Bicubic)
	if got.Rect != image.Rect(0, 0, 224, 224) {
		t.Fatalf("size %v", got.Rect)
	}
	// 640x480 -> 298x224 (int(224*640/480) = 298), crop left (298-224)/2 = 37.
	full := ResizeRGB(src, 298, 224, Bicubic)
	for y := 0; y < 224; y += 37 {
		for x := 0; x < 224; x += 13 {
			if got.NRGBAAt(x, y) != full.NRGBAAt(x+37, y) {
				t.Fatalf("pixel (%d,%d) not from the centre crop", x, y)
			}
		}
	}
	tall := ResizeShortestEdgeCenterCrop(synthNRGBA(50, 70), 224, Bicubic)
	if tall.Rect.Dx() != 224 || tall.Rect.Dy() != 224 {
		t.Fatalf("tall size %v", tall.Rect)
	}
}

// TestNfntDiffersFromPIL documents why the resampler is not nfnt/resize:
// on the rembg input path nfnt is several levels away from PIL.
func TestNfntDiffersFromPIL(t *testing.T) {
	src := synthNRGBA(1152, 864)
	ours := ResizeRGB(src, 320, 320, Lanczos3)
	rgba := &image.RGBA{Pix: src.Pix, Stride: src.Stride, Rect: src.Rect}
	theirs := resize.Resize(320, 320, rgba, resize.Lanczos3).(*image.RGBA)
	maxd, n := 0, 0
	for i := range ours.Pix {
		d := int(ours.Pix[i]) - int(theirs.Pix[i])
		if d != 0 {
			n++
		}
		maxd = max(maxd, d, -d)
	}
	t.Logf("nfnt Lanczos3 vs PIL 1152x864->320x320: max diff %d, %d of %d samples differ", maxd, n, len(ours.Pix))
	if maxd == 0 {
		t.Error("nfnt now matches PIL; reconsider using it")
	}
}

func TestResizeDegenerateSizes(t *testing.T) {
	src := synthNRGBA(10, 10)
	for _, wh := range [][2]int{{0, 5}, {5, 0}, {-3, 4}} {
		if r := ResizeRGB(src, wh[0], wh[1], Lanczos3); !r.Rect.Empty() {
			t.Errorf("ResizeRGB %v: %v", wh, r.Rect)
		}
		if r := ResizeGray(synthGray(4, 4), wh[0], wh[1], Bilinear); !r.Rect.Empty() {
			t.Errorf("ResizeGray %v: %v", wh, r.Rect)
		}
	}
	if r := ResizeRGB(image.NewNRGBA(image.Rectangle{}), 4, 4, Bicubic); !r.Rect.Empty() {
		t.Errorf("empty source: %v", r.Rect)
	}
	// Extreme ratios stay finite and correctly sized.
	if r := ResizeRGB(synthNRGBA(3000, 2), 1, 1, Lanczos3); r.Rect.Dx() != 1 {
		t.Error("3000:1 downscale")
	}
	if r := ResizeGray(synthGray(1, 1), 500, 3, Lanczos3); r.Pix[0] != synthPix(0, 0, 0) || r.Pix[1499] != synthPix(0, 0, 0) {
		t.Error("1x1 upscale must replicate the pixel")
	}
}
