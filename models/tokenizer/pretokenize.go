package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The pre-tokenisers are hand-written scanners rather than regexps:
//   - GPT-2's pattern needs the lookahead \s+(?!\S), which Go's RE2 lacks;
//   - the Rust crate compiles both patterns with Oniguruma, whose \s is
//     Unicode whitespace (U+0085, U+00A0, U+3000, ...) while RE2's is ASCII
//     only, so even CLIP's lookahead-free pattern would need rewriting;
//   - a scanner returns indices into the input and allocates nothing.
// Each scanner mirrors its regex alternative by alternative, in order, so
// the leftmost-first semantics of the backtracking engine carry over.

// charClass is the partition \s / \p{L} / \p{N} / everything else that
// both patterns are written in.
type charClass uint8

const (
	classOther charClass = iota
	classSpace
	classLetter
	classNumber
)

var asciiClass = func() (t [utf8.RuneSelf]charClass) {
	for c := range t {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			t[c] = classLetter
		case c >= '0' && c <= '9':
			t[c] = classNumber
		case c == ' ', c >= '\t' && c <= '\r':
			t[c] = classSpace
		}
	}
	return t
}()

// classAt classifies the character at s[i] and returns its width. Invalid
// UTF-8 (impossible in the Python/Rust reference) counts as one "other"
// byte, so it still reaches the byte-level encoder intact.
func classAt(s string, i int) (charClass, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	switch {
	// unicode.IsSpace is exactly Oniguruma's Unicode \s: U+0009-000D,
	// U+0085 and the Zs/Zl/Zp categories (U+180E and U+FEFF excluded).
	case unicode.IsSpace(r):
		return classSpace, w
	case unicode.IsLetter(r):
		return classLetter, w
	case unicode.IsNumber(r):
		return classNumber, w
	}
	return classOther, w
}

// runEnd returns the end of the run of class c starting at i.
func runEnd(s string, i int, c charClass) int {
	for i < len(s) {
		cc, w := classAt(s, i)
		if cc != c {
			break
		}
		i += w
	}
	return i
}

// contractionLen matches 's|'t|'re|'ve|'m|'ll|'d at s[i:] (case-sensitive,
// as in both patterns) and returns its length, or 0.
func contractionLen(s string, i int) int {
	if i+1 >= len(s) || s[i] != '\'' {
		return 0
	}
	switch s[i+1] {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(s) && s[i+2] == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(s) && s[i+2] == 'l' {
			return 3
		}
	}
	return 0
}

// gpt2Next returns the end of the pre-token that starts at s[i], for
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Pre-tokens tile the input: the next one starts where this one ends.
func gpt2Next(s string, i int) int {
	if n := contractionLen(s, i); n > 0 {
		return i + n
	}
	c, w := classAt(s, i)
	// " ?X+": a single ASCII space binds to the run that follows it.
	if s[i] == ' ' && i+1 < len(s) {
		if c2, w2 := classAt(s, i+1); c2 != classSpace {
			return runEnd(s, i+1+w2, c2)
		}
	}
	if c != classSpace {
		return runEnd(s, i+w, c)
	}
	end := runEnd(s, i+w, classSpace)
	if end == len(s) {
		return end
	}
	// \s+(?!\S): before a non-space, leave the run's last character behind
	// (so " word" keeps its space) unless that would leave nothing, in which
	// case \s+ takes the lone character.
	_, lastW := utf8.DecodeLastRuneInString(s[:end])
	if end-lastW > i {
		return end - lastW
	}
	return end
}

// clipNext finds the next match at or after s[i] of CLIP's Split pattern
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// and returns its bounds; start is -1 when there is none. Text between
// matches is whitespace, which the Split (behaviour Removed, inverted) drops.
func clipNext(s string, i int) (start, end int) {
	for i < len(s) {
		if s[i] == '<' {
			for _, lit := range [...]string{"<|startoftext|>", "<|endoftext|>"} {
				if strings.HasPrefix(s[i:], lit) {
					return i, i + len(lit)
				}
			}
		}
		if n := contractionLen(s, i); n > 0 {
			return i, i + n
		}
		c, w := classAt(s, i)
		switch c {
		case classSpace:
			i += w
			continue
		case classNumber:
			// [\p{N}] without "+": CLIP splits numbers into single digits.
			return i, i + w
		}
		return i, runEnd(s, i+w, c)
	}
	return -1, -1
}
