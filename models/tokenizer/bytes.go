package tokenizer

import "unicode/utf8"

// byteRune is GPT-2's bytes_to_unicode table. Byte-level BPE vocabularies
// store tokens as strings of these runes so that every byte has a visible,
// non-whitespace stand-in: the printable Latin-1 bytes map to themselves and
// the other 68 bytes are shifted, in byte order, to U+0100 and up.
// runeByte is its inverse.
var (
	byteRune [256]rune
	runeByte = make(map[rune]byte, 256)
)

func init() {
	shifted := rune(0)
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !(b >= '!' && b <= '~') && !(b >= 0xA1 && b <= 0xAC) && !(b >= 0xAE && b <= 0xFF) {
			r = 256 + shifted
			shifted++
		}
		byteRune[b] = r
		runeByte[r] = byte(b)
	}
}

// tokenBytes turns a vocabulary token back into the bytes it stands for.
// Like the Hugging Face ByteLevel decoder, a token holding any rune outside
// the table (an added token such as "<|endoftext|>" never does, but a user
// added one might) is passed through as its own UTF-8.
func tokenBytes(tok string) []byte {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := runeByte[r]
		if !ok {
			return []byte(tok)
		}
		out = append(out, b)
	}
	return out
}

// appendLossyUTF8 appends b to dst as valid UTF-8, replacing each maximal
// invalid subsequence with one U+FFFD. This is what Rust's
// String::from_utf8_lossy (used by the Hugging Face ByteLevel decoder) and
// Python's errors="replace" do; Go's utf8.DecodeRune instead reports every
// bad byte on its own, and strings.ToValidUTF8 merges whole runs, so neither
// matches: a truncated 4-byte emoji must become exactly one U+FFFD.
func appendLossyUTF8(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if r, size := utf8.DecodeRune(b[i:]); r != utf8.RuneError || size > 1 {
			dst = append(dst, b[i:i+size]...)
			i += size
			continue
		}
		i += invalidPrefixLen(b[i:])
		dst = append(dst, "\uFFFD"...)
	}
	return dst
}

// invalidPrefixLen reports how many bytes at the start of b (which does not
// begin with a valid sequence) form the longest prefix of some valid
// sequence, or 1 if the first byte cannot start one (Unicode §3.9, D93b).
func invalidPrefixLen(b []byte) int {
	lo, hi := byte(0x80), byte(0xBF)
	var width int
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		width = 2
	case c == 0xE0:
		width, lo = 3, 0xA0
	case c == 0xED:
		width, hi = 3, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		width = 3
	case c == 0xF0:
		width, lo = 4, 0x90
	case c == 0xF4:
		width, hi = 4, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		width = 4
	default:
		return 1
	}
	n := 1
	for ; n < width && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}
