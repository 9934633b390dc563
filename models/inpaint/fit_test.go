package inpaint

import (
	"image"
	"math"
	"math/rand/v2"
	"testing"
)

func TestMirrorIsNumpySymmetric(t *testing.T) {
	// np.pad(np.arange(3), (0, 9), mode="symmetric")
	want := []int{0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0}
	for i, w := range want {
		if got := mirror(i, 3); got != w {
			t.Errorf("mirror(%d, 3) = %d, want %d", i, got, w)
		}
	}
	for i := range 5 {
		if mirror(i, 1) != 0 {
			t.Errorf("mirror(%d, 1) != 0", i)
		}
	}
}

func TestShrinkMaskCountsAnyCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 200 {
		w, h := 1+rng.IntN(60), 1+rng.IntN(60)
		m := randomMask(rng, w, h, rng.IntN(4))
		// Sparse single pixels too: thin strokes must survive.
		for range rng.IntN(5) {
			m.Pix[rng.IntN(len(m.Pix))] = 255
		}
		x0, y0 := rng.IntN(w), rng.IntN(h)
		win := image.Rect(x0, y0, x0+1+rng.IntN(w-x0), y0+1+rng.IntN(h-y0))
		fit := image.Pt(1+rng.IntN(win.Dx()), 1+rng.IntN(win.Dy()))
		got := shrinkMask(m, win, fit)
		W, H := win.Dx(), win.Dy()
		for y := 0; y < fit.Y; y++ {
			for x := 0; x < fit.X; x++ {
				want := uint8(0)
				// Source pixel (sx, sy) covers [sx, sx+1); output pixel x
				// covers [x*W/fit.X, (x+1)*W/fit.X).
				for sy := 0; sy < H; sy++ {
					for sx := 0; sx < W; sx++ {
						if sx*fit.X < (x+1)*W && (sx+1)*fit.X > x*W &&
							sy*fit.Y < (y+1)*H && (sy+1)*fit.Y > y*H &&
							m.GrayAt(win.Min.X+sx, win.Min.Y+sy).Y != 0 {
							want = 255
						}
					}
				}
				if v := got.GrayAt(x, y).Y; v != want {
					t.Fatalf("window %v of %dx%d to %v: (%d,%d) = %v, want %v\n%s", win, w, h, fit, x, y, v, want, drawMask(m))
				}
			}
		}
	}
}

func TestHoleMaskGrowsByTheKernelOnlyWhenScaled(t *testing.T) {
	m, _ := MaskFromBoxes(100, 100, []Box{{40, 40, 2, 2}})
	const stride = 60
	hole := make([]float32, stride*55)
	for i := range hole {
		hole[i] = 7 // all of it is written
	}
	count := func() (n int, b image.Rectangle) {
		for i, v := range hole {
			switch v {
			case 1:
				n++
				b = b.Union(image.Rect(i%stride, i/stride, i%stride+1, i/stride+1))
			case 0:
			default:
				t.Fatalf("hole[%d] = %v", i, v)
			}
		}
		return n, b
	}
	// Native: the mask as it is, at the window's offset.
	holeMask(m, image.Rect(30, 30, 80, 80), image.Pt(50, 50), hole, stride)
	if n, b := count(); n != 4 || b != image.Rect(10, 10, 12, 12) {
		t.Errorf("native: %d hole pixels in %v", n, b)
	}
	// Halved: the 2x2 box covers one model pixel, grown by 2 on each side.
	holeMask(m, image.Rect(0, 0, 100, 100), image.Pt(50, 50), hole, stride)
	if n, b := count(); n != 25 || b != image.Rect(18, 18, 23, 23) {
		t.Errorf("scaled: %d hole pixels in %v", n, b)
	}
}

// gradient is an image whose every pixel differs from its neighbours.
func gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			copy(img.Pix[img.PixOffset(x, y):], []uint8{uint8(x), uint8(y), uint8(x*7 + y*3), 255})
		}
	}
	return img
}

func TestPackCropNativeWindowAndPadding(t *testing.T) {
	img := gradient(300, 200)
	mask, _ := MaskFromBoxes(300, 200, []Box{{110, 60, 5, 4}})
	model := image.Pt(64, 48)
	c := crop{win: image.Rect(100, 50, 140, 80), fit: image.Pt(40, 30)} // native: 40x30 in 64x48
	pix, hole := make([]float32, 3*64*48), make([]float32, 64*48)
	packCrop(img, mask, c, model, pix, hole)
	plane := 64 * 48
	for y := 0; y < 48; y++ {
		for x := 0; x < 64; x++ {
			sx, sy := 100+mirror(x, 40), 50+mirror(y, 30)
			p := img.Pix[img.PixOffset(sx, sy):]
			for ch := range 3 {
				if got, want := pix[ch*plane+y*64+x], float32(p[ch])/255; got != want {
					t.Fatalf("channel %d at %d,%d: %v, want %v", ch, x, y, got, want)
				}
			}
			want := float32(0)
			if x < 40 && y < 30 && mask.GrayAt(100+x, 50+y).Y != 0 {
				want = 1 // the mirrored padding is context, never hole
			}
			if hole[y*64+x] != want {
				t.Fatalf("hole at %d,%d: %v, want %v", x, y, hole[y*64+x], want)
			}
		}
	}
}

func TestPackCropScalesTransparentPixelsByTheirColour(t *testing.T) {
	// IOPaint drops the alpha channel before the model: a transparent
	// pixel's colour is what LaMa sees, at any scale.
	img := image.NewNRGBA(image.Rect(0, 0, 1024, 1024))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = 200, 100, 50, uint8(i/4%2*255)
	}
	mask := image.NewGray(img.Rect)
	c := crop{win: img.Rect, fit: image.Pt(512, 512)}
	pix, hole := make([]float32, 3*512*512), make([]float32, 512*512)
	packCrop(img, mask, c, model512, pix, hole)
	for ch, want := range []float32{200, 100, 50} {
		for _, v := range pix[ch*512*512 : (ch+1)*512*512] {
			if math.Abs(float64(v*255-want)) > 0.5 {
				t.Fatalf("channel %d: %v, want %v", ch, v*255, want)
			}
		}
	}
}

func TestTo8RoundsAndClamps(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want byte
	}{{-3, 0}, {0, 0}, {0.49, 0}, {0.5, 1}, {127.5, 128}, {254.99998, 255}, {255, 255}, {1e9, 255}, {float32(math.NaN()), 0}, {float32(math.Inf(-1)), 0}} {
		if got := to8(c.in); got != c.want {
			t.Errorf("to8(%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestUnpackAndPasteWriteOnlyTheRegions(t *testing.T) {
	img := gradient(200, 100)
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = uint8(i / 4 % 251) // alpha survives the paste
	}
	orig := append([]byte(nil), img.Pix...)
	mask, _ := MaskFromBoxes(200, 100, []Box{{20, 20, 10, 10}, {60, 40, 30, 5}})
	regions := findRegions(mask, mask.Rect)
	model := image.Pt(64, 64)
	for _, c := range []crop{
		{win: image.Rect(10, 10, 74, 74), fit: image.Pt(64, 64), regions: []int{0}}, // native
		{win: image.Rect(0, 0, 200, 100), fit: image.Pt(64, 32), regions: []int{1}}, // scaled back up
	} {
		out := make([]float32, 3*64*64)
		for i := range out {
			out[i] = []float32{10, 20, 30}[i/(64*64)] / 255 // white is 1: grey-blue everywhere
		}
		res := unpackCrop(out, 1, c, model)
		paste(img, res, c.win, regions, c.regions)
	}
	for y := 0; y < 100; y++ {
		for x := 0; x < 200; x++ {
			o := img.PixOffset(x, y)
			got, was := img.Pix[o:o+4], orig[o:o+4]
			if mask.GrayAt(x, y).Y == 0 {
				if string(got) != string(was) {
					t.Fatalf("%d,%d outside the mask changed from %v to %v", x, y, was, got)
				}
				continue
			}
			if got[0] != 10 || got[1] != 20 || got[2] != 30 || got[3] != was[3] {
				t.Fatalf("%d,%d inside the mask is %v, want 10,20,30 with alpha %d", x, y, got, was[3])
			}
		}
	}
}
