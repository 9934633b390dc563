package testfiles

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"sync"

	"golang.org/x/image/draw"
)

// Photo sizes for the codec and pipeline benchmarks. rembg's test images
// stop at 0.84 MP and the plants-1.jpg (987x1481) is not ours to
// ship, so the larger sizes are derived from cloth-1.jpg (MIT, rembg): the
// photo scaled with Catmull-Rom to the size, plus a fixed pseudo-random
// grain of +-4 levels so that the codecs see a photo's entropy rather than
// an upscale's smoothness. Only the standard library and x/image take part,
// so the bytes do not change when imgserve's own code does.
var (
	Photo03MP  = image.Pt(448, 688)   // 0.31 MP, cloth-1 scaled down
	Photo15MP  = image.Pt(987, 1481)  // 1.46 MP, plants-1.jpg's size
	Photo12MP  = image.Pt(3000, 4000) // 12 MP
	photoCache sync.Map               // image.Point -> *image.NRGBA
)

// PhotoNRGBA is cloth-1 at size, with grain; the result is shared: do not
// modify it.
func PhotoNRGBA(size image.Point) *image.NRGBA {
	if v, ok := photoCache.Load(size); ok {
		return v.(*image.NRGBA)
	}
	data, err := files.ReadFile("rembg/cloth-1.jpg")
	if err != nil {
		panic(err)
	}
	src, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		panic(err)
	}
	dst := image.NewNRGBA(image.Rectangle{Max: size})
	draw.CatmullRom.Scale(dst, dst.Rect, src, src.Bounds(), draw.Src, nil)
	rng := rand.New(rand.NewPCG(uint64(size.X), uint64(size.Y)))
	for i := 0; i < len(dst.Pix); i += 4 {
		for c := 0; c < 3; c++ {
			v := int(dst.Pix[i+c]) + rng.IntN(9) - 4
			dst.Pix[i+c] = byte(max(0, min(255, v)))
		}
	}
	v, _ := photoCache.LoadOrStore(size, dst)
	return v.(*image.NRGBA)
}

// PhotoJPEG is PhotoNRGBA as a quality-90 4:2:0 JPEG, as a camera or a
// web upload would have it.
func PhotoJPEG(size image.Point) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, PhotoNRGBA(size), &jpeg.Options{Quality: 90}); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// PhotoPNG is PhotoNRGBA as an opaque 8-bit RGB PNG, as image/png writes
// it at its default level (what most tools produce).
func PhotoPNG(size image.Point) []byte {
	m := PhotoNRGBA(size)
	rgb := image.NewRGBA(m.Rect) // opaque: image/png writes 8-bit RGB
	copy(rgb.Pix, m.Pix)
	var b bytes.Buffer
	if err := png.Encode(&b, rgb); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// PhotoName names a size for benchmark output: "0.3MP", "1.5MP", "12MP".
func PhotoName(size image.Point) string {
	mp := float64(size.X*size.Y) / 1e6
	if mp >= 10 {
		return fmt.Sprintf("%.0fMP", mp)
	}
	return fmt.Sprintf("%.1fMP", mp)
}
