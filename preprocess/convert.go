package preprocess

import (
	"image"
	"image/color"
)

// toNRGBA converts a freshly decoded image to a zero-based *image.NRGBA and
// reports whether any pixel is translucent. One canonical pixel layout keeps
// every later stage a tight loop over Pix. webpYUV selects libwebp's YUV
// conversion (limited range) instead of libjpeg's (full range JFIF).
func toNRGBA(src image.Image, webpYUV bool) (*image.NRGBA, bool) {
	switch m := src.(type) {
	case *image.YCbCr:
		if webpYUV {
			return webpToNRGBA(m, nil, 0), false
		}
		return jpegYCbCrToNRGBA(m), false
	case *image.NYCbCrA:
		if webpYUV {
			return webpToNRGBA(&m.YCbCr, m.A, m.AStride), hasTranslucent(m.A)
		}
	case *image.NRGBA:
		if m.Rect.Min == (image.Point{}) {
			return m, alphaBelow255(m.Pix, m.Stride, m.Rect.Dx(), m.Rect.Dy())
		}
	case *image.RGBA:
		if m.Rect.Min == (image.Point{}) && !alphaBelow255(m.Pix, m.Stride, m.Rect.Dx(), m.Rect.Dy()) {
			// Opaque premultiplied RGBA has the same bytes as NRGBA.
			return &image.NRGBA{Pix: m.Pix, Stride: m.Stride, Rect: m.Rect}, false
		}
	case *image.Gray:
		return grayToNRGBA(m), false
	case *image.Paletted:
		return palettedToNRGBA(m)
	case *image.NRGBA64:
		return nrgba64ToNRGBA(m)
	}
	return genericToNRGBA(src)
}

func alphaBelow255(pix []byte, stride, w, h int) bool {
	for y := 0; y < h; y++ {
		row := pix[y*stride : y*stride+4*w]
		for i := 3; i < len(row); i += 4 {
			if row[i] != 0xFF {
				return true
			}
		}
	}
	return false
}

func hasTranslucent(a []byte) bool {
	for _, v := range a {
		if v != 0xFF {
			return true
		}
	}
	return false
}

func grayToNRGBA(m *image.Gray) *image.NRGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		s := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):][:w]
		d := dst.Pix[y*dst.Stride : y*dst.Stride+4*w]
		for x, v := range s {
			d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = v, v, v, 0xFF
		}
	}
	return dst
}

// paletteLUT expands a palette to non-premultiplied RGBA, as PIL's
// P -> RGBA conversion does.
func paletteLUT(p color.Palette) *[256][4]byte {
	var lut [256][4]byte // indexes past the palette stay transparent black
	for i, c := range p {
		if i == 256 {
			break
		}
		n := color.NRGBAModel.Convert(c).(color.NRGBA)
		lut[i] = [4]byte{n.R, n.G, n.B, n.A}
	}
	return &lut
}

func palettedToNRGBA(m *image.Paletted) (*image.NRGBA, bool) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	lut := paletteLUT(m.Palette)
	var a byte = 0xFF
	for y := 0; y < h; y++ {
		s := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):][:w]
		d := dst.Pix[y*dst.Stride : y*dst.Stride+4*w]
		for x, v := range s {
			c := &lut[v]
			d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = c[0], c[1], c[2], c[3]
			a &= c[3]
		}
	}
	return dst, a != 0xFF
}

// nrgba64ToNRGBA keeps the high byte of each sample, as PIL does for
// 16-bit RGB(A) PNGs, without a premultiply round trip that would lose
// colour in nearly transparent pixels.
func nrgba64ToNRGBA(m *image.NRGBA64) (*image.NRGBA, bool) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	var a byte = 0xFF
	for y := 0; y < h; y++ {
		s := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):][:8*w]
		d := dst.Pix[y*dst.Stride : y*dst.Stride+4*w]
		for x := 0; x < w; x++ {
			d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = s[8*x], s[8*x+2], s[8*x+4], s[8*x+6]
			a &= s[8*x+6]
		}
	}
	return dst, a != 0xFF
}

// genericToNRGBA covers the rare decoder outputs (CMYK JPEG, 16-bit gray or
// opaque 16-bit RGB PNG, translucent RGBA) through the color models.
func genericToNRGBA(src image.Image) (*image.NRGBA, bool) {
	b := src.Bounds()
	dst := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	var a byte = 0xFF
	for y := 0; y < b.Dy(); y++ {
		d := dst.Pix[y*dst.Stride:]
		for x := 0; x < b.Dx(); x++ {
			c := color.NRGBAModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = c.R, c.G, c.B, c.A
			a &= c.A
		}
	}
	return dst, a != 0xFF
}

// ToNRGBA converts any image to a zero-based *image.NRGBA, for callers that
// build images outside Decode. The result may share pixels with img (when
// img already is a zero-based NRGBA, or an opaque RGBA). *image.YCbCr is
// converted as libjpeg would.
func ToNRGBA(img image.Image) *image.NRGBA {
	m, _ := toNRGBA(img, false)
	return m
}
