package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// GPT2 reproduces Hugging Face's GPT2TokenizerFast: byte-level BPE with
// GPT-2's pre-tokenisation pattern, no BOS/EOS added, and added tokens
// (<|endoftext|>) recognised in the text. It is safe for concurrent use.
type GPT2 struct {
	model *bpe
	// As in the crate, added tokens flagged normalized are matched in a
	// second pass over what the first (raw) pass left; with no normalizer
	// that only matters for the order in which overlapping tokens win.
	rawTokens, normTokens *tokenMatcher
	eos                   int
	// decodeBytes[id] is what the ByteLevel decoder emits for id; nil for
	// unused ids, which decode skips like the crate does.
	decodeBytes [][]byte
	special     []bool
}

// DecodeOptions mirror the keyword arguments of transformers' decode.
type DecodeOptions struct {
	// SkipSpecialTokens drops special tokens such as <|endoftext|>.
	SkipSpecialTokens bool
	// CleanUpTokenizationSpaces removes the space before punctuation and
	// English contractions (" ." -> ".", " 's" -> "'s"). transformers applies
	// it by default for the caption model, whose tokenizer_config.json sets
	// clean_up_tokenization_spaces=true; the tokenizers crate never does.
	CleanUpTokenizationSpaces bool
}

// EOS returns the id of <|endoftext|>, which GPT-2 uses as BOS, EOS and
// padding alike.
func (t *GPT2) EOS() int { return t.eos }

// VocabSize returns one more than the largest token id.
func (t *GPT2) VocabSize() int { return len(t.decodeBytes) }

// TokenToID returns the id of a vocabulary token (in its byte-level
// spelling, e.g. "Ġcat").
func (t *GPT2) TokenToID(tok string) (int, bool) {
	id, ok := t.model.vocab[tok]
	return id, ok
}

// IDToToken returns the vocabulary token for id.
func (t *GPT2) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.model.tokens) || t.model.tokens[id] == "" {
		return "", false
	}
	return t.model.tokens[id], true
}

// IsSpecial reports whether id is a special token.
func (t *GPT2) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// Encode returns the ids of text; no BOS/EOS is added, as in transformers.
func (t *GPT2) Encode(text string) []int {
	ids := make([]int, 0, 1+len(text)/3)
	t.rawTokens.segments(text, func(raw string, id int) {
		if id >= 0 {
			ids = append(ids, id)
			return
		}
		t.normTokens.segments(raw, func(s string, id int) {
			if id >= 0 {
				ids = append(ids, id)
				return
			}
			for i := 0; i < len(s); {
				e := gpt2Next(s, i)
				ids = t.model.appendWord(ids, s[i:e])
				i = e
			}
		})
	})
	return ids
}

// Decode turns ids back into text. Unknown ids are skipped, and bytes that
// do not form valid UTF-8 (a character cut between tokens, or a nonsense
// sequence from a model) become U+FFFD per maximal invalid subsequence, as
// in the crate's ByteLevel decoder.
func (t *GPT2) Decode(ids []int, opts DecodeOptions) string {
	return decodeIDs(t, ids, opts)
}

// DecodeInt64 is Decode for ids straight from an int64 model output.
func (t *GPT2) DecodeInt64(ids []int64, opts DecodeOptions) string {
	return decodeIDs(t, ids, opts)
}

func decodeIDs[T int | int64](t *GPT2, ids []T, opts DecodeOptions) string {
	var buf []byte
	for _, v := range ids {
		if v < 0 || v >= T(len(t.decodeBytes)) {
			continue
		}
		id := int(v)
		if opts.SkipSpecialTokens && t.special[id] {
			continue
		}
		buf = append(buf, t.decodeBytes[id]...)
	}
	var s string
	if utf8.Valid(buf) {
		s = string(buf)
	} else {
		s = string(appendLossyUTF8(make([]byte, 0, len(buf)+8), buf))
	}
	if opts.CleanUpTokenizationSpaces {
		s = cleanUpTokenizationSpaces(s)
	}
	return s
}

// cleanUpPairs is transformers' clean_up_tokenization: chained str.replace
// calls, applied here in the same order, each over the previous result.
var cleanUpPairs = [...][2]string{
	{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
	{" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
}

func cleanUpTokenizationSpaces(s string) string {
	for _, p := range cleanUpPairs {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}
