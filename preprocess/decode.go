package preprocess

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"mime"
	"strings"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// Format names a decodable image format.
type Format string

// The formats Decode accepts.
const (
	FormatJPEG Format = "jpeg"
	FormatPNG  Format = "png"
	FormatGIF  Format = "gif"
	FormatBMP  Format = "bmp"
	FormatWebP Format = "webp"
)

// Default limits. 40 MP covers every phone camera up to 8000x5000 while
// keeping one decoded image (4 bytes/pixel) around 160 MB.
const (
	DefaultMaxPixels    = 40_000_000
	DefaultMaxDimension = 20_000
)

// maxJPEGScans bounds progressive JPEGs: each scan walks every block, so a
// small file with thousands of tiny scans costs seconds of CPU. libjpeg-turbo
// suggests a similar limit (djpeg -maxscans) for untrusted input.
const maxJPEGScans = 500

// Limits bound what Decode accepts. They are checked against the header
// before any pixel memory is allocated. Zero fields take the defaults, so the
// zero Limits is safe.
type Limits struct {
	MaxPixels    int64 // width*height
	MaxDimension int   // longest side
}

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxDimension <= 0 {
		l.MaxDimension = DefaultMaxDimension
	}
	return l
}

// Info describes a decoded (or header-parsed) image.
type Info struct {
	Format Format
	// Width and Height are those of the returned image, after the EXIF
	// orientation has been applied.
	Width, Height int
	// Orientation is the EXIF orientation tag (1..8) found and applied; 1 when
	// absent or invalid.
	Orientation int
	// HasAlpha reports whether any decoded pixel is not fully opaque. Only
	// Decode sets it; DecodeConfig leaves it false.
	HasAlpha bool
}

// DecodeConfig sniffs the format, reads the header and EXIF orientation and
// checks the limits, without decoding pixels. It is what Decode does first.
func DecodeConfig(data []byte, lim Limits) (Info, error) {
	info, _, _, err := decodeConfig(data, lim)
	return info, err
}

// decodeConfig also returns the stored (pre-orientation) size.
func decodeConfig(data []byte, lim Limits) (info Info, w, h int, err error) {
	if len(data) == 0 {
		return Info{}, 0, 0, ErrEmpty
	}
	f := DetectFormat(data)
	if f == "" {
		if name := knownUnsupported(data); name != "" {
			return Info{}, 0, 0, fmt.Errorf("%w: %s", ErrUnsupportedFormat, name)
		}
		return Info{}, 0, 0, ErrUnsupportedFormat
	}
	if f == FormatWebP {
		if webpAnimated(data) {
			return Info{}, 0, 0, fmt.Errorf("%w: animated webp", ErrUnsupportedFormat)
		}
		// libwebp refuses a file shorter than its RIFF size; x/image/webp
		// does not notice a missing tail when the pixels happen to decode.
		if uint64(le32(data[4:]))+8 > uint64(len(data)) {
			return Info{}, 0, 0, fmt.Errorf("%w: webp: truncated (RIFF size %d, have %d bytes)", ErrCorrupt, uint64(le32(data[4:]))+8, len(data))
		}
	}
	cfg, err := decodeHeader(f, data)
	if err != nil {
		return Info{}, 0, 0, classify(f, err)
	}
	w, h = cfg.Width, cfg.Height
	if w <= 0 || h <= 0 {
		return Info{}, 0, 0, fmt.Errorf("%w: %s: invalid size %dx%d", ErrCorrupt, f, w, h)
	}
	lim = lim.withDefaults()
	if w > lim.MaxDimension || h > lim.MaxDimension || int64(w)*int64(h) > lim.MaxPixels {
		return Info{}, 0, 0, fmt.Errorf("%w: %s %dx%d exceeds %d pixels or %d per side",
			ErrTooLarge, f, w, h, lim.MaxPixels, lim.MaxDimension)
	}
	if f == FormatJPEG && bytes.Count(data, []byte{0xFF, 0xDA}) > maxJPEGScans {
		return Info{}, 0, 0, fmt.Errorf("%w: jpeg has more than %d scans", ErrCorrupt, maxJPEGScans)
	}
	o := orientation(f, data)
	info = Info{Format: f, Width: w, Height: h, Orientation: o}
	if o >= 5 {
		info.Width, info.Height = h, w
	}
	return info, w, h, nil
}

// Decode decodes data into a non-premultiplied RGBA image with the EXIF
// orientation applied. The format is sniffed from the bytes; the size limits
// are checked on the header before decoding. JPEG and WebP chroma is
// upsampled the way libjpeg-turbo and libwebp (hence PIL) do it.
func Decode(data []byte, lim Limits) (*image.NRGBA, Info, error) {
	info, w, h, err := decodeConfig(data, lim)
	if err != nil {
		return nil, Info{}, err
	}
	var (
		img    *image.NRGBA
		native = errNativeUnsupported
	)
	switch info.Format {
	case FormatJPEG:
		img, native = decodeJPEGNative(data, 1, w, h)
	case FormatPNG:
		img, info.HasAlpha, native = decodePNGNative(data, w, h)
	}
	if native == nil {
		return applyOrientation(img, info.Orientation), info, nil
	}
	if !errors.Is(native, errNativeUnsupported) {
		return nil, Info{}, native
	}
	src, err := decodePixels(info.Format, data)
	if err != nil {
		return nil, Info{}, classify(info.Format, err)
	}
	b := src.Bounds()
	if info.Format == FormatGIF && (b.Dx() != w || b.Dy() != h) {
		// A first frame smaller than the logical screen: place it on a
		// transparent canvas of the declared size, as browsers show it.
		src = onCanvas(src, w, h)
		b = src.Bounds()
	}
	if b.Dx() != w || b.Dy() != h {
		return nil, Info{}, fmt.Errorf("%w: %s: decoded %dx%d, header said %dx%d",
			ErrCorrupt, info.Format, b.Dx(), b.Dy(), w, h)
	}
	img, info.HasAlpha = toNRGBA(src, info.Format == FormatWebP)
	return applyOrientation(img, info.Orientation), info, nil
}

func decodeHeader(f Format, data []byte) (cfg image.Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panic: %v", r)
		}
	}()
	r := bytes.NewReader(data)
	switch f {
	case FormatJPEG:
		return jpeg.DecodeConfig(r)
	case FormatPNG:
		return png.DecodeConfig(r)
	case FormatGIF:
		return gif.DecodeConfig(r)
	case FormatBMP:
		return bmp.DecodeConfig(r)
	case FormatWebP:
		return webp.DecodeConfig(r)
	}
	return image.Config{}, ErrUnsupportedFormat
}

// NativeJPEG reports whether JPEG decodes with libjpeg-turbo (a build with
// -tags libjpeg) rather than the pure-Go fallback.
func NativeJPEG() bool { return nativeJPEG }

// Decoders names the JPEG and PNG decoders this binary was built with, for
// the start-up log.
func Decoders() string { return "jpeg: " + JPEGDecoder() + "; png: " + pngDecoderName() }

// errNativeUnsupported: the native decoder leaves this file (a CMYK JPEG,
// or any JPEG in a build without libjpeg-turbo) to the Go decoder.
var errNativeUnsupported = errors.New("not handled by the native decoder")

// decodePixels recovers from panics because the third-party decoders are
// the one place where hostile bytes meet code we do not own; a panic there
// must become a 422, not a crashed request goroutine.
func decodePixels(f Format, data []byte) (img image.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("decoder panic: %v", r)
		}
	}()
	r := bytes.NewReader(data)
	switch f {
	case FormatJPEG:
		return jpeg.Decode(r)
	case FormatPNG:
		return png.Decode(r)
	case FormatGIF:
		return gif.Decode(r)
	case FormatBMP:
		return bmp.Decode(r)
	case FormatWebP:
		return webp.Decode(r)
	}
	return nil, ErrUnsupportedFormat
}

// classify wraps a decoder error in the matching sentinel.
func classify(f Format, err error) error {
	var (
		je jpeg.UnsupportedError
		pe png.UnsupportedError
	)
	switch {
	case errors.Is(err, ErrUnsupportedFormat):
		return err
	case errors.As(err, &je), errors.As(err, &pe), errors.Is(err, bmp.ErrUnsupported):
		return fmt.Errorf("%w: %s: %w", ErrUnsupportedFormat, f, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, f, err)
}

// DetectFormat sniffs the format from the leading bytes; "" when the bytes
// are not one of the decodable formats. The Content-Type is never trusted.
func DetectFormat(data []byte) Format {
	switch {
	case len(data) >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF:
		return FormatJPEG
	case len(data) >= 8 && string(data[:8]) == "\x89PNG\r\n\x1a\n":
		return FormatPNG
	case len(data) >= 6 && (string(data[:6]) == "GIF87a" || string(data[:6]) == "GIF89a"):
		return FormatGIF
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return FormatWebP
	case isBMP(data):
		return FormatBMP
	}
	return ""
}

// isBMP needs more than the "BM" magic, which plenty of text files start
// with: the DIB header size must be one of the defined ones.
func isBMP(data []byte) bool {
	if len(data) < 18 || data[0] != 'B' || data[1] != 'M' {
		return false
	}
	switch le32(data[14:]) {
	case 12, 16, 40, 52, 56, 64, 108, 124:
		return true
	}
	return false
}

// knownUnsupported names common formats we refuse, for a clearer message.
func knownUnsupported(data []byte) string {
	switch {
	case len(data) >= 4 && (string(data[:4]) == "II*\x00" || string(data[:4]) == "MM\x00*"):
		return "tiff"
	case len(data) >= 12 && string(data[4:8]) == "ftyp":
		switch string(data[8:12]) {
		case "avif", "avis":
			return "avif"
		case "heic", "heix", "hevc", "hevx", "mif1", "msf1":
			return "heif"
		}
	case len(data) >= 4 && string(data[:4]) == "\x00\x00\x01\x00":
		return "ico"
	case bytes.HasPrefix(bytes.TrimLeft(data[:min(len(data), 512)], " \t\r\n\ufeff"), []byte("<")):
		return "svg/xml/html"
	}
	return ""
}

// webpAnimated reports the VP8X animation flag; x/image/webp cannot decode
// animations and would otherwise call them corrupt.
func webpAnimated(data []byte) bool {
	return len(data) >= 21 && string(data[12:16]) == "VP8X" && data[20]&0x02 != 0
}

// onCanvas draws a GIF frame whose bounds are inside the logical screen onto
// a transparent canvas of the screen size.
func onCanvas(src image.Image, w, h int) image.Image {
	p, ok := src.(*image.Paletted)
	if !ok {
		return src
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	lut := paletteLUT(p.Palette)
	b := p.Bounds().Intersect(dst.Bounds())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		srow := p.Pix[p.PixOffset(b.Min.X, y):]
		drow := dst.Pix[dst.PixOffset(b.Min.X, y):]
		for x := 0; x < b.Dx(); x++ {
			c := lut[srow[x]]
			copy(drow[4*x:4*x+4], c[:])
		}
	}
	return dst
}

// IsImageContentType reports whether a request Content-Type may carry an
// image: any image/* type, application/octet-stream, or none at all. It only
// screens out obvious mistakes (text, JSON, forms); the bytes are sniffed
// regardless, so image/svg+xml passes here and fails in Decode with
// ErrUnsupportedFormat.
func IsImageContentType(ct string) bool {
	ct = strings.TrimSpace(ct)
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return (strings.HasPrefix(mt, "image/") && len(mt) > len("image/")) ||
		mt == "application/octet-stream" || mt == "binary/octet-stream"
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
