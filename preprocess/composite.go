package preprocess

import (
	"fmt"
	"image"
	"image/color"
	"io"
)

// PIL blends 8-bit channels with DIV255(a) = ((a+128)>>8 + a+128)>>8, an
// exact rounded a/255 for a in [0, 255*255]; using the same formula keeps
// our outputs byte-identical with rembg's.
func div255(a uint32) byte {
	a += 128
	return byte((a>>8 + a) >> 8)
}

// Cutout is rembg's naive_cutout: Image.composite(img, transparent, mask),
// i.e. PIL's paste with an "L" mask onto transparent black. Every channel,
// alpha included, is scaled by mask/255:
//
//	out.RGB = DIV255(img.RGB * m), out.A = DIV255(img.A * m)
//
// So alpha equals the mask for opaque inputs, and partially transparent
// edge pixels keep colour darkened by the mask: rembg's output, which is
// neither straight nor premultiplied alpha, reproduced exactly.
func Cutout(img *image.NRGBA, mask *image.Gray) (*image.NRGBA, error) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if mask.Rect.Dx() != w || mask.Rect.Dy() != h {
		return nil, fmt.Errorf("%w: Cutout: image %dx%d, mask %dx%d", ErrSize, w, h, mask.Rect.Dx(), mask.Rect.Dy())
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	forBands(h, 9*w*h, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			cutoutRow(dst.Pix[y*dst.Stride:][:4*w], img, mask, y)
		}
	})
	return dst, nil
}

// PutAlpha is rembg's putalpha_cutout, img.putalpha(mask): the image's
// colours unchanged, the mask as alpha. The result is a new image.
func PutAlpha(img *image.NRGBA, mask *image.Gray) (*image.NRGBA, error) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if mask.Rect.Dx() != w || mask.Rect.Dy() != h {
		return nil, fmt.Errorf("%w: PutAlpha: image %dx%d, mask %dx%d", ErrSize, w, h, mask.Rect.Dx(), mask.Rect.Dy())
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		d := dst.Pix[y*dst.Stride:][:4*w]
		copy(d, img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):][:4*w])
		for x, a := range mask.Pix[mask.PixOffset(mask.Rect.Min.X, mask.Rect.Min.Y+y):][:w] {
			d[4*x+3] = a
		}
	}
	return dst, nil
}

// cutoutRow writes row y of Cutout(img, mask) into d, which must be zero
// or hold the row already; img and mask have the same size.
func cutoutRow(d []byte, img *image.NRGBA, mask *image.Gray, y int) {
	w := len(d) / 4
	s := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):][:4*w]
	m := mask.Pix[mask.PixOffset(mask.Rect.Min.X, mask.Rect.Min.Y+y):][:w]
	for x, a := range m {
		q := d[4*x : 4*x+4 : 4*x+4]
		switch a {
		case 0:
			q[0], q[1], q[2], q[3] = 0, 0, 0, 0
		case 255:
			copy(q, s[4*x:4*x+4])
		default:
			p, k := s[4*x:4*x+4:4*x+4], uint32(a)
			q[0], q[1], q[2], q[3] = div255(uint32(p[0])*k), div255(uint32(p[1])*k), div255(uint32(p[2])*k), div255(uint32(p[3])*k)
		}
	}
}

// EncodeCutoutPNG writes Cutout(img, mask) as PNG without building the
// cutout image: each band of rows is composited as it is filtered, which
// saves a pass over the image and its memory.
func EncodeCutoutPNG(w io.Writer, img *image.NRGBA, mask *image.Gray) error {
	iw, ih := img.Rect.Dx(), img.Rect.Dy()
	if mask.Rect.Dx() != iw || mask.Rect.Dy() != ih {
		return fmt.Errorf("%w: EncodeCutoutPNG: image %dx%d, mask %dx%d", ErrSize, iw, ih, mask.Rect.Dx(), mask.Rect.Dy())
	}
	src := pngSource{row: func(dst []byte, y int) { cutoutRow(dst, img, mask, y) }}
	if cutoutBand != nil {
		src.band = func(f []byte, lo, hi int, cur, prev []byte) { cutoutBand(f, img, mask, lo, hi, cur, prev) }
	}
	return encodeSourcePNG(w, iw, ih, 4, src)
}

// cutoutBand, where set (composite_avx2_amd64.go), writes rows [lo, hi) of
// the cutout as Up-filtered scanlines into f, as pngBand.deflate would
// from cutoutRow, with cur and prev as scratch rows.
var cutoutBand func(f []byte, img *image.NRGBA, mask *image.Gray, lo, hi int, cur, prev []byte)

// ApplyBackgroundColor is rembg's apply_background_color:
//
//	colored = Image.new("RGBA", img.size, bg); colored.paste(img, mask=img)
//
// a paste using img's own alpha as the mask, blending all four channels:
// out = DIV255(bg*(255-a) + img*a). Note this is not Porter-Duff "over":
// with an opaque bg, edge pixels stay slightly translucent (alpha 128 gives
// 191) and cutout colours are scaled by alpha a second time. That is what
// rembg returns for bgcolor, so it is what we return.
func ApplyBackgroundColor(img *image.NRGBA, bg color.NRGBA) *image.NRGBA {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	b := [4]uint32{uint32(bg.R), uint32(bg.G), uint32(bg.B), uint32(bg.A)}
	for y := 0; y < h; y++ {
		s := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):][:4*w]
		d := dst.Pix[y*dst.Stride:][:4*w]
		for x := 0; x < w; x++ {
			p, q := s[4*x:4*x+4], d[4*x:4*x+4]
			a := uint32(p[3])
			switch a {
			case 0:
				q[0], q[1], q[2], q[3] = bg.R, bg.G, bg.B, bg.A
			case 255:
				copy(q, p)
			default:
				na := 255 - a
				q[0] = div255(b[0]*na + uint32(p[0])*a)
				q[1] = div255(b[1]*na + uint32(p[1])*a)
				q[2] = div255(b[2]*na + uint32(p[2])*a)
				q[3] = div255(b[3]*na + a*a)
			}
		}
	}
	return dst
}

// SubjectBounds is PIL's getbbox() on an RGBA cutout (alpha_only, the
// default since Pillow 10): the smallest rectangle holding every pixel with
// alpha > 0, in img's coordinates. ok is false when all pixels are
// transparent (PIL returns None).
func SubjectBounds(img *image.NRGBA) (r image.Rectangle, ok bool) {
	b := img.Rect
	minX, minY, maxX, maxY := b.Max.X, b.Max.Y, b.Min.X-1, b.Min.Y-1
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := img.Pix[img.PixOffset(b.Min.X, y):][:4*b.Dx()]
		first := -1
		for x := 3; x < len(row); x += 4 {
			if row[x] != 0 {
				first = x / 4
				break
			}
		}
		if first < 0 {
			continue
		}
		last := first
		for x := len(row) - 1; x > 4*first; x -= 4 {
			if row[x] != 0 {
				last = x / 4
				break
			}
		}
		minX, maxX = min(minX, b.Min.X+first), max(maxX, b.Min.X+last)
		minY, maxY = min(minY, y), y
	}
	if maxY < minY {
		return image.Rectangle{}, false
	}
	return image.Rect(minX, minY, maxX+1, maxY+1), true
}

// CropToSubject returns img cropped to SubjectBounds, sharing img's pixels
// (a SubImage). A fully transparent img is returned unchanged, since an
// empty PNG cannot be encoded.
func CropToSubject(img *image.NRGBA) *image.NRGBA {
	r, ok := SubjectBounds(img)
	if !ok {
		return img
	}
	return img.SubImage(r).(*image.NRGBA)
}

// StackVertically is rembg's get_concat_v_multi, which joins the results of
// a model that returns several masks (u2net_cloth_seg): the images one
// below the other on an RGBA canvas as wide as the first, grey masks
// becoming opaque grey. A single image is returned as it is (rembg saves
// a lone mask as a greyscale PNG).
func StackVertically(parts []image.Image) image.Image {
	if len(parts) == 1 {
		return parts[0]
	}
	w, h := 0, 0
	for i, p := range parts {
		if i == 0 {
			w = p.Bounds().Dx()
		}
		h += p.Bounds().Dy()
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	y0 := 0
	for _, p := range parts {
		b := p.Bounds()
		for y := range b.Dy() {
			d := dst.Pix[(y0+y)*dst.Stride:][:4*w]
			switch p := p.(type) {
			case *image.NRGBA:
				copy(d, p.Pix[p.PixOffset(b.Min.X, b.Min.Y+y):][:4*min(w, b.Dx())])
			case *image.Gray:
				row := p.Pix[p.PixOffset(b.Min.X, b.Min.Y+y):][:min(w, b.Dx())]
				for x, v := range row {
					d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = v, v, v, 255
				}
			default:
				for x := range min(w, b.Dx()) {
					c := color.NRGBAModel.Convert(p.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
					d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = c.R, c.G, c.B, c.A
				}
			}
		}
		y0 += b.Dy()
	}
	return dst
}
