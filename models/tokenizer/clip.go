package tokenizer

import "fmt"

// CLIPContextLength is the sequence length CLIP's text encoder is exported
// with (model_max_length in tokenizer_config.json).
const CLIPContextLength = 77

// CLIP reproduces Hugging Face's CLIPTokenizerFast for byte-level BPE CLIP
// vocabularies: NFC + whitespace collapsing + lower-casing, CLIP's split
// pattern, "</w>" word ends, and <|startoftext|> ... <|endoftext|> framing.
// It is safe for concurrent use.
type CLIP struct {
	model *bpe
	// rawTokens are matched before normalisation, normTokens after it.
	rawTokens, normTokens *tokenMatcher
	// byteLevelRegex mirrors the ByteLevel pre-tokenizer's use_regex: when
	// set, each Split piece is split again by GPT-2's pattern. That only
	// changes pieces such as "<|endoftext|>" that reach the model as text
	// (e.g. from "<|ENDOFTEXT|>"), but those come out differently.
	byteLevelRegex bool
	bos, eos, pad  int
}

// BOS returns the id of <|startoftext|>.
func (t *CLIP) BOS() int { return t.bos }

// EOS returns the id of <|endoftext|>.
func (t *CLIP) EOS() int { return t.eos }

// PadID returns the padding id, <|endoftext|> for CLIP exports.
func (t *CLIP) PadID() int { return t.pad }

// WithPad returns a tokenizer that pads with the vocabulary token tok and
// is otherwise t. The BPE vocabulary is shared by CLIP and the Stable
// Diffusion text encoders, but their padding differs: CLIP's and SD 1.x's
// tokenizers pad with <|endoftext|>, SD 2.x's and SD-Turbo's with "!" (id
// 0). The text encoder reads the padded positions (it has no attention
// mask), so the choice changes its output.
func (t *CLIP) WithPad(tok string) (*CLIP, error) {
	id, ok := t.model.vocab[tok]
	if !ok {
		return nil, fmt.Errorf("tokenizer: clip: pad token %q is not in the vocabulary", tok)
	}
	c := *t
	c.pad = id
	return &c, nil
}

// VocabSize returns one more than the largest token id.
func (t *CLIP) VocabSize() int { return len(t.model.tokens) }

// TokenToID returns the id of a vocabulary token (in its byte-level
// spelling, e.g. "cat</w>").
func (t *CLIP) TokenToID(tok string) (int, bool) {
	id, ok := t.model.vocab[tok]
	return id, ok
}

// IDToToken returns the vocabulary token for id.
func (t *CLIP) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.model.tokens) || t.model.tokens[id] == "" {
		return "", false
	}
	return t.model.tokens[id], true
}

// Encode returns the ids of text framed by BOS and EOS, untruncated: what
// tokenizer(text)["input_ids"] gives in transformers.
func (t *CLIP) Encode(text string) []int {
	ids := make([]int, 0, 2+len(text)/3)
	ids = append(ids, t.bos)
	ids = t.appendText(ids, text)
	return append(ids, t.eos)
}

// EncodeBatch encodes texts for the text encoder's input_ids and
// attention_mask. With maxLen > 0 each row is truncated to maxLen ids
// keeping the final EOS (truncation=True, max_length=maxLen); maxLen < 2 is
// raised to 2 so that BOS and EOS both fit. With pad, rows are padded with
// PadID to maxLen, or to the longest row when maxLen <= 0
// (padding="max_length" / padding=True); without it rows keep their length.
func (t *CLIP) EncodeBatch(texts []string, maxLen int, pad bool) (ids, attentionMask [][]int64) {
	maxLen = clampMaxLen(maxLen)
	rows := t.encodeRows(texts, maxLen)
	width := maxLen
	if pad && width <= 0 {
		for _, r := range rows {
			width = max(width, len(r))
		}
	}
	ids = make([][]int64, len(rows))
	attentionMask = make([][]int64, len(rows))
	for i, r := range rows {
		n := len(r)
		if pad {
			n = max(n, width)
		}
		ids[i], attentionMask[i] = make([]int64, n), make([]int64, n)
		t.fillRow(ids[i], attentionMask[i], r)
	}
	return ids, attentionMask
}

// EncodeBatchFlat is EncodeBatch with padding, flattened row-major into
// len(texts)*width values ready for a [B, width] int64 tensor; width is
// maxLen, or the longest row when maxLen <= 0.
func (t *CLIP) EncodeBatchFlat(texts []string, maxLen int) (ids, attentionMask []int64, width int) {
	maxLen = clampMaxLen(maxLen)
	rows := t.encodeRows(texts, maxLen)
	width = maxLen
	if width <= 0 {
		for _, r := range rows {
			width = max(width, len(r))
		}
	}
	ids = make([]int64, len(rows)*width)
	attentionMask = make([]int64, len(rows)*width)
	for i, r := range rows {
		t.fillRow(ids[i*width:(i+1)*width], attentionMask[i*width:(i+1)*width], r)
	}
	return ids, attentionMask, width
}

// clampMaxLen makes room for BOS and EOS in any positive limit.
func clampMaxLen(maxLen int) int {
	if maxLen > 0 {
		return max(maxLen, 2)
	}
	return maxLen
}

func (t *CLIP) encodeRows(texts []string, maxLen int) [][]int {
	rows := make([][]int, len(texts))
	for i, s := range texts {
		r := t.Encode(s)
		if maxLen > 0 && len(r) > maxLen {
			// The crate truncates the content to maxLen-2 and then adds
			// BOS/EOS, i.e. the EOS survives truncation.
			r = append(r[:maxLen-1], t.eos)
		}
		rows[i] = r
	}
	return rows
}

func (t *CLIP) fillRow(ids, mask []int64, row []int) {
	for j := range ids {
		if j < len(row) {
			ids[j], mask[j] = int64(row[j]), 1
		} else {
			ids[j], mask[j] = int64(t.pad), 0
		}
	}
}

func (t *CLIP) appendText(dst []int, text string) []int {
	t.rawTokens.segments(text, func(raw string, id int) {
		if id >= 0 {
			dst = append(dst, id)
			return
		}
		t.normTokens.segments(clipNormalize(raw), func(s string, id int) {
			if id >= 0 {
				dst = append(dst, id)
				return
			}
			dst = t.appendPieces(dst, s)
		})
	})
	return dst
}

func (t *CLIP) appendPieces(dst []int, s string) []int {
	for i := 0; i < len(s); {
		start, end := clipNext(s, i)
		if start < 0 {
			break
		}
		piece := s[start:end]
		// GPT-2's pattern keeps every Split piece whole except the two
		// "<|...|>" literals (the only pieces mixing letters with other
		// characters), so only a piece starting with '<' needs the scan.
		if !t.byteLevelRegex || piece[0] != '<' {
			dst = t.model.appendWord(dst, piece)
		} else {
			for j := 0; j < len(piece); {
				e := gpt2Next(piece, j)
				dst = t.model.appendWord(dst, piece[j:e])
				j = e
			}
		}
		i = end
	}
	return dst
}
