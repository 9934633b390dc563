package preprocess

import "image"

// applyOrientation returns img transformed so that it displays upright, for
// EXIF orientations 2..8, as PIL's ImageOps.exif_transpose does: 2 mirror,
// 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse,
// 8 rotate 90 counter-clockwise. Orientation 1 returns img itself.
func applyOrientation(img *image.NRGBA, o int) *image.NRGBA {
	if o < 2 || o > 8 {
		return img
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewNRGBA(image.Rect(0, 0, dw, dh))
	// For each source pixel (x, y), the destination is base + x*dx + y*dy,
	// in units of 4-byte pixels: one loop serves all seven transforms.
	var base, dx, dy int
	switch o {
	case 2: // (w-1-x, y)
		base, dx, dy = w-1, -1, dw
	case 3: // (w-1-x, h-1-y)
		base, dx, dy = (h-1)*dw+w-1, -1, -dw
	case 4: // (x, h-1-y)
		base, dx, dy = (h-1)*dw, 1, -dw
	case 5: // (y, x)
		base, dx, dy = 0, dw, 1
	case 6: // (h-1-y, x)
		base, dx, dy = h-1, dw, -1
	case 7: // (h-1-y, w-1-x)
		base, dx, dy = (w-1)*dw+h-1, -dw, -1
	case 8: // (y, w-1-x)
		base, dx, dy = (w-1)*dw, -dw, 1
	}
	for y := 0; y < h; y++ {
		src := img.Pix[y*img.Stride : y*img.Stride+4*w]
		d := base + y*dy
		for x := 0; x < w; x++ {
			copy(dst.Pix[4*d:4*d+4], src[4*x:4*x+4])
			d += dx
		}
	}
	return dst
}
