package preprocess

import (
	"bytes"
	"compress/zlib"
	"hash/adler32"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"testing"
)

// TestDeflateFastRoundTrip checks the encoder against Go's inflater
// (compress/zlib, independent of ours) on data shaped to reach every
// branch: zero runs of every length around the copy limits, long runs,
// noise that needs long codes, single symbols.
func TestDeflateFastRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var runs []byte
	for n := 1; n < 600; n += 1 + n/20 {
		runs = append(runs, byte(1+rng.IntN(255)))
		runs = append(runs, make([]byte, n)...)
	}
	noise := make([]byte, 70000)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	skewed := make([]byte, 50000) // geometric: forces codes past 15 bits
	for i := range skewed {
		b := 0
		for b < 40 && rng.IntN(2) == 0 {
			b++
		}
		skewed[i] = byte(b)
	}
	cases := map[string][]byte{
		"empty": {}, "one": {7}, "zeros": make([]byte, 100000), "runs": runs,
		"noise": noise, "skewed": skewed, "ones": bytes.Repeat([]byte{1}, 1000),
	}
	for name, data := range cases {
		for _, split := range []int{0, len(data) / 3} {
			var z []byte
			z = append(z, 0x78, 0x01)
			a, sumA, _ := deflateFast(nil, data[:split], false, nil)
			b, sumB, _ := deflateFast(nil, data[split:], true, nil)
			z = append(append(z, a...), b...)
			sum := adler32Combine(sumA, sumB, len(data)-split)
			if want := adler32.Checksum(data); sum != want {
				t.Errorf("%s: Adler-32 %08x, want %08x", name, sum, want)
			}
			z = append(z, byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum))
			r, err := zlib.NewReader(bytes.NewReader(z))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("%s split %d: inflate: %v", name, split, err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s split %d: round trip differs", name, split)
			}
		}
	}
}

func TestHuffmanLengthLimit(t *testing.T) {
	freq := make([]uint32, 286)
	a, b := uint32(1), uint32(1)
	for i := 0; i < 30; i++ { // Fibonacci frequencies: depth 29 unlimited
		freq[i] = a
		a, b = b, a+b
	}
	h := newHuffman(freq, 15)
	kraft := 0.0
	for s, l := range h.lens {
		if freq[s] > 0 && (l == 0 || l > 15) {
			t.Fatalf("symbol %d: length %d", s, l)
		}
		if l > 0 {
			kraft += 1 / float64(uint(1)<<l)
		}
	}
	if kraft != 1 {
		t.Errorf("Kraft sum %v, want 1 (a complete code)", kraft)
	}
}

// TestEncodePNGShapes writes PNGs of awkward sizes and contents and reads
// them back with image/png.
func TestEncodePNGShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, size := range [][2]int{{1, 1}, {3, 1}, {1, 300}, {700, 500}, {1500, 900}} {
		m := image.NewNRGBA(image.Rect(0, 0, size[0], size[1]))
		for i := range m.Pix {
			if (i/4/size[0])%3 != 0 { // bands of transparent rows
				m.Pix[i] = byte(rng.IntN(256))
			}
		}
		var buf bytes.Buffer
		if err := EncodePNG(&buf, m); err != nil {
			t.Fatal(err)
		}
		got, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("%v: %v", size, err)
		}
		n, ok := got.(*image.NRGBA)
		if !ok || !bytes.Equal(n.Pix, m.Pix) {
			t.Errorf("%v: pixels differ after the round trip", size)
		}
	}
}
