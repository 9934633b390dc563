package inpaint

import (
	"image"
	"math/rand/v2"
	"slices"
	"testing"
)

var model512 = image.Pt(512, 512)

// iopaintCropBox is IOPaint's InpaintModel._crop_box, line by line (Python's
// // floors; every value divided here is non-negative).
func iopaintCropBox(box [4]int, margin, imgW, imgH int) image.Rectangle {
	boxH, boxW := box[3]-box[1], box[2]-box[0]
	cx, cy := (box[0]+box[2])/2, (box[1]+box[3])/2
	w, h := boxW+margin*2, boxH+margin*2
	_l, _r, _t, _b := cx-w/2, cx+w/2, cy-h/2, cy+h/2
	l, r, t, b := max(_l, 0), min(_r, imgW), max(_t, 0), min(_b, imgH)
	if _l < 0 {
		r += -_l
	}
	if _r > imgW {
		l -= _r - imgW
	}
	if _t < 0 {
		b += -_t
	}
	if _b > imgH {
		t -= _b - imgH
	}
	return image.Rect(max(l, 0), max(t, 0), min(r, imgW), min(b, imgH))
}

func TestCropBoxIsIOPaints(t *testing.T) {
	bounds := image.Rect(0, 0, 1000, 800)
	// Near the top left corner the box shifts right and down to keep its
	// context: 100..200 x 100..150 with margin 128 is 356x306 from the corner.
	if got := cropBox(image.Rect(100, 100, 200, 150), 128, bounds); got != image.Rect(0, 0, 356, 306) {
		t.Errorf("corner box %v", got)
	}
	if got := cropBox(image.Rect(400, 300, 500, 400), 50, bounds); got != image.Rect(350, 250, 550, 450) {
		t.Errorf("centred box %v", got)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		w, h := 1+rng.IntN(3000), 1+rng.IntN(3000)
		x0, y0 := rng.IntN(w), rng.IntN(h)
		box := image.Rect(x0, y0, x0+1+rng.IntN(w-x0), y0+1+rng.IntN(h-y0))
		margin := rng.IntN(300)
		want := iopaintCropBox([4]int{box.Min.X, box.Min.Y, box.Max.X, box.Max.Y}, margin, w, h)
		got := cropBox(box, margin, image.Rect(0, 0, w, h))
		// IOPaint's halving can drop the last column or row of an odd box
		// with no margin; ours keeps the box whole.
		if got != want.Union(box) {
			t.Fatalf("box %v margin %d in %dx%d: %v, IOPaint %v", box, margin, w, h, got, want)
		}
	}
}

func TestGrowSpan(t *testing.T) {
	cases := []struct{ lo, hi, n, bmin, bmax, wantLo, wantHi int }{
		{10, 20, 50, 0, 100, 0, 50},   // grows around its centre, pushed off the start
		{40, 60, 40, 0, 100, 30, 70},  // centred
		{90, 95, 20, 0, 100, 80, 100}, // pushed back from the end
		{10, 20, 5, 0, 100, 10, 20},   // never shrinks
	}
	for _, c := range cases {
		lo, hi := growSpan(c.lo, c.hi, c.n, c.bmin, c.bmax)
		if lo != c.wantLo || hi != c.wantHi {
			t.Errorf("growSpan%v = %d, %d", c, lo, hi)
		}
	}
}

func oneRegion(r image.Rectangle) []region { return []region{{bounds: r}} }

func TestPlanWholeImageStrategies(t *testing.T) {
	big := image.Pt(4000, 3000)
	reg := oneRegion(image.Rect(100, 100, 200, 200))
	o := DefaultOptions()
	for _, st := range []Strategy{StrategyOriginal, StrategyResize} {
		o.Strategy = st
		c := plan(big, reg, model512, o)
		if len(c) != 1 || c[0].win != image.Rect(0, 0, 4000, 3000) || c[0].fit != image.Pt(512, 384) {
			t.Errorf("%s on 4000x3000: %+v, want the whole image at 512x384", st, c)
		}
	}
	// Crop runs the whole image up to its trigger size, like IOPaint.
	o.Strategy = StrategyCrop
	c := plan(image.Pt(800, 600), reg, model512, o)
	if len(c) != 1 || c[0].win != image.Rect(0, 0, 800, 600) || c[0].fit != image.Pt(512, 384) {
		t.Errorf("crop at the trigger size: %+v", c)
	}
	// Small images are never enlarged: they are padded.
	c = plan(image.Pt(300, 200), reg, model512, o)
	if len(c) != 1 || c[0].fit != image.Pt(300, 200) {
		t.Errorf("300x200: %+v", c)
	}
	// Resize below its limit runs the image as Original does.
	o.Strategy = StrategyResize
	c = plan(image.Pt(1000, 600), reg, model512, o)
	if len(c) != 1 || c[0].fit != image.Pt(512, 307) {
		t.Errorf("resize below the limit: %+v", c)
	}
}

func TestPlanCropsEachRegion(t *testing.T) {
	size := image.Pt(2000, 1500)
	regions := []region{
		{bounds: image.Rect(100, 100, 220, 180)},     // small: a native 512x512 window
		{bounds: image.Rect(1500, 1200, 1560, 1240)}, // small, near the corner
		{bounds: image.Rect(200, 700, 1700, 1000)},   // wide: scaled down
	}
	o := DefaultOptions()
	crops := plan(size, regions, model512, o)
	if len(crops) != 3 {
		t.Fatalf("%d crops, want one per region", len(crops))
	}
	if crops[0].win != image.Rect(0, 0, 512, 512) || crops[0].fit != image.Pt(512, 512) {
		t.Errorf("small region: %+v", crops[0])
	}
	if crops[1].win != image.Rect(1274, 964, 1786, 1476) || crops[1].fit != image.Pt(512, 512) {
		t.Errorf("corner region: %+v", crops[1])
	}
	// 1500x300 plus 128 on each side is 1756x556; at 512/1756 the window is
	// 1756 wide and as tall as the image allows.
	if crops[2].win != image.Rect(72, 0, 1828, 1500) || crops[2].fit != image.Pt(512, 437) {
		t.Errorf("wide region: %+v", crops[2])
	}
	for i, c := range crops {
		if !slices.Equal(c.regions, []int{i}) {
			t.Errorf("crop %d fills regions %v", i, c.regions)
		}
	}
	// 300 wide with the full margin of 128 is 556, over the model's 512, but
	// with half the margin (428) it fits: native, centred, no resampling.
	crops = plan(size, []region{{bounds: image.Rect(1000, 500, 1300, 700)}}, model512, o)
	if len(crops) != 1 || crops[0].win != image.Rect(894, 344, 1406, 856) || crops[0].fit != image.Pt(512, 512) {
		t.Errorf("a region that fits with half its margin: %+v", crops)
	}
	// 400 wide does not (400 + 2·64 = 528): scaled, with the full margin.
	crops = plan(size, []region{{bounds: image.Rect(1000, 500, 1400, 700)}}, model512, o)
	if len(crops) != 1 || crops[0].win != image.Rect(872, 272, 1528, 928) || crops[0].fit != image.Pt(512, 512) {
		t.Errorf("a region that does not: %+v", crops)
	}
}

func TestPlanMergesPastMaxCrops(t *testing.T) {
	size := image.Pt(4000, 3000)
	var regions []region
	for i := range 6 {
		x := 300 + 600*i
		regions = append(regions, region{bounds: image.Rect(x, 300, x+10, 310)})
	}
	o := DefaultOptions()
	o.MaxCrops = 3
	// With margin 128 no two crop boxes overlap, so everything goes into one.
	crops := plan(size, regions, model512, o)
	if len(crops) != 1 || len(crops[0].regions) != 6 {
		t.Fatalf("%d crops: %+v", len(crops), crops)
	}
	// With margin 300 neighbours overlap and chain into one box too; with
	// regions in two far groups, two crops remain.
	regions = regions[:3]
	for i := range 3 {
		x := 3000 + 100*i
		regions = append(regions, region{bounds: image.Rect(x, 2500, x+10, 2510)})
	}
	o.CropMargin = 60
	crops = plan(size, regions, model512, o)
	var all []int
	for _, c := range crops {
		all = append(all, c.regions...)
	}
	slices.Sort(all)
	if len(crops) > 3 || !slices.Equal(all, []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("%d crops filling %v", len(crops), all)
	}
}

// TestPlanInvariants checks, over random images, masks and options, what
// paste relies on and what the model needs: every region is filled by
// exactly one crop whose window holds it, windows lie in the image, and
// every window is scaled by one factor, never up, into the model.
func TestPlanInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	models := []image.Point{model512, image.Pt(256, 384)}
	for i := range 400 {
		size := image.Pt(1+rng.IntN(5000), 1+rng.IntN(5000))
		// plan reads only the regions' bounds.
		regions := make([]region, 1+rng.IntN(8))
		for j := range regions {
			x0, y0 := rng.IntN(size.X), rng.IntN(size.Y)
			regions[j].bounds = image.Rect(x0, y0, x0+1+rng.IntN(size.X-x0), y0+1+rng.IntN(size.Y-y0))
		}
		o := DefaultOptions()
		o.Strategy = []Strategy{StrategyCrop, StrategyResize, StrategyOriginal}[i%3]
		o.CropMargin = rng.IntN(300)
		o.CropTriggerSize = rng.IntN(2000)
		o.ResizeLimit = 32 + rng.IntN(2000)
		o.MaxCrops = 1 + rng.IntN(5)
		model := models[i%2]
		crops := plan(size, regions, model, o)
		if len(crops) == 0 || len(crops) > max(1, o.MaxCrops) {
			t.Fatalf("%d crops with max %d", len(crops), o.MaxCrops)
		}
		filled := make([]int, len(regions))
		for _, c := range crops {
			if !c.win.In(image.Rectangle{Max: size}) || c.win.Empty() {
				t.Fatalf("window %v outside %v", c.win, size)
			}
			if c.fit.X < 1 || c.fit.Y < 1 || c.fit.X > model.X || c.fit.Y > model.Y || c.fit.X > c.win.Dx() || c.fit.Y > c.win.Dy() {
				t.Fatalf("window %v fits as %v into %v", c.win, c.fit, model)
			}
			// One factor for both axes: the short side is the long side's
			// factor times its length, give or take rounding, or one pixel.
			long, short := c.win.Dx(), c.win.Dy()
			fl, fs := c.fit.X, c.fit.Y
			if short > long {
				long, short, fl, fs = short, long, fs, fl
			}
			if want := float64(fl) * float64(short) / float64(long); fs != 1 && (float64(fs) < want-1 || float64(fs) > want+1) {
				t.Fatalf("window %v fits as %v: not one scale for both axes", c.win, c.fit)
			}
			for _, r := range c.regions {
				filled[r]++
				if !regions[r].bounds.In(c.win) {
					t.Fatalf("region %v is not inside its window %v", regions[r].bounds, c.win)
				}
			}
		}
		for r, n := range filled {
			if n != 1 {
				t.Fatalf("region %d is filled by %d crops", r, n)
			}
		}
	}
}
