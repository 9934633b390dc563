package preprocess

import (
	"encoding/binary"
	"image"
	"testing"
)

// wantOriented is the EXIF definition written out per pixel: where source
// pixel (x, y) of a w x h image lands after exif_transpose.
func wantOriented(o, x, y, w, h int) (int, int) {
	switch o {
	case 2:
		return w - 1 - x, y
	case 3:
		return w - 1 - x, h - 1 - y
	case 4:
		return x, h - 1 - y
	case 5:
		return y, x
	case 6:
		return h - 1 - y, x
	case 7:
		return h - 1 - y, w - 1 - x
	case 8:
		return y, w - 1 - x
	}
	return x, y
}

// TestOrientationPNG decodes a lossless PNG carrying an eXIf chunk with each
// orientation and checks every pixel's destination.
func TestOrientationPNG(t *testing.T) {
	const w, h = 5, 3
	src := distinctNRGBA(w, h)
	plain := encodeTestPNG(t, src)
	for o := 1; o <= 8; o++ {
		for _, bo := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
			data := insertPNGChunk(plain, pngChunk("eXIf", orientationTIFF(bo, uint16(o))))
			img, info, err := Decode(data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			dw, dh := w, h
			if o >= 5 {
				dw, dh = h, w
			}
			if info.Orientation != o || info.Width != dw || info.Height != dh || img.Rect != image.Rect(0, 0, dw, dh) {
				t.Fatalf("o=%d: info %+v bounds %v", o, info, img.Rect)
			}
			if cfg, _ := DecodeConfig(data, Limits{}); cfg != (Info{Format: FormatPNG, Width: dw, Height: dh, Orientation: o}) {
				t.Errorf("o=%d: DecodeConfig %+v", o, cfg)
			}
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					dx, dy := wantOriented(o, x, y, w, h)
					if img.NRGBAAt(dx, dy) != src.NRGBAAt(x, y) {
						t.Fatalf("o=%d %v: source (%d,%d) not at (%d,%d)", o, bo, x, y, dx, dy)
					}
				}
			}
		}
	}
}

func TestOrientationJPEGAndWebP(t *testing.T) {
	plain := encodeJPEG(t, synthNRGBA(32, 16), 90)
	data := insertJPEGSegment(plain, 0xE1, append([]byte("Exif\x00\x00"), orientationTIFF(binary.BigEndian, 6)...))
	_, info, err := Decode(data, Limits{})
	if err != nil || info.Orientation != 6 || info.Width != 16 || info.Height != 32 {
		t.Errorf("jpeg: %v %+v", err, info)
	}
	// An XMP APP1 first must not hide the EXIF one; a second EXIF APP1 is
	// ignored as PIL ignores it.
	xmp := append([]byte("http://ns.adobe.com/xap/1.0/\x00"), `<x:xmpmeta tiff:Orientation="3"/>`...)
	two := insertJPEGSegment(data, 0xE1, xmp)
	two = insertJPEGSegment(two, 0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
	if _, info, _ := Decode(two, Limits{}); info.Orientation != 6 {
		t.Errorf("jpeg with JFIF+XMP before EXIF: orientation %d", info.Orientation)
	}
	second := insertJPEGSegment(plain, 0xE1, append([]byte("Exif\x00\x00"), orientationTIFF(binary.LittleEndian, 3)...))
	second = insertJPEGSegment(second, 0xE1, append([]byte("Exif\x00\x00"), orientationTIFF(binary.LittleEndian, 8)...))
	if _, info, _ := Decode(second, Limits{}); info.Orientation != 8 {
		t.Errorf("two EXIF segments: orientation %d, want the first (8)", info.Orientation)
	}

	img, info, err := Decode(readTestdata(t, "exif6_8x4.webp"), Limits{})
	if err != nil || info.Orientation != 6 || img.Rect != image.Rect(0, 0, 4, 8) {
		t.Errorf("webp: %v %+v %v", err, info, img.Rect)
	}
}

func TestTIFFOrientationMalformed(t *testing.T) {
	le := binary.LittleEndian
	good := orientationTIFF(le, 6)
	if tiffOrientation(good) != 6 {
		t.Fatal("baseline")
	}
	long := buildTIFF(le, []tiffEntry{{tag: tagOrientation, typ: 4, count: 1, value: le.AppendUint32(nil, 8)}}, 0, nil)
	byteTyp := buildTIFF(le, []tiffEntry{{tag: tagOrientation, typ: 1, count: 1, value: []byte{5}}}, 0, nil)
	if tiffOrientation(long) != 8 || tiffOrientation(byteTyp) != 5 {
		t.Error("LONG/BYTE orientation not read")
	}
	for name, b := range map[string][]byte{
		"nil":          nil,
		"short":        good[:7],
		"bad order":    append([]byte("XX"), good[2:]...),
		"bad magic":    append([]byte("II\x2b\x00"), good[4:]...),
		"value 0":      orientationTIFF(le, 0),
		"value 9":      orientationTIFF(le, 9),
		"value 65535":  orientationTIFF(le, 65535),
		"ifd past end": append(append([]byte("II*\x00"), le.AppendUint32(nil, 1<<31)...), 0, 0),
		"ifd max":      append([]byte("II*\x00"), 0xFF, 0xFF, 0xFF, 0xFF),
		"count 0":      buildTIFF(le, []tiffEntry{{tag: tagOrientation, typ: 3, count: 0, value: le.AppendUint16(nil, 6)}}, 0, nil),
		"type ascii":   buildTIFF(le, []tiffEntry{{tag: tagOrientation, typ: 2, count: 2, value: []byte("6\x00")}}, 0, nil),
		"cut entry":    good[:30], // orientation entry spans bytes 22..33
	} {
		if o := tiffOrientation(b); o != 1 {
			t.Errorf("%s: orientation %d, want 1", name, o)
		}
	}
	// Container walkers must not read past the end of truncated segments.
	j := insertJPEGSegment(encodeJPEG(t, synthNRGBA(8, 8), 80), 0xE1, append([]byte("Exif\x00\x00"), good...))
	for n := 0; n < 60 && n < len(j); n++ {
		jpegEXIF(j[:n])
		pngEXIF(j[:n])
		webpEXIF(j[:n])
	}
}
