package tokenizer

import (
	"strings"
	"testing"
)

// The goldens come from Hugging Face's Rust tokenizers (through its npm
// binding), see scripts/dev/tokenizer-goldens. Every entry is checked.

func TestCLIPGoldens(t *testing.T) {
	tok := loadCLIP(t)
	var g clipGolden
	readGolden(t, "clip_goldens.json", &g)
	if len(g.Entries) < 250 {
		t.Fatalf("only %d golden entries", len(g.Entries))
	}
	failures := 0
	for i, e := range g.Entries {
		if d := diffIDs(tok.Encode(e.Text), e.IDs); d != "" {
			t.Errorf("entry %d, Encode(%q):\n%s", i, e.Text, d)
			failures++
		}
		want := e.IDs
		if e.IDsTruncated != nil {
			want = e.IDsTruncated
		}
		ids, mask := tok.EncodeBatch([]string{e.Text}, CLIPContextLength, false)
		if d := diffIDs(ids[0], want); d != "" {
			t.Errorf("entry %d, truncated to %d, %q:\n%s", i, CLIPContextLength, e.Text, d)
			failures++
		}
		for j, m := range mask[0] {
			if m != 1 {
				t.Errorf("entry %d: unpadded mask[%d] = %d", i, j, m)
			}
		}
		if failures > 20 {
			t.Fatal("too many failures")
		}
	}
	t.Logf("%d CLIP goldens from %s", len(g.Entries), g.Reference)
}

func TestGPT2Goldens(t *testing.T) {
	tok := loadGPT2(t)
	var g gpt2Golden
	readGolden(t, "gpt2_goldens.json", &g)
	if len(g.Entries) < 250 {
		t.Fatalf("only %d golden entries", len(g.Entries))
	}
	failures := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		failures++
		if failures > 20 {
			t.Fatal("too many failures")
		}
	}
	for i, e := range g.Entries {
		if d := diffIDs(tok.Encode(e.Text), e.IDs); d != "" {
			fail("entry %d, Encode(%q):\n%s", i, e.Text, d)
		}
		dec := tok.Decode(e.IDs, DecodeOptions{})
		if d := diffString(dec, e.Decoded); d != "" {
			fail("entry %d, Decode of %q:\n%s", i, e.Text, d)
		}
		if e.Roundtrip != (dec == e.Text) {
			fail("entry %d: round trip of %q is %v, reference says %v", i, e.Text, dec == e.Text, e.Roundtrip)
		}
		want := e.Decoded
		if e.DecodedSkipSpecial != nil {
			want = *e.DecodedSkipSpecial
		}
		if d := diffString(tok.Decode(e.IDs, DecodeOptions{SkipSpecialTokens: true}), want); d != "" {
			fail("entry %d, Decode(skip_special_tokens) of %q:\n%s", i, e.Text, d)
		}
		want = e.Decoded
		if e.DecodedClean != nil {
			want = *e.DecodedClean
		}
		if d := diffString(tok.Decode(e.IDs, DecodeOptions{CleanUpTokenizationSpaces: true}), want); d != "" {
			fail("entry %d, Decode(clean_up_tokenization_spaces) of %q:\n%s", i, e.Text, d)
		}
	}
	for i, c := range g.DecodeCases {
		if d := diffString(tok.Decode(c.IDs, DecodeOptions{}), c.Decoded); d != "" {
			fail("decode case %d, ids %v:\n%s", i, c.IDs, d)
		}
		want := c.Decoded
		if c.DecodedSkipSpecial != nil {
			want = *c.DecodedSkipSpecial
		}
		if d := diffString(tok.Decode(c.IDs, DecodeOptions{SkipSpecialTokens: true}), want); d != "" {
			fail("decode case %d (skip special), ids %v:\n%s", i, c.IDs, d)
		}
		ids64 := make([]int64, len(c.IDs))
		for j, id := range c.IDs {
			ids64[j] = int64(id)
		}
		if d := diffString(tok.DecodeInt64(ids64, DecodeOptions{}), c.Decoded); d != "" {
			fail("decode case %d (int64), ids %v:\n%s", i, c.IDs, d)
		}
	}
	t.Logf("%d GPT-2 goldens and %d decode cases from %s", len(g.Entries), len(g.DecodeCases), g.Reference)
}

// The failure messages must point at the first differing position.
func TestDiffMessages(t *testing.T) {
	if d := diffIDs([]int{1, 2, 3}, []int64{1, 2, 3}); d != "" {
		t.Errorf("equal ids reported: %s", d)
	}
	if d := diffIDs([]int{1, 9, 3}, []int{1, 2, 3}); !strings.Contains(d, "position 1: got 9, want 2") {
		t.Errorf("diffIDs message: %s", d)
	}
	if d := diffIDs([]int{1, 2}, []int{1, 2, 3}); !strings.Contains(d, "lengths differ (got 2, want 3)") {
		t.Errorf("diffIDs message: %s", d)
	}
	if d := diffString("héllo", "hélLo"); !strings.Contains(d, "rune 3") {
		t.Errorf("diffString message: %s", d)
	}
}
