package inpaint

import (
	"image"
)

// span is a horizontal run of set mask pixels, [x0, x1) on row y.
type span struct{ y, x0, x1 int32 }

// region is one 8-connected component of the mask, as the external
// contours IOPaint's boxes_from_mask finds with OpenCV, held as its spans
// so pasting touches only its pixels.
type region struct {
	bounds image.Rectangle
	spans  []span
}

// findRegions labels the 8-connected components of the set pixels of m
// inside within. It works on runs rather than pixels (a union-find over the
// runs of consecutive rows), so its memory follows the mask's outline, not
// the image's area. Regions come in the order of their first row.
func findRegions(m *image.Gray, within image.Rectangle) []region {
	var (
		spans  []span
		parent []int32
	)
	find := func(i int32) int32 {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	prevLo, prevHi := 0, 0 // the previous row's spans: spans[prevLo:prevHi]
	for y := within.Min.Y; y < within.Max.Y; y++ {
		row := m.Pix[m.PixOffset(within.Min.X, y):][:within.Dx()]
		lo := len(spans)
		p := prevLo
		for x := nextSet(row, 0); x < len(row); x = nextSet(row, x) {
			start := x
			x = nextClear(row, x)
			s := span{y: int32(y), x0: int32(start + within.Min.X), x1: int32(x + within.Min.X)}
			id := int32(len(spans))
			spans = append(spans, s)
			parent = append(parent, id)
			// 8-connected: a span above touches s when it reaches from one
			// column left of s to one column right of it. Spans of a row are
			// sorted, so p only moves right.
			for p < prevHi && spans[p].x1 < s.x0 {
				p++
			}
			for q := p; q < prevHi && spans[q].x0 <= s.x1; q++ {
				a, b := find(int32(q)), find(id)
				if a != b {
					parent[max(a, b)] = min(a, b)
				}
			}
		}
		prevLo, prevHi = lo, len(spans)
	}
	index := map[int32]int{}
	var regions []region
	for i := range spans {
		root := find(int32(i))
		k, ok := index[root]
		if !ok {
			k = len(regions)
			index[root] = k
			regions = append(regions, region{})
		}
		s := spans[i]
		r := &regions[k]
		r.bounds = r.bounds.Union(image.Rect(int(s.x0), int(s.y), int(s.x1), int(s.y)+1))
		r.spans = append(r.spans, s)
	}
	return regions
}
