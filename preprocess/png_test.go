package preprocess

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"image/png"
	"math/rand/v2"
	"os"
	"testing"
)

// rawPNG writes a w x h 8-bit PNG of the given colour type whose rows use
// every filter type in turn, from random samples (smooth enough that the
// filters' predictions matter), split over two IDAT chunks.
func rawPNG(t *testing.T, w, h int, colorType byte, ch int, seed uint64) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	n := w * ch
	rows := make([][]byte, h)
	for y := range rows {
		rows[y] = make([]byte, n)
		for i := range rows[y] {
			rows[y][i] = byte(i*3 + y*5 + rng.IntN(24))
		}
	}
	var raw bytes.Buffer
	for y, row := range rows {
		ft := byte(y % 5)
		raw.WriteByte(ft)
		for i, x := range row {
			var a, b, c byte
			if i >= ch {
				a = row[i-ch]
			}
			if y > 0 {
				b = rows[y-1][i]
				if i >= ch {
					c = rows[y-1][i-ch]
				}
			}
			switch ft {
			case 1:
				x -= a
			case 2:
				x -= b
			case 3:
				x -= byte((int(a) + int(b)) / 2)
			case 4:
				x -= paethRef(a, b, c)
			}
			raw.WriteByte(x)
		}
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw.Bytes())
	zw.Close()
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr, uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, colorType
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, pngChunk("IHDR", ihdr)...)
	half := z.Len() / 2
	out = append(out, pngChunk("IDAT", z.Bytes()[:half])...)
	out = append(out, pngChunk("IDAT", z.Bytes()[half:])...)
	return append(out, pngChunk("IEND", nil)...)
}

func paethRef(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	pa, pb, pc := abs(p-int(a)), abs(p-int(b)), abs(p-int(c))
	if pa <= pb && pa <= pc {
		return a
	}
	if pb <= pc {
		return b
	}
	return c
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// TestPNGMatchesImagePNG decodes every 8-bit colour type, with every
// filter type, both ways: Decode (the native path where built) and
// image/png, converted as before.
func TestPNGMatchesImagePNG(t *testing.T) {
	for _, c := range []struct {
		name      string
		colorType byte
		ch        int
	}{{"grey", 0, 1}, {"grey+alpha", 4, 2}, {"rgb", 2, 3}, {"rgba", 6, 4}} {
		for _, size := range [][2]int{{1, 1}, {2, 7}, {61, 37}, {300, 9}} {
			data := rawPNG(t, size[0], size[1], c.colorType, c.ch, uint64(size[0]))
			got, info, err := Decode(data, Limits{})
			if err != nil {
				t.Fatalf("%s %v: %v", c.name, size, err)
			}
			ref, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s %v: image/png: %v", c.name, size, err)
			}
			want, alpha := toNRGBA(ref, false)
			if !bytes.Equal(got.Pix, want.Pix) {
				t.Errorf("%s %v: pixels differ from image/png's", c.name, size)
			}
			if info.HasAlpha != alpha {
				t.Errorf("%s %v: HasAlpha %v, image/png's %v", c.name, size, info.HasAlpha, alpha)
			}
		}
	}
}

func TestPNGBadChecksumAndFilter(t *testing.T) {
	data := rawPNG(t, 20, 10, 2, 3, 1)
	bad := bytes.Clone(data)
	bad[len(bad)-20] ^= 1 // inside the last IDAT's data
	if _, _, err := Decode(bad, Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped bit: err %v, want ErrCorrupt", err)
	}
	noEnd := data[:len(data)-12]
	if _, _, err := Decode(noEnd, Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no IEND: err %v, want ErrCorrupt", err)
	}
}

// TestNativePNGInCI: CI builds with libdeflate; a fallback there would
// leave the native path untested.
func TestNativePNGInCI(t *testing.T) {
	if os.Getenv("CI") == "true" && !nativePNG {
		t.Fatalf("CI=true but PNG decodes with %s; install libdeflate-dev and build with -tags libdeflate", pngDecoderName())
	}
	t.Log("PNG decoder:", pngDecoderName())
}
