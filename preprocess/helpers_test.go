package preprocess

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/image/bmp"
)

// Test image builders. Everything is generated in memory except the WebP
// samples and PIL reference pixels in testdata/ (Go has no WebP encoder),
// made by testdata/golden.py.

func encodeJPEG(t testing.TB, img image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeTestPNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeGIF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeBMP(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := bmp.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngChunk frames a PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, typ...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

// insertPNGChunk puts chunk right after IHDR (8-byte signature + 25 bytes).
func insertPNGChunk(p []byte, chunk []byte) []byte {
	out := append([]byte{}, p[:33]...)
	out = append(out, chunk...)
	return append(out, p[33:]...)
}

// insertJPEGSegment puts an APPn segment right after SOI.
func insertJPEGSegment(j []byte, marker byte, payload []byte) []byte {
	out := []byte{0xFF, 0xD8, 0xFF, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out = append(out, payload...)
	return append(out, j[2:]...)
}

// byteOrder is what binary.LittleEndian and binary.BigEndian both are.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

type tiffEntry struct {
	tag, typ uint16
	count    uint32
	value    []byte // inline if <= 4 bytes, else stored after the IFDs
}

// buildTIFF writes a TIFF header and IFD0 (and optional second IFD chained
// through a pointer tag) in the given byte order.
func buildTIFF(bo byteOrder, ifd0 []tiffEntry, subTag uint16, sub []tiffEntry) []byte {
	b := make([]byte, 8)
	if bo.String() == binary.LittleEndian.String() {
		copy(b, "II")
	} else {
		copy(b, "MM")
	}
	bo.PutUint16(b[2:], 42)
	bo.PutUint32(b[4:], 8)
	size := func(n int) int { return 2 + 12*n + 4 }
	ifd0Len := size(len(ifd0) + btoi(sub != nil))
	subOff := 8 + ifd0Len
	dataOff := subOff
	if sub != nil {
		dataOff += size(len(sub))
	}
	var data []byte
	writeIFD := func(entries []tiffEntry, extra *tiffEntry) []byte {
		all := append([]tiffEntry{}, entries...)
		if extra != nil {
			all = append(all, *extra)
		}
		out := bo.AppendUint16(nil, uint16(len(all)))
		for _, e := range all {
			out = bo.AppendUint16(out, e.tag)
			out = bo.AppendUint16(out, e.typ)
			out = bo.AppendUint32(out, e.count)
			if len(e.value) <= 4 {
				v := make([]byte, 4)
				copy(v, e.value)
				out = append(out, v...)
			} else {
				out = bo.AppendUint32(out, uint32(dataOff+len(data)))
				data = append(data, e.value...)
			}
		}
		return bo.AppendUint32(out, 0)
	}
	var ptr *tiffEntry
	if sub != nil {
		ptr = &tiffEntry{tag: subTag, typ: 4, count: 1, value: bo.AppendUint32(nil, uint32(subOff))}
	}
	b = append(b, writeIFD(ifd0, ptr)...)
	if sub != nil {
		b = append(b, writeIFD(sub, nil)...)
	}
	return append(b, data...)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func orientationTIFF(bo byteOrder, o uint16) []byte {
	return buildTIFF(bo, []tiffEntry{
		{tag: 0x010F, typ: 2, count: 6, value: []byte("Canon\x00")},
		{tag: tagOrientation, typ: 3, count: 1, value: bo.AppendUint16(nil, o)},
	}, 0, nil)
}

// gpsTIFF is IFD0 (Make, Orientation) plus a GPS IFD at 12°34'56"N.
func gpsTIFF(bo byteOrder, o uint16) []byte {
	rat := func(n ...uint32) []byte {
		var b []byte
		for _, v := range n {
			b = bo.AppendUint32(b, v)
			b = bo.AppendUint32(b, 1)
		}
		return b
	}
	return buildTIFF(bo, []tiffEntry{
		{tag: 0x010F, typ: 2, count: 12, value: []byte("SecretPhone\x00")},
		{tag: tagOrientation, typ: 3, count: 1, value: bo.AppendUint16(nil, o)},
	}, 0x8825, []tiffEntry{
		{tag: 0x0001, typ: 2, count: 2, value: []byte("N\x00")},
		{tag: 0x0002, typ: 5, count: 3, value: rat(12, 34, 56)},
		{tag: 0x0003, typ: 2, count: 2, value: []byte("E\x00")},
		{tag: 0x0004, typ: 5, count: 3, value: rat(98, 76, 54)},
	})
}

// distinctNRGBA has a different colour at every pixel, so any transform
// error shows.
func distinctNRGBA(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(10 + 20*x), uint8(10 + 30*y), uint8(x*h + y), 255})
		}
	}
	return m
}
