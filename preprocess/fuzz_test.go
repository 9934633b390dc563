package preprocess

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"strings"
	"testing"
)

// FuzzDecode: no input may panic, every failure must be one of the typed
// errors, and every success must be a well-formed image that the rest of
// the pipeline accepts. Run it with
//
//	go test ./preprocess -run '^$' -fuzz FuzzDecode -fuzztime 60s
func FuzzDecode(f *testing.F) {
	src := synthNRGBA(8, 6)
	pal := image.NewPaletted(src.Rect, color.Palette{color.Black, color.White, color.Transparent})
	for i := range pal.Pix {
		pal.Pix[i] = byte(i % 3)
	}
	jpg := encodeJPEG(f, src, 80)
	seeds := [][]byte{
		jpg,
		insertJPEGSegment(jpg, 0xE1, append([]byte("Exif\x00\x00"), gpsTIFF(binary.BigEndian, 6)...)),
		encodeTestPNG(f, src),
		insertPNGChunk(encodeTestPNG(f, pal), pngChunk("eXIf", orientationTIFF(binary.LittleEndian, 5))),
		encodeTestPNG(f, image.NewGray16(image.Rect(0, 0, 3, 2))),
		encodeGIF(f, pal),
		encodeBMP(f, src),
		encodeBMP(f, pal),
		readTestdata(f, "lossless_20x14.webp"),
		readTestdata(f, "alpha_61x37.webp"),
		readTestdata(f, "exif6_8x4.webp"),
		readTestdata(f, "j420p_61x37.jpg"),
		pngBomb(60000, 60000),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	lim := Limits{MaxPixels: 1 << 20, MaxDimension: 4096}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, info, err := Decode(data, lim)
		if err != nil {
			if img != nil {
				t.Fatal("image returned with an error")
			}
			if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrUnsupportedFormat) &&
				!errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error: %v", err)
			}
			if strings.Contains(err.Error(), "decoder panic") {
				// Recovered, so harmless in production, but worth a report
				// upstream: fail so the fuzzer saves the input.
				t.Fatalf("third-party decoder panicked: %v", err)
			}
			return
		}
		w, h := info.Width, info.Height
		if img.Rect != image.Rect(0, 0, w, h) || len(img.Pix) < 4*w*h || img.Stride < 4*w {
			t.Fatalf("malformed image %v stride %d len %d for info %+v", img.Rect, img.Stride, len(img.Pix), info)
		}
		if cfg, err := DecodeConfig(data, lim); err != nil || cfg.Width != w || cfg.Height != h {
			t.Fatalf("DecodeConfig disagrees: %+v %v", cfg, err)
		}
		small := ResizeRGB(img, 5, 3, Lanczos3)
		dst := make([]float32, 3*5*3)
		if err := PackNCHW(dst, small, NormRembg); err != nil {
			t.Fatal(err)
		}
		mask := image.NewGray(img.Rect)
		cut, err := Cutout(img, mask)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := EncodePNG(&b, CropToSubject(cut)); err != nil {
			t.Fatal(err)
		}
	})
}
