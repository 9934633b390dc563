package preprocess

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"runtime"
	"sync"

	"github.com/imgserve/imgserve/internal/recovered"
)

// Outputs carry no metadata: the PNG writer below emits only IHDR, IDAT
// and IEND; Go's JPEG encoder only DQT, SOF0, DHT and SOS. Pixels never come
// from the input bytes directly, so nothing of an upload's EXIF, GPS, XMP,
// ICC or text can leak through. encode_test.go proves it on inputs carrying
// EXIF with a GPS IFD.

// DefaultJPEGQuality: visually lossless for photos at a fraction of PNG's
// size.
const DefaultJPEGQuality = 90

// PNG encoding is the largest post-processing cost, so *image.NRGBA and
// *image.Gray get a dedicated writer instead of image/png, which spends
// over half its time trying all five row filters on every row and
// searching for matches. Every row takes the Up filter, the best single
// filter on both photos and cutouts (whose transparent areas become zero
// rows); the deflate stream is pngdeflate.go's: literals under a Huffman
// code plus zero runs, in bands of rows that the cores code at once.
// bench/README.md has the numbers against image/png and zlib's levels.

// EncodePNG writes img as PNG. *image.NRGBA is written as 8-bit RGBA (as
// rembg always does, even when opaque) and *image.Gray as 8-bit grey, for
// masks; other types go through image/png.
func EncodePNG(w io.Writer, img image.Image) error {
	switch m := img.(type) {
	case *image.NRGBA:
		return encodePNG(w, m.Pix[min(len(m.Pix), m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)):], m.Stride, m.Rect.Dx(), m.Rect.Dy(), 4)
	case *image.Gray:
		return encodePNG(w, m.Pix[min(len(m.Pix), m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)):], m.Stride, m.Rect.Dx(), m.Rect.Dy(), 1)
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	return enc.Encode(w, img)
}

func encodePNG(w io.Writer, pix []byte, stride, width, height, bpp int) error {
	return encodeRowsPNG(w, width, height, bpp, func(dst []byte, y int) { copy(dst, pix[y*stride:]) })
}

// encodeRowsPNG writes a PNG whose row y (width*bpp bytes) row writes into
// dst. row is called from several goroutines at once, for different rows.
func encodeRowsPNG(w io.Writer, width, height, bpp int, row func(dst []byte, y int)) error {
	return encodeSourcePNG(w, width, height, bpp, pngSource{row: row})
}

// pngSource gives a PNG's rows: row writes row y (width*bpp bytes) into
// dst. band, when set, does the whole of pngBand.deflate's row loop
// instead: rows [lo, hi) as Up-filtered scanlines into f, with two
// scratch rows; it must give the same bytes. Both are called from several
// goroutines at once, for different rows.
type pngSource struct {
	row  func(dst []byte, y int)
	band func(f []byte, lo, hi int, cur, prev []byte)
}

func encodeSourcePNG(w io.Writer, width, height, bpp int, src pngSource) error {
	if width <= 0 || height <= 0 || int64(width) >= 1<<31 || int64(height) >= 1<<31 {
		return fmt.Errorf("%w: cannot encode a %dx%d PNG", ErrSize, width, height)
	}
	var hdr [8 + 25]byte
	copy(hdr[:], "\x89PNG\r\n\x1a\n")
	ihdr := hdr[8+8 : 8+8+13]
	binary.BigEndian.PutUint32(ihdr[0:], uint32(width))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(height))
	ihdr[8] = 8 // bit depth
	ihdr[9] = 6 // RGBA
	if bpp == 1 {
		ihdr[9] = 0 // grey
	}
	frameChunk(hdr[8:], "IHDR", 13)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	idat := idatWriter{w: w, buf: make([]byte, 0, 64<<10)}
	n := width * bpp
	if err := deflateBands(&idat, src, n, height, pngBandCount(n, height)); err != nil {
		return err
	}
	if err := idat.flush(); err != nil {
		return err
	}
	var end [12]byte
	frameChunk(end[:], "IEND", 0)
	_, err := w.Write(end[:])
	return err
}

// upFilter writes cur into out (the filter type, then len(cur) bytes)
// with PNG's Up filter: each byte minus the one above it in prev (nil for
// the first row).
func upFilter(out, cur, prev []byte) {
	out[0] = 2 // filter type Up
	out = out[1:][:len(cur)]
	if prev == nil {
		copy(out, cur)
		return
	}
	prev = prev[:len(cur)]
	// Eight bytes at a time, subtracting within each byte lane: the high
	// bits are set in cur and cleared in prev so no borrow crosses lanes,
	// then the true high bit of each difference is put back.
	const hi, lo = 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	i := 0
	for ; i+8 <= len(out); i += 8 {
		a, b := binary.LittleEndian.Uint64(cur[i:]), binary.LittleEndian.Uint64(prev[i:])
		binary.LittleEndian.PutUint64(out[i:], ((a|hi)-(b&lo))^((a^^b)&hi))
	}
	for ; i < len(out); i++ {
		out[i] = cur[i] - prev[i]
	}
}

// Large images deflate in bands of rows, one per core, as pigz does: each
// band is an independent run of deflate blocks ending on a byte boundary
// (a sync flush; the last band's ends the stream), so their concatenation
// is one valid stream, and the bands' Adler-32 checksums combine into the
// zlib trailer. Below pngBandMinBytes of filtered data, a band's set-up
// costs more than it saves.
const pngBandMinBytes = 256 << 10

func pngBandCount(n, height int) int {
	return max(1, min(runtime.GOMAXPROCS(0), height, (1+n)*height/pngBandMinBytes))
}

type pngBand struct {
	rows     [2][]byte // the current and the previous unfiltered row
	filtered []byte    // the band's rows after the Up filter
	out      []byte    // its deflate blocks
	sum      uint32    // Adler-32 of filtered
	runs     []zeroRun
}

var pngBands sync.Pool

func (b *pngBand) deflate(src pngSource, n, lo, hi int, last bool) {
	size := (hi - lo) * (1 + n)
	if cap(b.filtered) < size {
		b.filtered = make([]byte, size)
	}
	for i := range b.rows {
		if cap(b.rows[i]) < n {
			b.rows[i] = make([]byte, n)
		}
		b.rows[i] = b.rows[i][:n]
	}
	f := b.filtered[:size]
	cur, prev := b.rows[0], b.rows[1]
	if src.band != nil {
		src.band(f, lo, hi, cur, prev)
	} else {
		filterRows(f, src.row, lo, hi, cur, prev)
	}
	b.out, b.sum, b.runs = deflateFast(b.out[:0], f, last, b.runs)
}

// filterRows writes rows [lo, hi) from row as Up-filtered scanlines into f.
func filterRows(f []byte, row func([]byte, int), lo, hi int, cur, prev []byte) {
	n := len(cur)
	if lo > 0 {
		row(prev, lo-1)
	}
	for y := lo; y < hi; y++ {
		row(cur, y)
		above := prev
		if y == 0 {
			above = nil
		}
		upFilter(f[(y-lo)*(1+n):][:1+n], cur, above)
		cur, prev = prev, cur
	}
}

// deflateBands writes the zlib stream of the filtered rows to w.
func deflateBands(w io.Writer, src pngSource, n, height, bands int) error {
	parts := make([]*pngBand, bands)
	var wg recovered.Group
	for i := range parts {
		p, _ := pngBands.Get().(*pngBand)
		if p == nil {
			p = &pngBand{}
		}
		parts[i] = p
		lo, hi := height*i/bands, height*(i+1)/bands
		if i == bands-1 {
			p.deflate(src, n, lo, hi, true) // on this goroutine
			continue
		}
		wg.Go(func() { p.deflate(src, n, lo, hi, false) })
	}
	wg.Wait()
	defer func() {
		for _, p := range parts {
			if cap(p.filtered) <= 8<<20 { // do not pin a huge image's buffers
				pngBands.Put(p)
			}
		}
	}()
	// CMF 0x78: deflate, 32 KiB window; FLG 0x01: fastest level, no
	// dictionary, and 0x7801 is a multiple of 31 as RFC 1950 requires.
	if _, err := w.Write([]byte{0x78, 0x01}); err != nil {
		return err
	}
	var sum uint32 = 1
	for i, p := range parts {
		if _, err := w.Write(p.out); err != nil {
			return err
		}
		lo, hi := height*i/bands, height*(i+1)/bands
		sum = adler32Combine(sum, p.sum, (hi-lo)*(1+n))
	}
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], sum)
	_, err := w.Write(tail[:])
	return err
}

// adler32Combine returns the Adler-32 of A followed by B from theirs and
// B's length: zlib's adler32_combine.
func adler32Combine(a, b uint32, lenB int) uint32 {
	const base = 65521
	rem := uint32(lenB % base)
	sum1 := a & 0xffff
	sum2 := rem * sum1 % base
	sum1 += (b & 0xffff) + base - 1
	sum2 += (a >> 16) + (b >> 16) + base - rem
	if sum1 >= base {
		sum1 -= base
	}
	if sum1 >= base {
		sum1 -= base
	}
	if sum2 >= 2*base {
		sum2 -= 2 * base
	}
	if sum2 >= base {
		sum2 -= base
	}
	return sum1 | sum2<<16
}

// frameChunk fills in length, type and CRC around a chunk whose n data
// bytes are already at b[8:8+n]; b must have room for the CRC.
func frameChunk(b []byte, typ string, n int) {
	binary.BigEndian.PutUint32(b, uint32(n))
	copy(b[4:8], typ)
	binary.BigEndian.PutUint32(b[8+n:], crc32.ChecksumIEEE(b[4:8+n]))
}

// idatWriter frames the zlib stream into IDAT chunks of up to 64 KiB.
type idatWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func (d *idatWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && d.err == nil {
		k := min(len(p), cap(d.buf)-len(d.buf))
		d.buf = append(d.buf, p[:k]...)
		p = p[k:]
		if len(d.buf) == cap(d.buf) {
			d.flush()
		}
	}
	if d.err != nil {
		return 0, d.err
	}
	return total, nil
}

func (d *idatWriter) flush() error {
	if d.err != nil || len(d.buf) == 0 {
		return d.err
	}
	var head [8]byte
	binary.BigEndian.PutUint32(head[:], uint32(len(d.buf)))
	copy(head[4:], "IDAT")
	crc := crc32.Update(crc32.ChecksumIEEE(head[4:]), crc32.IEEETable, d.buf)
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], crc)
	for _, b := range [][]byte{head[:], d.buf, tail[:]} {
		if _, err := d.w.Write(b); err != nil {
			d.err = err
			return err
		}
	}
	d.buf = d.buf[:0]
	return nil
}

// EncodeJPEG writes img as a baseline 4:2:0 JPEG. JPEG has no alpha: an
// *image.NRGBA's alpha is discarded and its colour kept as is, like PIL's
// convert("RGB"), so composite onto an opaque background first
// (ApplyBackgroundColor) or transparent areas come out as whatever colour
// they hold (black for a Cutout). quality <= 0 means DefaultJPEGQuality.
func EncodeJPEG(w io.Writer, img image.Image, quality int) error {
	if quality <= 0 {
		quality = DefaultJPEGQuality
	}
	quality = min(quality, 100)
	if m, ok := img.(*image.NRGBA); ok {
		img = opaqueRGBA(m)
	}
	return jpeg.Encode(w, img, &jpeg.Options{Quality: quality})
}

// opaqueRGBA copies m with alpha forced to 255. Go's JPEG encoder has a fast
// path for *image.RGBA; for anything else it premultiplies through At,
// which would darken translucent pixels and take 10x longer.
func opaqueRGBA(m *image.NRGBA) *image.RGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		s := m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y+y):][:4*w]
		d := dst.Pix[y*dst.Stride:][:4*w]
		copy(d, s)
		for i := 3; i < len(d); i += 4 {
			d[i] = 0xFF
		}
	}
	return dst
}
