package diffusion

import (
	"image"

	"github.com/imgserve/imgserve/preprocess"
)

// MaskFromImage reads an edit mask: 255 where the image may change. A mask
// with transparency follows OpenAI's images API: fully transparent pixels
// are edited, opaque ones kept, partial alpha blends. A mask without
// transparency is read by its brightness: white is edited, black kept (as
// IOPaint's and LaMa's masks).
func MaskFromImage(m *image.NRGBA) *image.Gray {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	out := image.NewGray(image.Rect(0, 0, w, h))
	transparent := false
	for y := 0; y < h && !transparent; y++ {
		row := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):][:4*w]
		for x := 3; x < len(row); x += 4 {
			if row[x] != 255 {
				transparent = true
				break
			}
		}
	}
	for y := range h {
		row := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):][:4*w]
		dst := out.Pix[y*out.Stride:][:w]
		for x := range w {
			p := row[4*x : 4*x+4]
			if transparent {
				dst[x] = 255 - p[3]
			} else {
				// ITU-R 601 luma, as PIL's convert("L").
				dst[x] = byte((uint32(p[0])*299 + uint32(p[1])*587 + uint32(p[2])*114 + 500) / 1000)
			}
		}
	}
	return out
}

// Composite puts gen over orig where mask allows: gen is resized to orig's
// size (Lanczos) if it differs, then every pixel is
// orig*(255-m)/255 + gen*m/255, so a pixel with mask 0 is orig's exactly
// (alpha included) and one with mask 255 is gen's, opaque.
func Composite(orig, gen *image.NRGBA, mask *image.Gray) *image.NRGBA {
	w, h := orig.Rect.Dx(), orig.Rect.Dy()
	if gen.Rect.Dx() != w || gen.Rect.Dy() != h {
		gen = preprocess.ResizeRGB(gen, w, h, preprocess.Lanczos3)
	}
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		o := orig.Pix[orig.PixOffset(orig.Rect.Min.X, orig.Rect.Min.Y+y):][:4*w]
		g := gen.Pix[gen.PixOffset(gen.Rect.Min.X, gen.Rect.Min.Y+y):][:4*w]
		m := mask.Pix[mask.PixOffset(mask.Rect.Min.X, mask.Rect.Min.Y+y):][:w]
		d := out.Pix[y*out.Stride:][:4*w]
		for x, a := range m {
			switch a {
			case 0:
				copy(d[4*x:4*x+4], o[4*x:4*x+4])
			case 255:
				copy(d[4*x:4*x+3], g[4*x:4*x+3])
				d[4*x+3] = 255
			default:
				k, j := uint32(a), uint32(255-a)
				for c := range 3 {
					d[4*x+c] = byte((uint32(o[4*x+c])*j + uint32(g[4*x+c])*k + 127) / 255)
				}
				d[4*x+3] = byte((uint32(o[4*x+3])*j + 255*k + 127) / 255)
			}
		}
	}
	return out
}
