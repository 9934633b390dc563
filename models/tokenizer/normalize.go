package tokenizer

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// clipNormalize applies CLIP's tokenizer.json normalizer,
// Sequence[NFC, Replace(\s+ -> " "), Lowercase], in that order. The fast
// tokenizer uses this instead of the slow one's ftfy + html.unescape +
// basic_clean, so we do too.
func clipNormalize(s string) string {
	if out, ok := clipNormalizeASCII(s); ok {
		return out
	}
	s = norm.NFC.String(s)
	buf := make([]byte, 0, len(s)+8)
	inSpace := false
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 {
			// Keep invalid bytes as they are; see classAt.
			buf = append(buf, s[i])
			i++
			inSpace = false
			continue
		}
		i += w
		// Oniguruma's \s (see classAt), collapsing each run to one space.
		if unicode.IsSpace(r) {
			if !inSpace {
				buf = append(buf, ' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		buf = appendLower(buf, r)
	}
	return string(buf)
}

// appendLower lowercases like Rust's char::to_lowercase, which the Lowercase
// normalizer calls per character: Unicode's simple mapping plus the one
// unconditional multi-character mapping, U+0130 -> "i\u0307". Being
// per-character it has no final-sigma rule, so 'Σ' always becomes 'σ'
// (JavaScript's toLowerCase differs here).
func appendLower(buf []byte, r rune) []byte {
	if r == '\u0130' {
		return append(buf, "i\u0307"...)
	}
	return utf8.AppendRune(buf, unicode.ToLower(r))
}

// clipNormalizeASCII handles pure-ASCII input, which NFC leaves alone,
// without allocating when nothing needs to change. ok is false if s has
// any non-ASCII byte.
func clipNormalizeASCII(s string) (string, bool) {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			return "", false
		case c >= 'A' && c <= 'Z', c != ' ' && asciiClass[c] == classSpace,
			c == ' ' && i > 0 && s[i-1] == ' ':
			clean = false
		}
	}
	if clean {
		return s, true
	}
	buf := make([]byte, 0, len(s))
	inSpace := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if asciiClass[c] == classSpace {
			if !inSpace {
				buf = append(buf, ' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return string(buf), true
}
