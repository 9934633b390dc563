// Package testfiles carries the third-party data the tests and benchmarks
// compare against, embedded so that a clone needs nothing beside it.
//
// rembg/ is rembg's own test images and rembg's u2netp outputs for them
// (MIT, rembg/LICENSE.txt), plus pymatting's alpha-matting references for
// the same images (rembg/ALPHA-MATTING.md says how they were made).
package testfiles

import (
	"embed"
	"image"
	"image/draw"
	"testing"
)

//go:embed rembg
var files embed.FS

// Rembg returns rembg/<name>; a missing file fails the test, never skips it.
func Rembg(t testing.TB, name string) []byte {
	t.Helper()
	data, err := files.ReadFile("rembg/" + name)
	if err != nil {
		t.Fatalf("testfiles: %v", err)
	}
	return data
}

// MatteDiff compares an alpha-matting cutout with a reference the way the
// issue's goal is stated: the mean absolute alpha difference over all
// pixels, and the mean absolute RGB difference where the reference's alpha
// is at least 16, with the largest of each.
type MatteDiff struct {
	AlphaMean, RGBMean float64
	AlphaMax, RGBMax   int
}

// CompareMatte computes MatteDiff; the images must have the same bounds.
func CompareMatte(t testing.TB, got, want image.Image) MatteDiff {
	t.Helper()
	g, w := nrgba(got), nrgba(want)
	if g.Rect.Size() != w.Rect.Size() {
		t.Fatalf("cutout is %v, reference %v", g.Rect.Size(), w.Rect.Size())
	}
	var d MatteDiff
	var n int
	for i := 0; i < len(g.Pix); i += 4 {
		a := absDiff(g.Pix[i+3], w.Pix[i+3])
		d.AlphaMean += float64(a)
		d.AlphaMax = max(d.AlphaMax, a)
		if w.Pix[i+3] >= 16 {
			for c := range 3 {
				v := absDiff(g.Pix[i+c], w.Pix[i+c])
				d.RGBMean += float64(v)
				d.RGBMax = max(d.RGBMax, v)
				n++
			}
		}
	}
	d.AlphaMean /= float64(len(g.Pix) / 4)
	d.RGBMean /= float64(n)
	return d
}

func nrgba(img image.Image) *image.NRGBA {
	if n, ok := img.(*image.NRGBA); ok && n.Rect.Min == (image.Point{}) {
		return n
	}
	b := img.Bounds()
	n := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(n, n.Rect, img, b.Min, draw.Src)
	return n
}

func absDiff(a, b byte) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// RembgFile returns rembg/<name>, for commands outside tests.
func RembgFile(name string) ([]byte, error) {
	return files.ReadFile("rembg/" + name)
}
