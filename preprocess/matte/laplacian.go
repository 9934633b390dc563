package matte

import (
	"context"
	"errors"
	"fmt"
	"image"
)

// The matting Laplacian of a 3x3 window couples pixels up to 2 apart, so a
// row has 25 entries. The matrix is symmetric: each unknown pixel stores its
// diagonal and its 12 "forward" entries (the neighbours after it in raster
// order); the other 12 are read from the neighbour that stores them.
const (
	laplacianEpsilon = 1e-7 // cf_laplacian's default regularisation
	windowArea       = 9    // (2r+1)^2 for radius 1
	stored           = 13   // diagonal + forward neighbours
)

// forward lists the forward offsets (dx, dy) in raster order; slot k+1
// of a row holds the entry for forward[k].
var forward = [stored - 1][2]int{
	{1, 0}, {2, 0},
	{-2, 1}, {-1, 1}, {0, 1}, {1, 1}, {2, 1},
	{-2, 2}, {-1, 2}, {0, 2}, {1, 2}, {2, 2},
}

// forwardSlot[dy][dx+2] is the slot of a forward offset, 0 for others.
var forwardSlot = func() (t [3][5]int) {
	for k, o := range forward {
		t[o[1]][o[0]+2] = k + 1
	}
	return t
}()

// ErrTrimap is pymatting's ValueError for a trimap without foreground or
// without background: rembg then falls back to the plain cutout.
var ErrTrimap = errors.New("trimap has no foreground or no background")

// system is estimate_alpha_cf's linear system, restricted as pymatting
// restricts it to the unknown pixels U of the trimap, with the known ones K
// fixed:
//
//	L_U x_U = -R m,   L = [[L_U, R], [R^T, L_K]],   m = is_fg[K]
//
// where L is the closed-form matting Laplacian (cf_laplacian, radius 1,
// epsilon 1e-7) built only from windows that hold an unknown pixel.
type system struct {
	w, h  int
	index []int32   // pixel -> its unknown index, or -1 when known
	pixel []int32   // unknown index -> pixel
	upper []float64 // stored*u + slot: row u of L_U (diagonal, forward)
	rhs   []float64 // -R m
}

// n is the number of unknowns.
func (s *system) n() int { return len(s.pixel) }

// countUnknown counts the trimap's unknown pixels and checks that it has
// both foreground and background (trimap_split's ValueErrors).
func countUnknown(trimap *image.Gray) (int, error) {
	var fg, bg, unknown int
	w, h := trimap.Rect.Dx(), trimap.Rect.Dy()
	for y := 0; y < h; y++ {
		for _, v := range trimap.Pix[trimap.PixOffset(trimap.Rect.Min.X, trimap.Rect.Min.Y+y):][:w] {
			switch classify(v) {
			case Foreground:
				fg++
			case Background:
				bg++
			default:
				unknown++
			}
		}
	}
	if fg == 0 || bg == 0 {
		return unknown, ErrTrimap
	}
	return unknown, nil
}

// classify is trimap_split on trimap/255: at least 0.9 is foreground, at
// most 0.1 background, anything else unknown.
func classify(v byte) byte {
	switch t := float64(v) / 255; {
	case t >= 0.9:
		return Foreground
	case t <= 0.1:
		return Background
	}
	return Unknown
}

// buildSystem assembles the system for img (its RGB, divided by 255) and
// trimap, which must have the same size.
func buildSystem(ctx context.Context, img *image.NRGBA, trimap *image.Gray) (*system, error) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	s := &system{w: w, h: h, index: make([]int32, w*h)}
	unknown, _ := countUnknown(trimap)
	s.pixel = make([]int32, 0, unknown)
	class := make([]byte, w*h)
	var fg, bg int
	for y := 0; y < h; y++ {
		row := trimap.Pix[trimap.PixOffset(trimap.Rect.Min.X, trimap.Rect.Min.Y+y):][:w]
		for x, v := range row {
			i := y*w + x
			class[i] = classify(v)
			s.index[i] = -1
			switch class[i] {
			case Unknown:
				s.index[i] = int32(len(s.pixel))
				s.pixel = append(s.pixel, int32(i))
			case Foreground:
				fg++
			default:
				bg++
			}
		}
	}
	if fg == 0 || bg == 0 {
		return nil, fmt.Errorf("%w: %w", ErrFallback, ErrTrimap)
	}
	s.upper = make([]float64, stored*s.n())
	s.rhs = make([]float64, s.n())

	var unit [256]float64 // img / 255.0, as rembg normalises
	for v := range unit {
		unit[v] = float64(v) / 255.0
	}
	var (
		c   [windowArea][3]float64 // centred window colours
		pix [windowArea]int        // their pixel indices
	)
	for cy := 1; cy < h-1; cy++ {
		if cy%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		for cx := 1; cx < w-1; cx++ {
			any := false
			for k := range windowArea {
				p := (cy+k/3-1)*w + cx + k%3 - 1
				pix[k] = p
				any = any || class[p] == Unknown
			}
			if !any {
				continue // cf_laplacian skips windows that are entirely known
			}
			for ch := range 3 {
				var sum float64
				for k := range windowArea {
					o := img.PixOffset(img.Rect.Min.X+pix[k]%w, img.Rect.Min.Y+pix[k]/w)
					sum += unit[img.Pix[o+ch]]
				}
				for k := range windowArea {
					o := img.PixOffset(img.Rect.Min.X+pix[k]%w, img.Rect.Min.Y+pix[k]/w)
					c[k][ch] = unit[img.Pix[o+ch]] - sum/windowArea
				}
			}
			m := inverseCovariance(&c)
			s.addWindow(&c, &pix, &m, class)
		}
	}
	return s, nil
}

// inverseCovariance is the inverse of the window's colour covariance plus
// epsilon/9 on the diagonal, with cf_laplacian's formulas and summation
// order so that the rounding matches.
func inverseCovariance(c *[windowArea][3]float64) [6]float64 {
	a00, a01, a02 := laplacianEpsilon, 0.0, 0.0
	a11, a12, a22 := laplacianEpsilon, 0.0, laplacianEpsilon
	for k := range windowArea {
		a00 += c[k][0] * c[k][0]
		a01 += c[k][0] * c[k][1]
		a02 += c[k][0] * c[k][2]
		a11 += c[k][1] * c[k][1]
		a12 += c[k][1] * c[k][2]
		a22 += c[k][2] * c[k][2]
	}
	a00 /= windowArea
	a01 /= windowArea
	a02 /= windowArea
	a11 /= windowArea
	a12 /= windowArea
	a22 /= windowArea
	det := a00*a12*a12 + a01*a01*a22 + a02*a02*a11 - a00*a11*a22 - 2*a01*a02*a12
	inv := 1.0 / det
	return [6]float64{
		(a12*a12 - a11*a22) * inv, // m00
		(a01*a22 - a02*a12) * inv, // m01
		(a02*a11 - a01*a12) * inv, // m02
		(a02*a02 - a00*a22) * inv, // m11
		(a00*a12 - a01*a02) * inv, // m12
		(a01*a01 - a00*a11) * inv, // m22
	}
}

// addWindow adds one window's contributions to the rows of its unknown
// pixels: L_ij += [i==j] - (1 + c_i^T M c_j) / 9.
func (s *system) addWindow(c *[windowArea][3]float64, pix *[windowArea]int, m *[6]float64, class []byte) {
	for i := range windowArea {
		u := s.index[pix[i]]
		if u < 0 {
			continue
		}
		si, ti, ui := c[i][0], c[i][1], c[i][2]
		c0 := m[0]*si + m[1]*ti + m[2]*ui
		c1 := m[1]*si + m[3]*ti + m[4]*ui
		c2 := m[2]*si + m[4]*ti + m[5]*ui
		row := s.upper[stored*int(u):][:stored]
		for j := range windowArea {
			temp := c0*c[j][0] + c1*c[j][1] + c2*c[j][2]
			value := -(1 + temp) / windowArea
			if i == j {
				value += 1
			}
			switch {
			case s.index[pix[j]] >= 0:
				dx, dy := j%3-i%3, j/3-i/3
				switch {
				case dy < 0 || dy == 0 && dx < 0:
					// stored in pix[j]'s row
				case dx == 0 && dy == 0:
					row[0] += value
				default:
					row[forwardSlot[dy][dx+2]] += value
				}
			case class[pix[j]] == Foreground:
				s.rhs[u] -= value
			}
		}
	}
}

// neighbour returns the unknown index of the pixel at offset (dx, dy) from
// unknown u, or -1 when it is outside the image or known.
func (s *system) neighbour(u int, dx, dy int) int32 {
	p := int(s.pixel[u])
	x, y := p%s.w+dx, p/s.w+dy
	if x < 0 || y < 0 || x >= s.w || y >= s.h {
		return -1
	}
	return s.index[y*s.w+x]
}
