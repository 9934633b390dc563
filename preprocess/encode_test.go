package preprocess

import (
	"bytes"
	"encoding/binary"
	"hash/adler32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"testing"

	"github.com/klauspost/compress/zlib"
)

// jpegMarkers lists the markers before the entropy-coded data of the first
// scan, plus whether the file ends with EOI.
func jpegMarkers(t *testing.T, b []byte) []byte {
	t.Helper()
	var ms []byte
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			t.Fatalf("no marker at %d", i)
		}
		m := b[i+1]
		ms = append(ms, m)
		if m == 0xDA {
			break
		}
		i += 2 + int(binary.BigEndian.Uint16(b[i+2:]))
	}
	if !bytes.HasSuffix(b, []byte{0xFF, 0xD9}) {
		t.Fatal("no EOI")
	}
	return ms
}

func pngChunkTypes(t *testing.T, b []byte) []string {
	t.Helper()
	var ts []string
	for i := 8; i+8 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[i:]))
		ts = append(ts, string(b[i+4:i+8]))
		i += 12 + n
	}
	return ts
}

var leakMarkers = []string{"Exif", "SecretPhone", "GPS", "eXIf", "tEXt", "iTXt", "zTXt", "xmpmeta", "ns.adobe.com", "Canon"}

// TestEncodeStripsMetadata feeds inputs carrying EXIF with a GPS IFD, XMP
// and PNG text chunks through decode, cutout and both encoders, and checks
// the outputs hold only pixel-carrying structures.
func TestEncodeStripsMetadata(t *testing.T) {
	base := encodeJPEG(t, synthNRGBA(64, 48), 90)
	jpg := insertJPEGSegment(base, 0xE1, append([]byte("Exif\x00\x00"), gpsTIFF(binary.BigEndian, 1)...))
	jpg = insertJPEGSegment(jpg, 0xE1, append([]byte("http://ns.adobe.com/xap/1.0/\x00"), `<x:xmpmeta exif:GPSLatitude="12,34.9N"/>`...))
	jpg = insertJPEGSegment(jpg, 0xFE, []byte("GPS comment SecretPhone"))
	pngIn := insertPNGChunk(encodeTestPNG(t, synthNRGBA(64, 48)), pngChunk("eXIf", gpsTIFF(binary.LittleEndian, 1)))
	pngIn = insertPNGChunk(pngIn, pngChunk("tEXt", []byte("Comment\x00GPS SecretPhone")))
	for name, in := range map[string][]byte{"jpeg": jpg, "png": pngIn} {
		if !bytes.Contains(in, []byte("SecretPhone")) || !bytes.Contains(in, []byte("Exif")) && !bytes.Contains(in, []byte("eXIf")) {
			t.Fatalf("%s: test input lacks its metadata", name)
		}
		img, _, err := Decode(in, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mask := image.NewGray(img.Rect)
		for i := range mask.Pix {
			mask.Pix[i] = byte(i)
		}
		cut, _ := Cutout(img, mask)
		var p, j, m bytes.Buffer
		if err := EncodePNG(&p, cut); err != nil {
			t.Fatal(err)
		}
		if err := EncodeJPEG(&j, ApplyBackgroundColor(cut, color.NRGBA{255, 255, 255, 255}), 0); err != nil {
			t.Fatal(err)
		}
		if err := EncodePNG(&m, mask); err != nil {
			t.Fatal(err)
		}
		for _, out := range [][]byte{p.Bytes(), j.Bytes(), m.Bytes()} {
			for _, s := range leakMarkers {
				if bytes.Contains(out, []byte(s)) {
					t.Errorf("%s: output contains %q", name, s)
				}
			}
		}
		for _, out := range [][]byte{p.Bytes(), m.Bytes()} {
			for _, c := range pngChunkTypes(t, out) {
				if c != "IHDR" && c != "IDAT" && c != "IEND" {
					t.Errorf("%s: PNG output has chunk %q", name, c)
				}
			}
		}
		for _, mk := range jpegMarkers(t, j.Bytes()) {
			switch {
			case mk == 0xDB, mk == 0xC0, mk == 0xC4, mk == 0xDA: // DQT, SOF0, DHT, SOS
			default:
				t.Errorf("%s: JPEG output has marker FF%02X", name, mk)
			}
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	src := synthNRGBA(33, 21)
	src.Pix[3] = 0
	src.Pix[7] = 128
	var b bytes.Buffer
	if err := EncodePNG(&b, src); err != nil {
		t.Fatal(err)
	}
	back, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := back.(*image.NRGBA); !ok || !bytes.Equal(n.Pix, src.Pix) {
		t.Errorf("PNG round trip not exact (%T)", back)
	}
	g := synthGray(9, 7)
	b.Reset()
	EncodePNG(&b, g)
	if back, _ := png.Decode(&b); back.(*image.Gray) == nil || !bytes.Equal(back.(*image.Gray).Pix, g.Pix) {
		t.Error("gray PNG round trip")
	}

	// JPEG discards alpha and keeps colour, like PIL's convert("RGB"); it
	// does not premultiply (which would turn transparent red black).
	red := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < len(red.Pix); i += 4 {
		red.Pix[i], red.Pix[i+3] = 250, 0
	}
	b.Reset()
	if err := EncodeJPEG(&b, red, 95); err != nil {
		t.Fatal(err)
	}
	if red.Pix[3] != 0 {
		t.Error("EncodeJPEG modified its input")
	}
	dec, err := jpeg.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if r, g, _, _ := dec.At(8, 8).RGBA(); r>>8 < 240 || g>>8 > 10 {
		t.Errorf("transparent red encoded as %v", dec.At(8, 8))
	}
	b.Reset()
	if err := EncodeJPEG(&b, g, 150); err != nil { // quality clamped, gray input
		t.Fatal(err)
	}
}

// TestEncodePNGBands checks the banded deflate: with 1..4 bands, on an RGBA
// and a grey image, the stream inflates (Go's zlib reader verifies the
// combined Adler-32) to the filtered rows; and both images round-trip
// through EncodePNG, which bands the RGBA one (3 MB) on a multi-core
// machine and not the grey one.
func TestEncodePNGBands(t *testing.T) {
	src := photoNRGBA(1024, 768)
	gray := image.NewGray(image.Rect(0, 0, 700, 500))
	for i := range gray.Pix {
		gray.Pix[i] = byte(i*7 + i/700)
	}
	for _, img := range []image.Image{src, gray} {
		var pix []byte
		var stride, n, h int
		switch m := img.(type) {
		case *image.NRGBA:
			pix, stride, n, h = m.Pix, m.Stride, 4*m.Rect.Dx(), m.Rect.Dy()
		case *image.Gray:
			pix, stride, n, h = m.Pix, m.Stride, m.Rect.Dx(), m.Rect.Dy()
		}
		for bands := 1; bands <= 4; bands++ {
			var z bytes.Buffer
			rows := func(dst []byte, y int) { copy(dst, pix[y*stride:]) }
			if err := deflateBands(&z, pngSource{row: rows}, n, h, bands); err != nil {
				t.Fatal(err)
			}
			zr, err := zlib.NewReader(&z)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatalf("%T, %d bands: %v", img, bands, err)
			}
			row := make([]byte, 1+n)
			for y := 0; y < h; y++ {
				var prev []byte
				if y > 0 {
					prev = pix[(y-1)*stride:][:n]
				}
				upFilter(row, pix[y*stride:][:n], prev)
				if !bytes.Equal(got[y*(1+n):][:1+n], row) {
					t.Fatalf("%T, %d bands: row %d differs", img, bands, y)
				}
			}
		}
		// And through the public writer, whichever path it takes here.
		var b bytes.Buffer
		if err := EncodePNG(&b, img); err != nil {
			t.Fatal(err)
		}
		back, err := png.Decode(&b)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		switch m := back.(type) {
		case *image.NRGBA:
			got = m.Pix
		case *image.Gray:
			got = m.Pix
		}
		if !bytes.Equal(got, pix) {
			t.Fatalf("%T: PNG round trip changed pixels (decoded as %T)", img, back)
		}
	}
}

func TestAdler32Combine(t *testing.T) {
	data := make([]byte, 200000)
	for i := range data {
		data[i] = byte(i * i >> 3)
	}
	for _, cut := range []int{0, 1, 5552, 65521, 65522, 131042, 199999, 200000} {
		a, b := adler32.Checksum(data[:cut]), adler32.Checksum(data[cut:])
		if got, want := adler32Combine(a, b, len(data)-cut), adler32.Checksum(data); got != want {
			t.Errorf("cut %d: %08x, want %08x", cut, got, want)
		}
	}
}
