package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

func TestCLIPEncode(t *testing.T) {
	tok := loadCLIP(t)
	// transformers: CLIPTokenizerFast(...)("a photo of a cat").input_ids
	if got, want := tok.Encode("a photo of a cat"), []int{49406, 320, 1125, 539, 320, 2368, 49407}; !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	if got := tok.Encode(""); !slices.Equal(got, []int{49406, 49407}) {
		t.Errorf("Encode(\"\") = %v", got)
	}
	// <|startoftext|> is a normalized added token, <|endoftext|> is not.
	if got := tok.Encode("<|STARTOFTEXT|>"); !slices.Equal(got, []int{49406, 49406, 49407}) {
		t.Errorf("Encode(<|STARTOFTEXT|>) = %v", got)
	}
	if got := tok.Encode("<|ENDOFTEXT|>"); slices.Contains(got[1:len(got)-1], 49407) {
		t.Errorf("Encode(<|ENDOFTEXT|>) = %v: upper-case must not be the special token", got)
	}
	if tok.PadID() != tok.EOS() {
		t.Errorf("pad %d, EOS %d", tok.PadID(), tok.EOS())
	}
	if id, ok := tok.TokenToID("cat</w>"); !ok || id != 2368 {
		t.Errorf("TokenToID(cat</w>) = %d, %v", id, ok)
	}
	if s, ok := tok.IDToToken(2368); !ok || s != "cat</w>" {
		t.Errorf("IDToToken(2368) = %q, %v", s, ok)
	}
	if _, ok := tok.IDToToken(-1); ok {
		t.Error("IDToToken(-1) ok")
	}
}

func TestCLIPEncodeBatch(t *testing.T) {
	tok := loadCLIP(t)
	long := strings.Repeat("cat ", 100)
	texts := []string{"a photo of a cat", "", long}

	ids, mask := tok.EncodeBatch(texts, CLIPContextLength, true)
	for i, row := range ids {
		if len(row) != 77 || len(mask[i]) != 77 {
			t.Fatalf("row %d has %d ids, %d mask", i, len(row), len(mask[i]))
		}
		full := tok.Encode(texts[i])
		n := min(len(full), 77)
		for j := range row {
			wantID, wantMask := int64(49407), int64(0)
			if j < n {
				wantID, wantMask = int64(full[j]), 1
			}
			if j == 76 && len(full) > 77 {
				wantID = 49407 // EOS kept on truncation
			}
			if row[j] != wantID || mask[i][j] != wantMask {
				t.Fatalf("row %d col %d: id %d mask %d, want %d %d", i, j, row[j], mask[i][j], wantID, wantMask)
			}
		}
	}

	// Unpadded rows keep their own length; maxLen <= 0 means no truncation.
	ids, _ = tok.EncodeBatch(texts, 0, false)
	if len(ids[0]) != 7 || len(ids[1]) != 2 || len(ids[2]) != 102 {
		t.Errorf("unpadded lengths %d %d %d", len(ids[0]), len(ids[1]), len(ids[2]))
	}
	ids, mask = tok.EncodeBatch(texts[:2], 0, true)
	if len(ids[1]) != 7 || mask[1][2] != 0 || ids[1][6] != 49407 {
		t.Errorf("pad-to-longest row = %v mask %v", ids[1], mask[1])
	}
	ids, _ = tok.EncodeBatch([]string{"a photo of a cat"}, 1, false)
	if !slices.Equal(ids[0], []int64{49406, 49407}) {
		t.Errorf("maxLen 1 gives %v, want BOS EOS", ids[0])
	}
	flat1, _, w1 := tok.EncodeBatchFlat([]string{"a photo of a cat"}, 1)
	if w1 != 2 || !slices.Equal(flat1, []int64{49406, 49407}) {
		t.Errorf("EncodeBatchFlat maxLen 1 gives %v (width %d)", flat1, w1)
	}
	ids, _ = tok.EncodeBatch([]string{"a photo of a cat"}, 3, false)
	if !slices.Equal(ids[0], []int64{49406, 320, 49407}) {
		t.Errorf("maxLen 3 gives %v", ids[0])
	}

	flat, fmask, width := tok.EncodeBatchFlat(texts, CLIPContextLength)
	rows, rmask := tok.EncodeBatch(texts, CLIPContextLength, true)
	if width != 77 || len(flat) != 3*77 || !slices.Equal(flat, slices.Concat(rows...)) || !slices.Equal(fmask, slices.Concat(rmask...)) {
		t.Errorf("EncodeBatchFlat disagrees with EncodeBatch")
	}
	if _, _, w := tok.EncodeBatchFlat(texts[:2], 0); w != 7 {
		t.Errorf("EncodeBatchFlat width %d, want 7", w)
	}
}

func TestCLIPNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "",
		"a photo":             "a photo",
		"A  Photo\t\nOF":      "a photo of",
		" lead":               " lead",
		"cafe\u0301":          "café",
		"İstanbul":            "i\u0307stanbul",
		"ΟΔΟΣ":                "οδοσ", // no final sigma, unlike JavaScript
		"ǅ":                   "ǆ",
		"a\u00a0\u3000b":      "a b",
		"a\u0085b":            "a b",
		"a\ufeffb":            "a\ufeffb", // not whitespace for Oniguruma
		"ﬁ":                   "ﬁ",        // NFC, not NFKC
		"\u212b":              "å",
		"bad\xffBYTE":         "bad\xffbyte",
		"MiXeD\r\nASCII\v\fX": "mixed ascii x",
	} {
		if got := clipNormalize(in); got != want {
			t.Errorf("clipNormalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTokenMatcher(t *testing.T) {
	m := newTokenMatcher([]addedToken{
		{ID: 1, Content: "<a>"},
		{ID: 2, Content: "<a>b"},
		{ID: 3, Content: "b<"},
		{ID: 4, Content: "N", Normalized: true},
	}, false, nil)
	var got []string
	m.segments("xb<a>b<a>y<a", func(s string, id int) {
		got = append(got, s+":"+string(rune('0'+id+1)))
	})
	// Leftmost wins ("b<" at 1 over "<a>b" at 2), then longest at a tie.
	want := []string{"x:0", "b<:4", "a>:0", "b<:4", "a>y<a:0"}
	if !slices.Equal(got, want) {
		t.Errorf("segments = %q, want %q", got, want)
	}
	got = nil
	m.segments("<a>b<a>", func(s string, id int) { got = append(got, s) })
	if !slices.Equal(got, []string{"<a>b", "<a>"}) {
		t.Errorf("segments = %q", got)
	}
}

// Stable Diffusion 2.x and SD-Turbo pad with "!" where CLIP pads with
// <|endoftext|>: diffusers' pipelines call the tokenizer with
// padding="max_length", max_length=77, truncation=True, so the padded
// positions differ and nothing else does.
func TestCLIPWithPad(t *testing.T) {
	clip := loadCLIP(t)
	sd, err := clip.WithPad("!")
	if err != nil {
		t.Fatal(err)
	}
	if sd.PadID() != 0 || clip.PadID() != 49407 {
		t.Fatalf("pad ids: sd %d, clip %d", sd.PadID(), clip.PadID())
	}
	texts := []string{"a photo of a cat", "", strings.Repeat("red ", 90)}
	sdIDs, sdMask, w := sd.EncodeBatchFlat(texts, CLIPContextLength)
	clipIDs, clipMask, _ := clip.EncodeBatchFlat(texts, CLIPContextLength)
	if w != 77 {
		t.Fatalf("width %d", w)
	}
	if !slices.Equal(sdMask, clipMask) {
		t.Error("padding changed the attention mask")
	}
	for i := range sdIDs {
		switch {
		case sdMask[i] == 1 && sdIDs[i] != clipIDs[i]:
			t.Fatalf("position %d: sd %d, clip %d: only padding may differ", i, sdIDs[i], clipIDs[i])
		case sdMask[i] == 0 && (sdIDs[i] != 0 || clipIDs[i] != 49407):
			t.Fatalf("padding at %d: sd %d, clip %d", i, sdIDs[i], clipIDs[i])
		}
	}
	// "a photo of a cat": BOS, 5 words, EOS, then 70 "!".
	want := append([]int64{49406, 320, 1125, 539, 320, 2368, 49407}, make([]int64, 70)...)
	if !slices.Equal(sdIDs[:77], want) {
		t.Errorf("sd row 0 = %v", sdIDs[:77])
	}
	// Truncation keeps EOS last, whatever the padding.
	if sdIDs[3*77-1] != 49407 || sdMask[3*77-1] != 1 {
		t.Errorf("truncated row ends %d (mask %d)", sdIDs[3*77-1], sdMask[3*77-1])
	}
	// The original is untouched.
	if _, _, _ = clip.EncodeBatchFlat(texts[:1], 77); clip.PadID() != 49407 {
		t.Error("WithPad changed the original")
	}
	if _, err := clip.WithPad("no-such-token"); err == nil {
		t.Error("unknown pad token accepted")
	}
}
