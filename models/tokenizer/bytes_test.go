package tokenizer

import (
	"testing"
	"unicode"
)

func TestByteRuneTable(t *testing.T) {
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		r := byteRune[b]
		if seen[r] {
			t.Fatalf("rune %U used twice", r)
		}
		seen[r] = true
		// The point of the table: no token character is whitespace or a
		// control character, so vocabularies stay printable.
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			t.Errorf("byte %#x maps to unprintable %U", b, r)
		}
		if back, ok := runeByte[r]; !ok || int(back) != b {
			t.Errorf("runeByte[%U] = %d, %v; want %d", r, back, ok, b)
		}
	}
	// Spot checks against GPT-2's published table.
	for b, want := range map[byte]rune{' ': 'Ġ', '\n': 'Ċ', 'a': 'a', 0: 'Ā', 0xAD: 'Ń', 0xFF: 'ÿ'} {
		if byteRune[b] != want {
			t.Errorf("byteRune[%#x] = %q, want %q", b, byteRune[b], want)
		}
	}
}

func TestTokenBytes(t *testing.T) {
	if got := string(tokenBytes("ĠhelloĊ")); got != " hello\n" {
		t.Errorf("tokenBytes = %q", got)
	}
	// A rune outside the table makes the whole token pass through as UTF-8.
	if got := string(tokenBytes("Ġ日本")); got != "Ġ日本" {
		t.Errorf("tokenBytes = %q", got)
	}
}

// Expectations are Python's bytes.decode("utf-8", "replace"), which follows
// the same maximal-subpart rule as Rust's from_utf8_lossy.
func TestAppendLossyUTF8(t *testing.T) {
	const R = "\uFFFD"
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"plain ascii", "plain ascii"},
		{"héllo 日本 😀", "héllo 日本 😀"},
		{"\xf0", R},
		{"\x80", R},
		{"\xc3", R},
		{"\xc3(", R + "("},
		{"\xe2\x82", R},
		{"\xe2\x82(", R + "("},
		{"\xf0\x9f\x98", R},
		{"\xf0\x9f\x98(", R + "("},
		{"\xed\xa0\x80", R + R + R}, // surrogate
		{"\xc0\xaf", R + R},         // overlong
		{"\xf5\x80", R + R},
		{"\xff", R},
		{"\xe0\x80\x80", R + R + R},
		{"\xf4\x90\x80\x80", R + R + R + R}, // above U+10FFFF
		{"\x80\x80\x80", R + R + R},
		{"a\xf0\x9fa", "a" + R + "a"},
		{"\xe0\xa0", R},
		{"\xf1\x80\x80", R},
		{"\xef\xbf\xbd", R},
		{"\xf0\x9f\x98\x80\x80", "😀" + R},
		{"\xdf\xbf\xbf", "\u07ff" + R},
	} {
		if got := string(appendLossyUTF8(nil, []byte(c.in))); got != c.want {
			t.Errorf("appendLossyUTF8(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
