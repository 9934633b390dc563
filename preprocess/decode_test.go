package preprocess

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestDecodeFormats(t *testing.T) {
	src := synthNRGBA(37, 23)
	pal := image.NewPaletted(src.Rect, color.Palette{color.Black, color.White, color.NRGBA{200, 10, 10, 255}})
	for i := range pal.Pix {
		pal.Pix[i] = byte(i % 3)
	}
	cases := []struct {
		name  string
		data  []byte
		f     Format
		w, h  int
		exact bool // lossless: pixels must equal src (or pal)
	}{
		{"jpeg", encodeJPEG(t, src, 95), FormatJPEG, 37, 23, false},
		{"png", encodeTestPNG(t, src), FormatPNG, 37, 23, true},
		{"gif", encodeGIF(t, pal), FormatGIF, 37, 23, true},
		{"bmp", encodeBMP(t, src), FormatBMP, 37, 23, true},
		{"webp lossy", readTestdata(t, "lossy_61x37.webp"), FormatWebP, 61, 37, false},
		{"webp lossless", readTestdata(t, "lossless_20x14.webp"), FormatWebP, 20, 14, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, info, err := Decode(c.data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != c.f || info.Width != c.w || info.Height != c.h || info.Orientation != 1 {
				t.Fatalf("info %+v", info)
			}
			if img.Rect != image.Rect(0, 0, c.w, c.h) {
				t.Fatalf("bounds %v", img.Rect)
			}
			if DetectFormat(c.data) != c.f {
				t.Fatalf("DetectFormat %q", DetectFormat(c.data))
			}
			if !c.exact {
				return
			}
			var want image.Image = src
			if c.f == FormatGIF {
				want = pal
			}
			for y := 0; y < c.h; y++ {
				for x := 0; x < c.w; x++ {
					if got, w := img.NRGBAAt(x, y), color.NRGBAModel.Convert(want.At(x, y)); got != w {
						t.Fatalf("(%d,%d) = %v, want %v", x, y, got, w)
					}
				}
			}
		})
	}
}

// TestDecodeMatchesPIL compares with PIL 9.4's decode (libjpeg-turbo,
// libwebp) of the same files: WebP is bit-exact thanks to the ported
// upsampler; JPEG is bit-exact with libjpeg-turbo (PIL's own decoder) and
// differs only by the IDCT, by a few levels at most, in the pure-Go build.
func TestDecodeMatchesPIL(t *testing.T) {
	jpegDiff := 3
	if nativeJPEG {
		jpegDiff = 0
	}
	for _, c := range []struct {
		file    string
		maxDiff int
	}{
		{"lossy_61x37.webp", 0},
		{"alpha_61x37.webp", 0},
		{"lossless_20x14.webp", 0},
		{"j420_61x37.jpg", jpegDiff},
		{"j422_61x37.jpg", jpegDiff},
		{"j440_61x37.jpg", jpegDiff},
		{"j420p_61x37.jpg", jpegDiff},
	} {
		img, info, err := Decode(readTestdata(t, c.file), Limits{})
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		want := readTestdata(t, strings.TrimSuffix(strings.TrimSuffix(c.file, ".webp"), ".jpg")+".pil.rgba")
		if len(want) != len(img.Pix) {
			t.Fatalf("%s: %d bytes, PIL %d", c.file, len(img.Pix), len(want))
		}
		maxd, n := 0, 0
		for i := range want {
			d := int(want[i]) - int(img.Pix[i])
			if d != 0 {
				n++
			}
			maxd = max(maxd, d, -d)
		}
		if maxd > c.maxDiff || n > len(want)/20 {
			t.Errorf("%s: max diff %d over %d samples, want <= %d", c.file, maxd, n, c.maxDiff)
		}
		if wantAlpha := strings.HasPrefix(c.file, "alpha") || strings.HasPrefix(c.file, "lossless"); info.HasAlpha != wantAlpha {
			t.Errorf("%s: HasAlpha %v", c.file, info.HasAlpha)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	jpg := encodeJPEG(t, synthNRGBA(16, 16), 80)
	manyScans := append(append([]byte{}, jpg...), bytes.Repeat([]byte{0xFF, 0xDA}, maxJPEGScans+1)...)
	cases := []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"nil", nil, ErrEmpty, ""},
		{"empty", []byte{}, ErrEmpty, ""},
		{"text", []byte("hello, world"), ErrUnsupportedFormat, ""},
		{"html", []byte("  <html><body>hi</body></html>"), ErrUnsupportedFormat, "svg/xml/html"},
		{"tiff", []byte("II*\x00\x08\x00\x00\x00\x00\x00"), ErrUnsupportedFormat, "tiff"},
		{"heic", []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00"), ErrUnsupportedFormat, "heif"},
		{"avif", []byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00"), ErrUnsupportedFormat, "avif"},
		{"BM text", []byte("BMW is a car brand, not a bitmap"), ErrUnsupportedFormat, ""},
		{"animated webp", readTestdata(t, "anim.webp"), ErrUnsupportedFormat, "animated"},
		{"jpeg magic only", []byte{0xFF, 0xD8, 0xFF}, ErrCorrupt, ""},
		{"png magic only", []byte("\x89PNG\r\n\x1a\n"), ErrCorrupt, ""},
		{"jpeg scan bomb", manyScans, ErrCorrupt, "scans"},
	}
	for _, c := range cases {
		_, _, err := Decode(c.data, Limits{})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
			continue
		}
		if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %q lacks %q", c.name, err, c.msg)
		}
		if _, err2 := DecodeConfig(c.data, Limits{}); !errors.Is(err2, c.want) {
			t.Errorf("%s: DecodeConfig err %v, want %v", c.name, err2, c.want)
		}
	}
}

func TestDecodeLimits(t *testing.T) {
	data := encodeTestPNG(t, synthNRGBA(300, 200))
	for _, c := range []struct {
		lim Limits
		ok  bool
	}{
		{Limits{}, true},
		{Limits{MaxPixels: 60_000}, true},
		{Limits{MaxPixels: 59_999}, false},
		{Limits{MaxDimension: 300}, true},
		{Limits{MaxDimension: 299}, false},
		{Limits{MaxPixels: 1 << 30, MaxDimension: 200}, false},
	} {
		_, _, err := Decode(data, c.lim)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrTooLarge)) {
			t.Errorf("%+v: err %v", c.lim, err)
		}
	}
}

// pngBomb is a valid PNG header declaring w x h RGBA pixels followed by a
// tiny IDAT (a few rows of zeros) and IEND: decoding it for real would
// allocate w*h*4 bytes (14.4 GB for 60000x60000).
func pngBomb(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA, no interlace
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 4*(1+4*int(w)))) // four filtered rows
	zw.Close()
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, pngChunk("IHDR", ihdr)...)
	b = append(b, pngChunk("IDAT", z.Bytes())...)
	return append(b, pngChunk("IEND", nil)...)
}

func TestDecodePNGBombRefusedFromHeader(t *testing.T) {
	bomb := pngBomb(60000, 60000)
	if len(bomb) > 4096 {
		t.Fatalf("bomb is %d bytes; the point is a small file", len(bomb))
	}
	if _, _, err := Decode(bomb, Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
	// Allocation counts and bytes stay tiny: nothing proportional to the
	// declared size is ever allocated.
	allocs := testing.AllocsPerRun(20, func() { Decode(bomb, Limits{}) })
	if allocs > 50 {
		t.Errorf("%v allocations per refused bomb", allocs)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 10; i++ {
		Decode(bomb, Limits{})
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("refusing 10 bombs allocated %d bytes", d)
	}
	// The same bomb within generous limits is a corrupt (short) image, not
	// a crash; use a size that is safe to allocate in a test.
	if _, _, err := Decode(pngBomb(600, 600), Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("600x600 short IDAT: err %v, want ErrCorrupt", err)
	}
}

// TestDecodeTruncated cuts every sample at every length: each prefix must
// fail with ErrCorrupt (never succeed with a partly grey image, never
// panic). The one exception is GIF, whose first frame is complete before
// the trailer byte.
func TestDecodeTruncated(t *testing.T) {
	src := synthNRGBA(40, 30)
	pal := image.NewPaletted(src.Rect, color.Palette{color.Black, color.White, color.NRGBA{0, 0, 255, 255}})
	for i := range pal.Pix {
		pal.Pix[i] = byte(i * 7 % 3)
	}
	progressive := readTestdata(t, "j420p_61x37.jpg")
	samples := map[string][]byte{
		"jpeg":             encodeJPEG(t, src, 90),
		"jpeg progressive": progressive,
		"png":              encodeTestPNG(t, src),
		"gif":              encodeGIF(t, pal),
		"bmp":              encodeBMP(t, src),
		"webp lossy":       readTestdata(t, "lossy_61x37.webp"),
		"webp alpha":       readTestdata(t, "alpha_61x37.webp"),
		"webp lossless":    readTestdata(t, "lossless_20x14.webp"),
	}
	for name, data := range samples {
		if _, _, err := Decode(data, Limits{}); err != nil {
			t.Fatalf("%s: full file: %v", name, err)
		}
		for n := 1; n < len(data); n++ {
			_, _, err := Decode(data[:n], Limits{})
			if name == "gif" && n == len(data)-1 {
				continue // only the trailer is missing
			}
			if err == nil {
				t.Errorf("%s: truncated to %d of %d bytes decoded without error", name, n, len(data))
				break
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedFormat) {
				t.Errorf("%s: truncated to %d: %v", name, n, err)
				break
			}
		}
	}
	// Truncation inside the pixel data is also visible as io.ErrUnexpectedEOF.
	j := samples["jpeg"]
	if _, _, err := Decode(j[:len(j)*2/3], Limits{}); !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "short") {
		t.Errorf("truncated jpeg: %v", err)
	}
}

func TestDecodeGIF(t *testing.T) {
	// Transparent index, and a first frame smaller than the logical screen.
	pal := color.Palette{color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 255, 0, 255}, color.NRGBA{0, 0, 0, 0}}
	frame := image.NewPaletted(image.Rect(2, 1, 6, 4), pal)
	for i := range frame.Pix {
		frame.Pix[i] = byte(i % 3)
	}
	var b bytes.Buffer
	err := gif.EncodeAll(&b, &gif.GIF{
		Image:  []*image.Paletted{frame},
		Delay:  []int{0},
		Config: image.Config{ColorModel: pal, Width: 8, Height: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, info, err := Decode(b.Bytes(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Rect != image.Rect(0, 0, 8, 5) || !info.HasAlpha {
		t.Fatalf("bounds %v info %+v", img.Rect, info)
	}
	if c := img.NRGBAAt(0, 0); c.A != 0 {
		t.Errorf("outside the frame: %v, want transparent", c)
	}
	if c := img.NRGBAAt(2, 1); c != (color.NRGBA{255, 0, 0, 255}) {
		t.Errorf("frame origin: %v", c)
	}
	if c := img.NRGBAAt(4, 1); c.A != 0 {
		t.Errorf("transparent index: %v", c)
	}
}

func TestDecode16BitPNG(t *testing.T) {
	m := image.NewNRGBA64(image.Rect(0, 0, 3, 2))
	m.SetNRGBA64(1, 1, color.NRGBA64{0xABCD, 0x1234, 0xFF00, 0x80FF})
	img, info, err := Decode(encodeTestPNG(t, m), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if c := img.NRGBAAt(1, 1); c != (color.NRGBA{0xAB, 0x12, 0xFF, 0x80}) || !info.HasAlpha {
		t.Errorf("16-bit sample: %v (want high bytes), info %+v", c, info)
	}
	g := image.NewGray16(image.Rect(0, 0, 2, 2))
	g.SetGray16(1, 0, color.Gray16{0x7F80})
	img, info, err = Decode(encodeTestPNG(t, g), Limits{})
	if err != nil || img.NRGBAAt(1, 0) != (color.NRGBA{0x7F, 0x7F, 0x7F, 0xFF}) || info.HasAlpha {
		t.Errorf("gray16: %v %v %+v", err, img.NRGBAAt(1, 0), info)
	}
}

func TestDecodeGrayJPEG(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 16, 8))
	for i := range g.Pix {
		g.Pix[i] = 200
	}
	img, _, err := Decode(encodeJPEG(t, g, 100), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if c := img.NRGBAAt(5, 5); c.R != c.G || c.G != c.B || c.A != 255 || c.R < 198 || c.R > 202 {
		t.Errorf("gray jpeg pixel %v", c)
	}
}

func TestDetectFormat(t *testing.T) {
	for in, want := range map[string]Format{
		"\xFF\xD8\xFF\xE0":             FormatJPEG,
		"\x89PNG\r\n\x1a\nxxxx":        FormatPNG,
		"GIF87a..":                     FormatGIF,
		"GIF89a..":                     FormatGIF,
		"RIFF\x00\x00\x00\x00WEBPVP8 ": FormatWebP,
		"RIFF\x00\x00\x00\x00WAVEfmt ": "",
		"BM\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x28\x00\x00\x00": FormatBMP,
		"BM\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x29\x00\x00\x00": "",
		"\xFF\xD8":  "",
		"GIF90a":    "",
		"":          "",
		"%PDF-1.4 ": "",
	} {
		if got := DetectFormat([]byte(in)); got != want {
			t.Errorf("DetectFormat(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsImageContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"image/jpeg":                        true,
		"image/png":                         true,
		"IMAGE/WEBP":                        true,
		"image/jpeg; charset=binary":        true,
		"image/svg+xml":                     true, // passes here, refused by Decode
		"application/octet-stream":          true,
		"binary/octet-stream":               true,
		"":                                  true,
		"text/plain":                        false,
		"text/html; charset=utf-8":          false,
		"application/json":                  false,
		"multipart/form-data; b=x":          false,
		"application/x-www-form-urlencoded": false,
		"image/":                            false,
		"image":                             false,
		"garbage;;;":                        false,
	} {
		if got := IsImageContentType(ct); got != want {
			t.Errorf("IsImageContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}

// TestNativeJPEGInCI keeps CI honest: there the Makefile builds with
// libjpeg-turbo, and a silent fallback to the Go decoder would leave the
// native path untested.
func TestNativeJPEGInCI(t *testing.T) {
	if os.Getenv("CI") == "true" && !nativeJPEG {
		t.Fatalf("CI=true but this build decodes JPEG with %s; install libjpeg62-turbo-dev and build with -tags libjpeg", JPEGDecoder())
	}
	t.Log("JPEG decoder:", JPEGDecoder())
}
