package inpaint

import (
	"image"
	"math"
)

// crop is one model run: a window of the image, the size it is scaled to
// inside the model's input (the rest of the input is padding), and the
// regions whose pixels the run fills.
type crop struct {
	win     image.Rectangle
	fit     image.Point
	regions []int
}

// plan turns a strategy into model runs. model is the model's input size.
//
// The model takes a fixed size (512x512 for the LaMa export), so every
// window is scaled by one factor for both axes, never stretched, so that
// the model sees undistorted texture, and never enlarged, since upscaling
// adds no detail. Under StrategyCrop a region that fits the model's input
// with at least half the margin around it runs at native resolution in a
// window of the input's size (inside the image), so the model gets real
// context instead of padding; a larger one grows from its crop box on its
// shorter side to the input's aspect ratio and is scaled down. Whatever
// does not fill the input (a small image) is padded by mirroring, as
// IOPaint's pad_img_to_modulo.
func plan(size image.Point, regions []region, model image.Point, o Options) []crop {
	all := make([]int, len(regions))
	for i := range all {
		all[i] = i
	}
	bounds := image.Rectangle{Max: size}
	long := max(size.X, size.Y)
	switch {
	case o.Strategy == StrategyCrop && long > o.CropTriggerSize:
		return cropPlan(bounds, regions, model, o)
	case o.Strategy == StrategyResize && long > o.ResizeLimit:
		// IOPaint: resize_max_size to the limit, run, resize back. Fitting
		// the model scales again; one scale by the smaller factor is the
		// same run with one resampling fewer.
		s := min(fitScale(size, model), float64(o.ResizeLimit)/float64(long))
		return []crop{{win: bounds, fit: scaled(size, s, model), regions: all}}
	}
	return []crop{{win: bounds, fit: scaled(size, fitScale(size, model), model), regions: all}}
}

// fitScale is the largest factor, at most 1, that fits size into model.
func fitScale(size, model image.Point) float64 {
	return min(1, float64(model.X)/float64(size.X), float64(model.Y)/float64(size.Y))
}

// scaled is size times s, rounded as IOPaint's resize_max_size (int(v+0.5)),
// at least one pixel and at most the model's input.
func scaled(size image.Point, s float64, model image.Point) image.Point {
	if s >= 1 {
		return size
	}
	return image.Pt(
		min(model.X, max(1, int(float64(size.X)*s+0.5))),
		min(model.Y, max(1, int(float64(size.Y)*s+0.5))))
}

// cropPlan makes one crop per region, as IOPaint, merging crops when there
// are more than o.MaxCrops.
func cropPlan(bounds image.Rectangle, regions []region, model image.Point, o Options) []crop {
	type group struct {
		core    image.Rectangle // the regions' bounds
		box     image.Rectangle // and their crop boxes
		regions []int
	}
	groups := make([]group, len(regions))
	for i, r := range regions {
		groups[i] = group{core: r.bounds, box: cropBox(r.bounds, o.CropMargin, bounds), regions: []int{i}}
	}
	if len(groups) > o.MaxCrops && len(groups) <= maxRegionsIn {
		// Merge crops whose boxes overlap, until none do.
		for merged := true; merged; {
			merged = false
			for i := 0; i < len(groups); i++ {
				for j := i + 1; j < len(groups); j++ {
					if groups[i].box.Overlaps(groups[j].box) {
						groups[i].core = groups[i].core.Union(groups[j].core)
						groups[i].box = groups[i].box.Union(groups[j].box)
						groups[i].regions = append(groups[i].regions, groups[j].regions...)
						groups = append(groups[:j], groups[j+1:]...)
						merged = true
						j = i // the grown box may now overlap earlier ones
					}
				}
			}
		}
	}
	if len(groups) > o.MaxCrops {
		one := group{}
		for _, g := range groups {
			one.core = one.core.Union(g.core)
			one.box = one.box.Union(g.box)
			one.regions = append(one.regions, g.regions...)
		}
		groups = []group{one}
	}
	crops := make([]crop, len(groups))
	for i, g := range groups {
		var win image.Rectangle
		var fit image.Point
		if near := g.core.Inset(-o.CropMargin / 2).Intersect(bounds); near.Dx() <= model.X && near.Dy() <= model.Y {
			win = nativeWindow(near, bounds, model)
			fit = win.Size()
		} else {
			win, fit = growWindow(g.box, bounds, model)
		}
		crops[i] = crop{win: win, fit: fit, regions: g.regions}
	}
	return crops
}

// cropBox is IOPaint's InpaintModel._crop_box: the box expanded by margin on
// every side around its centre, shifted back inside the image at the edges
// to keep the context, and clipped. IOPaint's integer halving can leave the
// last column or row of an odd-sized box out when the margin is 0; the
// union with the box puts it back, since its pixels are pasted from this
// crop.
func cropBox(box image.Rectangle, margin int, bounds image.Rectangle) image.Rectangle {
	cx, cy := (box.Min.X+box.Max.X)/2, (box.Min.Y+box.Max.Y)/2
	w, h := box.Dx()+2*margin, box.Dy()+2*margin
	l0, r0, t0, b0 := cx-w/2, cx+w/2, cy-h/2, cy+h/2
	l, r := max(l0, bounds.Min.X), min(r0, bounds.Max.X)
	t, b := max(t0, bounds.Min.Y), min(b0, bounds.Max.Y)
	if l0 < bounds.Min.X {
		r += bounds.Min.X - l0
	}
	if r0 > bounds.Max.X {
		l -= r0 - bounds.Max.X
	}
	if t0 < bounds.Min.Y {
		b += bounds.Min.Y - t0
	}
	if b0 > bounds.Max.Y {
		t -= b0 - bounds.Max.Y
	}
	c := image.Rect(max(l, bounds.Min.X), max(t, bounds.Min.Y), min(r, bounds.Max.X), min(b, bounds.Max.Y))
	return c.Union(box)
}

// nativeWindow is the model's size (or the image's, where smaller) around
// box, inside bounds. A crop runs at native resolution, never resampled,
// whenever its regions keep at least half the margin of context in it:
// scaling a window to fit would blur the fill more than a somewhat
// smaller margin costs context.
func nativeWindow(box, bounds image.Rectangle, model image.Point) image.Rectangle {
	x0, x1 := growSpan(box.Min.X, box.Max.X, min(model.X, bounds.Dx()), bounds.Min.X, bounds.Max.X)
	y0, y1 := growSpan(box.Min.Y, box.Max.Y, min(model.Y, bounds.Dy()), bounds.Min.Y, bounds.Max.Y)
	return image.Rect(x0, y0, x1, y1)
}

// growWindow grows box, inside bounds, to the model's aspect ratio at the
// scale that fits box into the model, and returns it with its size inside
// the model.
func growWindow(box, bounds image.Rectangle, model image.Point) (image.Rectangle, image.Point) {
	s := fitScale(box.Size(), model)
	// box.Dx() <= model.X/s, so the target never shrinks the box.
	wantX := min(bounds.Dx(), int(math.Floor(float64(model.X)/s+1e-9)))
	wantY := min(bounds.Dy(), int(math.Floor(float64(model.Y)/s+1e-9)))
	x0, x1 := growSpan(box.Min.X, box.Max.X, wantX, bounds.Min.X, bounds.Max.X)
	y0, y1 := growSpan(box.Min.Y, box.Max.Y, wantY, bounds.Min.Y, bounds.Max.Y)
	win := image.Rect(x0, y0, x1, y1)
	return win, scaled(win.Size(), s, model)
}

// growSpan widens [lo, hi) to length n around its centre, shifted to stay
// inside [min, max). n is at least hi-lo and at most max-min, so the result
// contains [lo, hi).
func growSpan(lo, hi, n, bmin, bmax int) (int, int) {
	if n <= hi-lo {
		return lo, hi
	}
	start := lo - (n-(hi-lo)+1)/2
	start = max(bmin, min(start, bmax-n))
	return start, start + n
}
