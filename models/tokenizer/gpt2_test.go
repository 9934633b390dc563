package tokenizer

import (
	"slices"
	"testing"
)

func TestGPT2Encode(t *testing.T) {
	tok := loadGPT2(t)
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"Hello world", []int{15496, 995}},
		{"", []int{}},
		{"<|endoftext|>", []int{50256}},
		{"a cat<|endoftext|>", []int{64, 3797, 50256}},
	} {
		if got := tok.Encode(c.in); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	if id, ok := tok.TokenToID("Ġcat"); !ok || id != 3797 {
		t.Errorf("TokenToID(Ġcat) = %d, %v", id, ok)
	}
	if s, ok := tok.IDToToken(3797); !ok || s != "Ġcat" {
		t.Errorf("IDToToken(3797) = %q, %v", s, ok)
	}
}

func TestGPT2Decode(t *testing.T) {
	tok := loadGPT2(t)
	ids := tok.Encode("a man riding a horse . It 's fine<|endoftext|>")
	if got := tok.Decode(ids, DecodeOptions{}); got != "a man riding a horse . It 's fine<|endoftext|>" {
		t.Errorf("Decode = %q", got)
	}
	if got := tok.Decode(ids, DecodeOptions{SkipSpecialTokens: true, CleanUpTokenizationSpaces: true}); got != "a man riding a horse. It's fine" {
		t.Errorf("Decode(skip, clean) = %q", got)
	}
	// Unknown and negative ids are dropped, as the crate's id_to_token does.
	if got := tok.Decode([]int{-1, 64, 1 << 30, 3797}, DecodeOptions{}); got != "a cat" {
		t.Errorf("Decode with bad ids = %q", got)
	}
	if got := tok.DecodeInt64([]int64{-5, 64, 1 << 40}, DecodeOptions{}); got != "a" {
		t.Errorf("DecodeInt64 with bad ids = %q", got)
	}
	if got := tok.Decode(nil, DecodeOptions{}); got != "" {
		t.Errorf("Decode(nil) = %q", got)
	}
	// "😀" is four byte tokens' worth of UTF-8; cut it short.
	emoji := tok.Encode("😀")
	if got := tok.Decode(emoji[:len(emoji)-1], DecodeOptions{}); got != "\uFFFD" {
		t.Errorf("truncated emoji decodes to %q, want one U+FFFD", got)
	}
}

func TestCleanUpTokenizationSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"a , b . c ! d ? e":        "a, b. c! d? e",
		"do n't I 'm it 's we 've": "don't I'm it's we've",
		"they 're here ' ok":       "they're here'ok",
		"x ' y":                    "x'y",
		"no change":                "no change",
	} {
		if got := cleanUpTokenizationSpaces(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
