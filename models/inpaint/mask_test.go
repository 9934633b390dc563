package inpaint

import (
	"errors"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestMaskFromImageThresholdsLuminanceAndAlpha(t *testing.T) {
	cases := []struct {
		r, g, b, a uint8
		fill       bool
	}{
		{255, 255, 255, 255, true},
		{0, 0, 0, 255, false},
		{128, 128, 128, 255, true},  // the threshold: 128 fills
		{127, 127, 127, 255, false}, // 127 does not, as IOPaint's cv2.threshold(127)
		{255, 0, 0, 255, false},     // PIL's L of pure red is 76
		{0, 255, 0, 255, true},      // of pure green 150
		{0, 0, 255, 255, false},     // of pure blue 29
		{255, 255, 255, 128, true},  // alpha counts: half opaque fills
		{255, 255, 255, 127, false}, // less than half does not
		{255, 255, 255, 0, false},   // a white brush on a transparent layer fills only where painted
	}
	src := image.NewNRGBA(image.Rect(0, 0, len(cases), 1))
	for i, c := range cases {
		copy(src.Pix[4*i:], []uint8{c.r, c.g, c.b, c.a})
	}
	m := MaskFromImage(src)
	for i, c := range cases {
		if got := m.Pix[i] == 255; got != c.fill || (m.Pix[i] != 0 && m.Pix[i] != 255) {
			t.Errorf("%v: mask %d, want fill=%v", c, m.Pix[i], c.fill)
		}
	}
}

func TestMaskFromImageReadsSubImages(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 6, 5))
	for y := 0; y < 5; y++ {
		for x := 0; x < 6; x++ {
			if (x+y)%2 == 0 {
				copy(src.Pix[src.PixOffset(x, y):], []uint8{255, 255, 255, 255})
			}
		}
	}
	sub := src.SubImage(image.Rect(1, 2, 5, 5)).(*image.NRGBA)
	m := MaskFromImage(sub)
	if m.Rect != image.Rect(0, 0, 4, 3) {
		t.Fatalf("mask bounds %v, want 4x3 at the origin", m.Rect)
	}
	for y := 0; y < 3; y++ {
		for x := 0; x < 4; x++ {
			want := (x+1+y+2)%2 == 0
			if got := m.GrayAt(x, y).Y == 255; got != want {
				t.Errorf("(%d,%d): fill %v, want %v", x, y, got, want)
			}
		}
	}
}

func TestMaskFromBoxes(t *testing.T) {
	m, err := MaskFromBoxes(10, 8, []Box{{1, 1, 2, 3}, {6.5, 4.2, 2, 1.5}})
	if err != nil {
		t.Fatal(err)
	}
	want := image.NewGray(image.Rect(0, 0, 10, 8))
	for _, r := range []image.Rectangle{image.Rect(1, 1, 3, 4), image.Rect(6, 4, 9, 6)} { // fractional edges grow outwards
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				want.Pix[want.PixOffset(x, y)] = 255
			}
		}
	}
	if string(m.Pix) != string(want.Pix) {
		t.Errorf("mask\n%s\nwant\n%s", drawMask(m), drawMask(want))
	}
	// A box touching the far edges is inside.
	if _, err := MaskFromBoxes(10, 8, []Box{{0, 0, 10, 8}}); err != nil {
		t.Errorf("the whole image as a box: %v", err)
	}
	bad := []struct {
		boxes []Box
		msg   string
	}{
		{nil, "empty"},
		{[]Box{{8, 0, 3, 2}}, "outside"},
		{[]Box{{-1, 0, 3, 2}}, "outside"},
		{[]Box{{0, 7, 2, 1.5}}, "outside"},
		{[]Box{{0, 0, 0, 2}}, "positive"},
		{[]Box{{0, 0, 2, -1}}, "positive"},
		{[]Box{{math.NaN(), 0, 2, 2}}, "finite"},
		{[]Box{{0, 0, math.Inf(1), 2}}, "finite"},
		{[]Box{{0, 0, 1, 1}, {1e300, 0, 1, 1}}, "box 1"},
	}
	for _, c := range bad {
		_, err := MaskFromBoxes(10, 8, c.boxes)
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: error %v, want an InputError saying %q", c.boxes, err, c.msg)
		}
	}
}

func drawMask(m *image.Gray) string {
	var b strings.Builder
	for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
		for x := m.Rect.Min.X; x < m.Rect.Max.X; x++ {
			if m.GrayAt(x, y).Y != 0 {
				b.WriteByte('#')
			} else {
				b.WriteByte('.')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// randomMask sets a few random blobs of random values (any non-zero value
// is "set") on a w x h mask.
func randomMask(rng *rand.Rand, w, h, blobs int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for range blobs {
		x0, y0 := rng.IntN(w), rng.IntN(h)
		bw, bh := 1+rng.IntN(max(1, w/4)), 1+rng.IntN(max(1, h/4))
		for y := y0; y < min(h, y0+bh); y++ {
			for x := x0; x < min(w, x0+bw); x++ {
				if rng.IntN(4) != 0 {
					m.Pix[y*m.Stride+x] = byte(1 + rng.IntN(255))
				}
			}
		}
	}
	return m
}

// dilateReference is the definition: a pixel is set when any pixel within
// r in both axes is.
func dilateReference(m *image.Gray, r int) *image.Gray {
	out := image.NewGray(m.Rect)
	w, h := m.Rect.Dx(), m.Rect.Dy()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for yy := max(0, y-r); yy <= min(h-1, y+r) && out.Pix[y*w+x] == 0; yy++ {
				for xx := max(0, x-r); xx <= min(w-1, x+r); xx++ {
					if m.Pix[yy*w+xx] != 0 {
						out.Pix[y*w+x] = 255
						break
					}
				}
			}
		}
	}
	return out
}

func TestDilateMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		w, h := 1+rng.IntN(40), 1+rng.IntN(40)
		m := randomMask(rng, w, h, rng.IntN(4))
		r := []int{0, 1, 2, 4, 7, 50}[i%6]
		want := dilateReference(m, r)
		bounds := dilate(m, r)
		if string(m.Pix) != string(want.Pix) {
			t.Fatalf("%dx%d r=%d:\n%s\nwant\n%s", w, h, r, drawMask(m), drawMask(want))
		}
		if wb := setBounds(want); bounds != wb {
			t.Fatalf("%dx%d r=%d: bounds %v, want %v", w, h, r, bounds, wb)
		}
	}
}

func TestDilateGrowsABoxByTheMargin(t *testing.T) {
	m, _ := MaskFromBoxes(100, 80, []Box{{20, 30, 10, 5}, {95, 0, 5, 5}})
	bounds := dilate(m, 4)
	want, _ := MaskFromBoxes(100, 80, []Box{{16, 26, 18, 13}, {91, 0, 9, 9}}) // the corner box is clipped
	if string(m.Pix) != string(want.Pix) {
		t.Errorf("dilated boxes differ from the boxes grown by 4")
	}
	if bounds != image.Rect(16, 0, 100, 39) {
		t.Errorf("bounds %v", bounds)
	}
	if b := dilate(image.NewGray(image.Rect(0, 0, 5, 5)), 3); !b.Empty() {
		t.Errorf("an empty mask dilated to %v", b)
	}
}

// labelReference labels 8-connected components by flood fill; 0 is unset.
func labelReference(m *image.Gray) ([]int, int) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	labels := make([]int, w*h)
	n := 0
	for start := range labels {
		if m.Pix[start] == 0 || labels[start] != 0 {
			continue
		}
		n++
		stack := []int{start}
		labels[start] = n
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			x, y := p%w, p/w
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					xx, yy := x+dx, y+dy
					if xx < 0 || yy < 0 || xx >= w || yy >= h {
						continue
					}
					q := yy*w + xx
					if m.Pix[q] != 0 && labels[q] == 0 {
						labels[q] = n
						stack = append(stack, q)
					}
				}
			}
		}
	}
	return labels, n
}

func TestFindRegionsAreThe8ConnectedComponents(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 80 {
		w, h := 1+rng.IntN(50), 1+rng.IntN(50)
		m := randomMask(rng, w, h, 1+rng.IntN(6))
		labels, n := labelReference(m)
		regions := findRegions(m, setBounds(m))
		if len(regions) != n {
			t.Fatalf("%dx%d: %d regions, want %d\n%s", w, h, len(regions), n, drawMask(m))
		}
		seen := make([]int, w*h) // region index + 1 per pixel
		label := map[int]int{}   // reference label of each region
		prevTop := -1
		for i, r := range regions {
			var b image.Rectangle
			for _, s := range r.spans {
				if s.x0 >= s.x1 {
					t.Fatalf("empty span %v", s)
				}
				b = b.Union(image.Rect(int(s.x0), int(s.y), int(s.x1), int(s.y)+1))
				for x := s.x0; x < s.x1; x++ {
					p := int(s.y)*w + int(x)
					if m.Pix[p] == 0 || seen[p] != 0 {
						t.Fatalf("span %v covers an unset or already covered pixel", s)
					}
					seen[p] = i + 1
					if l, ok := label[i]; ok && l != labels[p] {
						t.Fatalf("region %d spans two components\n%s", i, drawMask(m))
					}
					label[i] = labels[p]
				}
			}
			if b != r.bounds {
				t.Fatalf("region %d bounds %v, its spans cover %v", i, r.bounds, b)
			}
			if r.bounds.Min.Y < prevTop {
				t.Fatalf("regions out of order of their first row")
			}
			prevTop = r.bounds.Min.Y
		}
		for p, v := range m.Pix {
			if v != 0 && seen[p] == 0 {
				t.Fatalf("pixel %d,%d is in no region", p%w, p/w)
			}
		}
	}
}

func TestFindRegionsJoinsDiagonals(t *testing.T) {
	m := image.NewGray(image.Rect(0, 0, 6, 4))
	for _, p := range []image.Point{{0, 0}, {1, 1}, {2, 2}, {4, 0}, {5, 1}, {3, 3}} {
		m.SetGray(p.X, p.Y, color.Gray{Y: 255})
	}
	// (0,0)-(1,1)-(2,2)-(3,3) touch at corners; (4,0)-(5,1) is apart.
	regions := findRegions(m, m.Rect)
	if len(regions) != 2 || regions[0].bounds != image.Rect(0, 0, 4, 4) || regions[1].bounds != image.Rect(4, 0, 6, 2) {
		t.Fatalf("regions %+v\n%s", regions, drawMask(m))
	}
	// Only pixels inside within are labelled.
	if r := findRegions(m, image.Rect(3, 0, 6, 4)); len(r) != 2 {
		t.Errorf("within a window: %d regions, want 2", len(r))
	}
}
