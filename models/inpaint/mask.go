package inpaint

import (
	"encoding/binary"
	"image"
	"slices"
)

// Masks are *image.Gray of the image's size, 255 where to fill and 0
// elsewhere.

// Fill thresholds of an uploaded mask: white means fill, as in IOPaint, whose
// mask goes through PIL's convert("L") and a threshold at 127 (so 128 and
// up fill). IOPaint's convert("L") ignores alpha; here a transparent pixel
// never fills, so a white-on-transparent brush layer and a white-on-black
// mask both work, and a transparent pixel whose hidden colour happens to be
// white is not filled by surprise.
const (
	fillLuma  = 128
	fillAlpha = 128
)

// Pixels as little-endian uint32s of their R, G, B, A bytes.
const (
	opaqueBlack = 0xFF000000
	opaqueWhite = 0xFFFFFFFF
)

// MaskFromImage binarises an uploaded mask image: a pixel fills when its
// luminance (ITU-R 601-2, PIL's "L" conversion, on the non-premultiplied
// colour) is at least 128 and its alpha is at least 128.
func MaskFromImage(src *image.NRGBA) *image.Gray {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		row := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+y):][:4*w]
		dst := m.Pix[y*m.Stride:][:w]
		for x := range dst {
			// Masks are mostly opaque black and white: those skip the sum.
			switch v := binary.LittleEndian.Uint32(row[4*x:]); v {
			case opaqueBlack:
				continue
			case opaqueWhite:
				dst[x] = 255
				continue
			}
			p := row[4*x : 4*x+4 : 4*x+4]
			// PIL: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
			l := (uint32(p[0])*19595 + uint32(p[1])*38470 + uint32(p[2])*7471 + 0x8000) >> 16
			if l >= fillLuma && p[3] >= fillAlpha {
				dst[x] = 255
			}
		}
	}
	return m
}

// Box is a rectangle in pixels, [x, y, w, h] as clients send them.
type Box [4]float64

// MaxBoxes bounds the boxes of one request.
const MaxBoxes = 256

// MaskFromBoxes draws boxes onto an empty w x h mask. Each box must have a
// positive size and lie inside the image; fractional edges grow outwards to
// whole pixels. Each pixel is written once however the boxes overlap, so
// drawing costs the image's area plus rows times boxes, never boxes times
// area.
func MaskFromBoxes(w, h int, boxes []Box) (*image.Gray, error) {
	if len(boxes) == 0 {
		return nil, badInput("boxes is empty: give at least one [x, y, w, h] rectangle")
	}
	if len(boxes) > MaxBoxes {
		return nil, badInput("%d boxes; the limit is %d", len(boxes), MaxBoxes)
	}
	bounds := image.Rect(0, 0, w, h)
	rects := make([]image.Rectangle, len(boxes))
	for i, b := range boxes {
		r, err := boxRect(b)
		if err != nil {
			return nil, badInput("box %d %v: %v", i, b, err)
		}
		if !r.In(bounds) {
			return nil, badInput("box %d %v lies outside the %dx%d image", i, b, w, h)
		}
		rects[i] = r
	}
	slices.SortFunc(rects, func(a, b image.Rectangle) int { return a.Min.X - b.Min.X })
	m := image.NewGray(bounds)
	for y := 0; y < h; y++ {
		row := m.Pix[y*m.Stride:][:w]
		filled := 0 // row[:filled] is drawn as far as the boxes so far reach
		for _, r := range rects {
			if y < r.Min.Y || y >= r.Max.Y || r.Max.X <= filled {
				continue
			}
			seg := row[max(r.Min.X, filled):r.Max.X]
			for x := range seg {
				seg[x] = 255
			}
			filled = r.Max.X
		}
	}
	return m, nil
}

func boxRect(b Box) (image.Rectangle, error) {
	for _, v := range b {
		if v != v || v < -maxTrigger*4 || v > maxTrigger*4 { // NaN or absurd
			return image.Rectangle{}, errBoxValue
		}
	}
	if b[2] <= 0 || b[3] <= 0 {
		return image.Rectangle{}, errBoxSize
	}
	x0, y0 := floor(b[0]), floor(b[1])
	x1, y1 := ceil(b[0]+b[2]), ceil(b[1]+b[3])
	return image.Rect(x0, y0, x1, y1), nil
}

var (
	errBoxValue = badInput("coordinates must be finite numbers within the image")
	errBoxSize  = badInput("width and height must be positive")
)

func floor(v float64) int {
	i := int(v)
	if float64(i) > v {
		i--
	}
	return i
}

func ceil(v float64) int {
	i := int(v)
	if float64(i) < v {
		i++
	}
	return i
}
