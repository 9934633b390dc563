package preprocess

import "encoding/binary"

// EXIF: we need exactly one value, the Orientation tag (0x0112) of IFD0, so
// it is read here with a bounded, allocation-free walk instead of a library.
// The candidates were judged and rejected:
//   - github.com/rwcarlsen/goexif: unmaintained since 2019, decodes every tag
//     (maker notes included) with per-tag allocations, and sizes its value
//     slices from the 32-bit tag count after a typeSize*count product that
//     can overflow, so a crafted RATIONAL count makes it allocate ~12 GB.
//   - github.com/dsoprea/go-exif/v3: pulls in go-logging, go-errors,
//     go-utility, yaml and geo, and signals errors with panics internally.
//   - github.com/evanoberholster/imagemeta: pre-1.0 API, depends on zerolog,
//     msgp, geo and cpuid.
// Reading one SHORT from a TIFF IFD is ~60 lines and trivially fuzzable.

// tagOrientation is the EXIF/TIFF Orientation tag.
const tagOrientation = 0x0112

// orientation returns the EXIF orientation (1..8) found in data, or 1.
// PIL's ImageOps.exif_transpose (which rembg calls) reads EXIF from JPEG
// APP1, PNG eXIf and WebP EXIF chunks, so we do too. XMP tiff:Orientation,
// which PIL also honours as a fallback, is ignored (browsers ignore it too).
func orientation(f Format, data []byte) int {
	var tiff []byte
	switch f {
	case FormatJPEG:
		tiff = jpegEXIF(data)
	case FormatPNG:
		tiff = pngEXIF(data)
	case FormatWebP:
		tiff = webpEXIF(data)
	}
	return tiffOrientation(tiff)
}

// jpegEXIF returns the TIFF block of the first "Exif\0\0" APP1 segment, the
// one PIL uses.
func jpegEXIF(b []byte) []byte {
	i := 2 // past SOI
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return nil
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7): // no length
			i += 2
			continue
		case m == 0xDA || m == 0xD9: // metadata precedes the first scan
			return nil
		}
		n := int(b[i+2])<<8 | int(b[i+3])
		if n < 2 || i+2+n > len(b) {
			return nil
		}
		seg := b[i+4 : i+2+n]
		if m == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return seg[6:]
		}
		i += 2 + n
	}
	return nil
}

// pngEXIF returns the eXIf chunk payload. The spec puts eXIf before IDAT,
// but PIL also picks it up after, so the whole chunk list is walked.
func pngEXIF(b []byte) []byte {
	i := 8
	for i+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		if n < 0 || n > len(b)-i-12 {
			return nil
		}
		if typ == "eXIf" {
			return stripExifHeader(b[i+8 : i+8+n])
		}
		if typ == "IEND" {
			return nil
		}
		i += 12 + n
	}
	return nil
}

// webpEXIF returns the EXIF chunk payload of a RIFF/WEBP container.
func webpEXIF(b []byte) []byte {
	i := 12
	for i+8 <= len(b) {
		n := int(le32(b[i+4:]))
		if n < 0 || n > len(b)-i-8 {
			return nil
		}
		if string(b[i:i+4]) == "EXIF" {
			return stripExifHeader(b[i+8 : i+8+n])
		}
		i += 8 + n + n&1 // chunks are padded to even sizes
	}
	return nil
}

// stripExifHeader drops the JPEG-style "Exif\0\0" prefix some writers put
// in PNG and WebP EXIF chunks, which should hold bare TIFF.
func stripExifHeader(b []byte) []byte {
	if len(b) >= 6 && string(b[:6]) == "Exif\x00\x00" {
		return b[6:]
	}
	return b
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF block.
func tiffOrientation(b []byte) int {
	if len(b) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(b[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(b[2:]) != 42 {
		return 1
	}
	off := uint64(bo.Uint32(b[4:]))
	if off+2 > uint64(len(b)) {
		return 1
	}
	n := int(bo.Uint16(b[off:]))
	for k := 0; k < n; k++ {
		e := off + 2 + 12*uint64(k)
		if e+12 > uint64(len(b)) {
			return 1
		}
		if bo.Uint16(b[e:]) != tagOrientation {
			continue
		}
		if bo.Uint32(b[e+4:]) < 1 { // count
			return 1
		}
		var v uint32
		switch bo.Uint16(b[e+2:]) { // type
		case 1: // BYTE
			v = uint32(b[e+8])
		case 3: // SHORT, the type the spec requires
			v = uint32(bo.Uint16(b[e+8:]))
		case 4: // LONG, seen in the wild and accepted by PIL
			v = bo.Uint32(b[e+8:])
		default:
			return 1
		}
		if v >= 1 && v <= 8 {
			return int(v)
		}
		return 1
	}
	return 1
}
