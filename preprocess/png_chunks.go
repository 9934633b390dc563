//go:build libdeflate

package preprocess

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

type pngHeader struct {
	w, h                                      int
	depth, colorType, interlace, comp, filter byte
	trns                                      bool
}

// channels is the samples per pixel the native path decodes, or 0 for
// what it leaves to image/png: other bit depths, palettes, interlacing,
// and colour-key transparency (tRNS on grey or RGB).
func (h pngHeader) channels() int {
	if h.depth != 8 || h.interlace != 0 || h.comp != 0 || h.filter != 0 || h.trns {
		return 0
	}
	switch h.colorType {
	case 0:
		return 1
	case 4:
		return 2
	case 2:
		return 3
	case 6:
		return 4
	}
	return 0
}

// parsePNG walks the chunks, checking every CRC as image/png and PIL do,
// and returns the header and the zlib stream (the IDAT chunks' data,
// joined when there are several). A file without IEND is truncated.
func parsePNG(data []byte) (pngHeader, []byte, error) {
	var (
		hdr   pngHeader
		idats [][]byte
		total int
	)
	truncated := fmt.Errorf("%w: png: %w", ErrCorrupt, io.ErrUnexpectedEOF)
	p := data[8:]
	for first := true; ; first = false {
		if len(p) < 12 {
			return hdr, nil, truncated
		}
		n := binary.BigEndian.Uint32(p)
		if uint64(n)+12 > uint64(len(p)) {
			return hdr, nil, truncated
		}
		typ, body := string(p[4:8]), p[8:8+n]
		if crc32.ChecksumIEEE(p[4:8+n]) != binary.BigEndian.Uint32(p[8+n:]) {
			return hdr, nil, fmt.Errorf("%w: png: invalid checksum in %q chunk", ErrCorrupt, typ)
		}
		p = p[12+n:]
		if first != (typ == "IHDR") {
			return hdr, nil, fmt.Errorf("%w: png: IHDR is not the first chunk", ErrCorrupt)
		}
		switch typ {
		case "IHDR":
			if n != 13 {
				return hdr, nil, fmt.Errorf("%w: png: bad IHDR length", ErrCorrupt)
			}
			hdr.w, hdr.h = int(binary.BigEndian.Uint32(body)), int(binary.BigEndian.Uint32(body[4:]))
			hdr.depth, hdr.colorType, hdr.comp, hdr.filter, hdr.interlace = body[8], body[9], body[10], body[11], body[12]
		case "tRNS":
			hdr.trns = true
		case "IDAT":
			idats = append(idats, body)
			total += len(body)
		case "IEND":
			if len(idats) == 0 {
				return hdr, nil, fmt.Errorf("%w: png: no IDAT chunk", ErrCorrupt)
			}
			if len(idats) == 1 {
				return hdr, idats[0], nil
			}
			z := make([]byte, 0, total)
			for _, b := range idats {
				z = append(z, b...)
			}
			return hdr, z, nil
		}
	}
}
