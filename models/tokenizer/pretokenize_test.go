package tokenizer

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// onigSpace is Oniguruma's Unicode \s spelled out for RE2, whose own \s is
// ASCII-only.
const onigSpace = `\t\n\x{0B}\f\r \x{85}\p{Z}`

// The patterns of tokenizer.json with \s replaced; CLIP's needs nothing
// else, so RE2 (leftmost-first, like Oniguruma) is an exact reference.
var clipRE = regexp.MustCompile(`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^` + onigSpace + `\p{L}\p{N}]+`)

// gpt2REHead is GPT-2's pattern minus the lookahead alternative; a match
// that is all whitespace stands for \s+(?!\S)|\s+ and is trimmed by hand.
var (
	gpt2REHead = regexp.MustCompile(`^(?:'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^` + onigSpace + `\p{L}\p{N}]+|[` + onigSpace + `]+)`)
	allSpaceRE = regexp.MustCompile(`^[` + onigSpace + `]+$`)
)

func clipPieces(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		start, end := clipNext(s, i)
		if start < 0 {
			break
		}
		out = append(out, s[start:end])
		i = end
	}
	return out
}

func gpt2Pieces(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		e := gpt2Next(s, i)
		out = append(out, s[i:e])
		i = e
	}
	return out
}

func gpt2PiecesRE(s string) []string {
	var out []string
	for len(s) > 0 {
		m := gpt2REHead.FindString(s)
		if allSpaceRE.MatchString(m) && len(m) < len(s) {
			// \s+(?!\S): the next character is not whitespace, so give back
			// one character if that leaves a match.
			if r := []rune(m); len(r) > 1 {
				m = string(r[:len(r)-1])
			}
		}
		out = append(out, m)
		s = s[len(m):]
	}
	return out
}

var pretokenizeAlphabet = []string{
	"a", "Z", "é", "ß", "日", "ع", "0", "7", "٣", "½", "Ⅻ", "'", "'s", "'t", "'re", "'ll", "'S", "’",
	" ", " ", "  ", "\t", "\n", "\r\n", "\v", "\u0085", "\u00a0", "\u3000", "\u2028", "\ufeff", "\u200b",
	"\u180e", "!", "?", ".", ",", "-", "<", "|", ">", "<|endoftext|>", "<|startoftext|>", "😀", "\u0301",
	"\U0001F1FA", "\u200d", "\xff", "\xe2\x82",
}

func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(pretokenizeAlphabet[r.IntN(len(pretokenizeAlphabet))])
	}
	return b.String()
}

func TestCLIPSplitMatchesRegexp(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		s := randomText(r, r.IntN(20))
		got := clipPieces(s)
		if want := clipRE.FindAllString(s, -1); !slices.Equal(got, want) {
			t.Fatalf("%q:\n got  %q\n want %q", s, got, want)
		}
		// CLIP.appendPieces relies on GPT-2's pattern leaving every piece
		// that does not start with '<' whole.
		for _, p := range got {
			if sub := gpt2Pieces(p); p[0] != '<' && len(sub) != 1 {
				t.Fatalf("GPT-2 pattern splits CLIP piece %q into %q", p, sub)
			}
		}
	}
}

func TestGPT2SplitMatchesRegexp(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		s := randomText(r, r.IntN(20))
		got := gpt2Pieces(s)
		if want := gpt2PiecesRE(s); !slices.Equal(got, want) {
			t.Fatalf("%q:\n got  %q\n want %q", s, got, want)
		}
		if strings.Join(got, "") != s {
			t.Fatalf("pieces of %q do not tile it: %q", s, got)
		}
	}
}

func TestGPT2SplitExamples(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"Hello  world", []string{"Hello", " ", " world"}},
		{"Hello   ", []string{"Hello", "   "}},
		{"a\n\nb", []string{"a", "\n", "\n", "b"}},
		{"a \n b", []string{"a", " \n", " b"}},
		{"it's I'M don't", []string{"it", "'s", " I", "'", "M", " don", "'t"}},
		{" 's", []string{" '", "s"}},
		{"123 4567", []string{"123", " 4567"}},
		{"?!  !!", []string{"?!", " ", " !!"}},
		{"a\u00a0b", []string{"a", "\u00a0", "b"}},
	} {
		if got := gpt2Pieces(c.in); !slices.Equal(got, c.want) {
			t.Errorf("gpt2Pieces(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzPretokenizers(f *testing.F) {
	for _, s := range []string{"", "Hello world", "it's  \n\tok", "<|endoftext|>x", "\u0085 \u00a0a", "日本語 123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := clipPieces(s), clipRE.FindAllString(s, -1); !slices.Equal(got, want) {
			// RE2 treats invalid UTF-8 as U+FFFD, and so do we; any other
			// difference is a bug.
			t.Fatalf("clip %q:\n got  %q\n want %q", s, got, want)
		}
		if got, want := gpt2Pieces(s), gpt2PiecesRE(s); !slices.Equal(got, want) {
			t.Fatalf("gpt2 %q:\n got  %q\n want %q", s, got, want)
		}
	})
}
