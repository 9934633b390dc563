package inpaint

import (
	"encoding/binary"
	"image"
)

// dilate grows the mask in place by r pixels in every direction (a square
// structuring element, so a box grows into a box r larger on each side) and
// makes every set pixel 255. It returns the bounds of the set pixels after
// dilation, empty when there are none.
//
// Its cost follows the mask, not the image: a 12 MP mask with a few boxes
// spread over it costs little more than the boxes. The horizontal pass
// works on runs; the vertical pass keeps a per-column count of set pixels
// in the window of 2r+1 rows (so it does not depend on r) and touches only
// the columns that the rows in the window reach.
func dilate(m *image.Gray, r int) image.Rectangle {
	// Horizontal pass, in the one scan of the whole mask: each row's runs
	// grown by r, kept over the row's extent [lo, hi) only, so that memory
	// follows the mask. Columns are m's.
	type extent struct {
		lo, hi int
		row    []byte // columns lo..hi
	}
	ext := make([]extent, m.Rect.Dy())
	var (
		runs [][2]int
		b    image.Rectangle // of the set pixels before dilation
	)
	w := m.Rect.Dx()
	for i := range ext {
		src := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+i):][:w]
		runs = runs[:0]
		for x := nextSet(src, 0); x < len(src); x = nextSet(src, x) {
			start := x
			x = nextClear(src, x)
			runs = append(runs, [2]int{start, x})
		}
		if len(runs) == 0 {
			continue
		}
		y := m.Rect.Min.Y + i
		b = b.Union(image.Rect(m.Rect.Min.X+runs[0][0], y, m.Rect.Min.X+runs[len(runs)-1][1], y+1))
		e := extent{lo: max(runs[0][0]-r, 0), hi: min(runs[len(runs)-1][1]+r, w)}
		e.row = make([]byte, e.hi-e.lo)
		for _, run := range runs {
			fill255(e.row[max(run[0]-r, 0)-e.lo : min(run[1]+r, w)-e.lo])
		}
		ext[i] = e
	}
	if b.Empty() {
		return b
	}
	out := b.Inset(-r).Intersect(m.Rect)
	// Vertical pass: output row y is set where any tmp row in [y-r, y+r] is.
	count := make([]uint16, w)
	add := func(i int, d uint16) { // d is 1 or, wrapping, -1
		if i < 0 || i >= len(ext) {
			return
		}
		c := count[ext[i].lo:ext[i].hi]
		for j, v := range ext[i].row {
			if v != 0 {
				c[j] += d
			}
		}
	}
	const minus1 = ^uint16(0)
	first, last := out.Min.Y-m.Rect.Min.Y, out.Max.Y-m.Rect.Min.Y // rows of ext
	for i := first - r; i < first+r; i++ {
		add(i, 1)
	}
	for i := first; i < last; i++ {
		add(i+r, 1)
		// Columns outside the extents of the window's rows hold no set
		// pixel before or after: row i's own pixels lie in its extent.
		lo, hi := w, 0
		for j := max(0, i-r); j <= min(len(ext)-1, i+r); j++ {
			if ext[j].row != nil {
				lo, hi = min(lo, ext[j].lo), max(hi, ext[j].hi)
			}
		}
		if lo < hi {
			dst := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+i):][:w]
			for x := lo; x < hi; x++ {
				if count[x] != 0 {
					dst[x] = 255
				} else {
					dst[x] = 0
				}
			}
		}
		add(i-r, minus1)
	}
	return out // a square dilation grows the bounds by r, clipped
}

func fill255(b []byte) {
	for i := range b {
		b[i] = 255
	}
}

// setBounds is the smallest rectangle holding every non-zero pixel of m.
func setBounds(m *image.Gray) image.Rectangle {
	var b image.Rectangle
	w := m.Rect.Dx()
	for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
		row := m.Pix[m.PixOffset(m.Rect.Min.X, y):][:w]
		first := nextSet(row, 0)
		if first == w {
			continue
		}
		last := lastSet(row[first:]) + first
		b = b.Union(image.Rect(m.Rect.Min.X+first, y, m.Rect.Min.X+last+1, y+1))
	}
	return b
}

// Masks are mostly zeros: the scans below skip eight bytes at a time.

// nextSet is the index of the first non-zero byte of row at or after i,
// or len(row).
func nextSet(row []byte, i int) int {
	for ; i+8 <= len(row) && binary.LittleEndian.Uint64(row[i:]) == 0; i += 8 {
	}
	for ; i < len(row) && row[i] == 0; i++ {
	}
	return i
}

// nextClear is the index of the first zero byte of row at or after i, or
// len(row).
func nextClear(row []byte, i int) int {
	for ; i+8 <= len(row) && !hasZeroByte(binary.LittleEndian.Uint64(row[i:])); i += 8 {
	}
	for ; i < len(row) && row[i] != 0; i++ {
	}
	return i
}

// lastSet is the index of the last non-zero byte of row, which has one.
func lastSet(row []byte) int {
	i := len(row)
	for ; i >= 8 && binary.LittleEndian.Uint64(row[i-8:]) == 0; i -= 8 {
	}
	for i--; row[i] == 0; i-- {
	}
	return i
}

func hasZeroByte(v uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	return (v-lo)&^v&hi != 0
}
