package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// The patterns the scanners in pretokenize.go implement. A tokenizer.json
// asking for anything else is rejected rather than tokenised wrongly.
const (
	clipSplitPattern = `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
	clipSuffix       = "</w>"
	clipBOS          = "<|startoftext|>"
	clipEOS          = "<|endoftext|>"
	gpt2EOS          = "<|endoftext|>"
)

// LoadCLIP loads a CLIP tokenizer from the root of fsys: tokenizer.json when
// present, otherwise vocab.json and merges.txt.
func LoadCLIP(fsys fs.FS) (*CLIP, error) {
	if data, err := fs.ReadFile(fsys, "tokenizer.json"); err == nil {
		return NewCLIPFromTokenizerJSON(data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	vocab, merges, err := readVocabMerges(fsys)
	if err != nil {
		return nil, err
	}
	return NewCLIPFromVocabMerges(vocab, merges)
}

// LoadCLIPDir is LoadCLIP for a directory on disk.
func LoadCLIPDir(dir string) (*CLIP, error) { return LoadCLIP(os.DirFS(dir)) }

// LoadGPT2 loads a GPT-2 tokenizer from the root of fsys: tokenizer.json
// when present, otherwise vocab.json and merges.txt.
func LoadGPT2(fsys fs.FS) (*GPT2, error) {
	if data, err := fs.ReadFile(fsys, "tokenizer.json"); err == nil {
		return NewGPT2FromTokenizerJSON(data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	vocab, merges, err := readVocabMerges(fsys)
	if err != nil {
		return nil, err
	}
	return NewGPT2FromVocabMerges(vocab, merges)
}

// LoadGPT2Dir is LoadGPT2 for a directory on disk.
func LoadGPT2Dir(dir string) (*GPT2, error) { return LoadGPT2(os.DirFS(dir)) }

func readVocabMerges(fsys fs.FS) (vocab, merges []byte, err error) {
	if vocab, err = fs.ReadFile(fsys, "vocab.json"); err != nil {
		return nil, nil, fmt.Errorf("tokenizer: neither tokenizer.json nor vocab.json: %w", err)
	}
	if merges, err = fs.ReadFile(fsys, "merges.txt"); err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	return vocab, merges, nil
}

// NewCLIPFromVocabMerges builds a CLIP tokenizer from the slow tokenizer's
// files. The pipeline is the one Hugging Face's converter writes into
// tokenizer.json (and the Xenova export carries), so both loaders agree.
func NewCLIPFromVocabMerges(vocabJSON, mergesTxt []byte) (*CLIP, error) {
	vocab, merges, err := parseVocabMerges(vocabJSON, mergesTxt)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: clip: %w", err)
	}
	var added []addedToken
	for _, a := range []struct {
		content    string
		normalized bool
	}{{clipBOS, true}, {clipEOS, false}} {
		id, ok := vocab[a.content]
		if !ok {
			return nil, fmt.Errorf("tokenizer: clip: %q missing from vocab.json", a.content)
		}
		added = append(added, addedToken{ID: id, Content: a.content, Normalized: a.normalized, Special: true})
	}
	return newCLIP(vocab, merges, clipSuffix, clipEOS, added, true, added[0].ID, added[1].ID, added[1].ID)
}

// NewGPT2FromVocabMerges builds a GPT-2 tokenizer from the slow tokenizer's
// files, with <|endoftext|> as its only added token.
func NewGPT2FromVocabMerges(vocabJSON, mergesTxt []byte) (*GPT2, error) {
	vocab, merges, err := parseVocabMerges(vocabJSON, mergesTxt)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: gpt2: %w", err)
	}
	id, ok := vocab[gpt2EOS]
	if !ok {
		return nil, fmt.Errorf("tokenizer: gpt2: %q missing from vocab.json", gpt2EOS)
	}
	return newGPT2(vocab, merges, "", []addedToken{{ID: id, Content: gpt2EOS, Special: true}})
}

// NewCLIPFromTokenizerJSON builds a CLIP tokenizer from a Hugging Face
// tokenizer.json, checking that its pipeline is the one implemented here.
func NewCLIPFromTokenizerJSON(data []byte) (*CLIP, error) {
	tj, vocab, merges, err := parseTokenizerJSON(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: clip: %w", err)
	}
	fail := func(format string, args ...any) (*CLIP, error) {
		return nil, fmt.Errorf("tokenizer: clip: unsupported tokenizer.json: "+format, args...)
	}

	n := tj.Normalizer
	if n == nil || n.Type != "Sequence" || len(n.Normalizers) != 3 ||
		n.Normalizers[0].Type != "NFC" ||
		n.Normalizers[1].Type != "Replace" || n.Normalizers[1].Pattern.Regex == nil ||
		*n.Normalizers[1].Pattern.Regex != `\s+` || n.Normalizers[1].Content != " " ||
		n.Normalizers[2].Type != "Lowercase" {
		return fail("normalizer is not Sequence[NFC, Replace(\\s+, \" \"), Lowercase]")
	}

	p := tj.PreTokenizer
	if p == nil || p.Type != "Sequence" || len(p.Pretokenizers) != 2 {
		return fail("pre_tokenizer is not Sequence[Split, ByteLevel]")
	}
	split, bl := p.Pretokenizers[0], p.Pretokenizers[1]
	if split.Type != "Split" || split.Pattern.Regex == nil || *split.Pattern.Regex != clipSplitPattern ||
		split.Behavior != "Removed" || !split.Invert {
		return fail("first pre-tokenizer is not CLIP's Split(Removed, invert)")
	}
	if err := checkByteLevel(bl); err != nil {
		return fail("%v", err)
	}

	pp := tj.PostProcessor
	if pp == nil || pp.Type != "RobertaProcessing" {
		return fail("post_processor is not RobertaProcessing")
	}
	bos, eos, err := pp.clsSep()
	if err != nil {
		return fail("%v", err)
	}
	if err := tj.Model.check(); err != nil {
		return fail("%v", err)
	}
	suffix := ""
	if tj.Model.EndOfWordSuffix != nil {
		suffix = *tj.Model.EndOfWordSuffix
	}
	unk := ""
	if tj.Model.UnkToken != nil {
		unk = *tj.Model.UnkToken
	}
	added, err := tj.added()
	if err != nil {
		return fail("%v", err)
	}
	padID := eos
	if tj.Padding != nil && tj.Padding.PadID != nil {
		padID = *tj.Padding.PadID
	}
	return newCLIP(vocab, merges, suffix, unk, added, bl.useRegex(), bos, eos, padID)
}

// NewGPT2FromTokenizerJSON builds a GPT-2 tokenizer from a Hugging Face
// tokenizer.json, checking that its pipeline is the one implemented here.
// The file's truncation and padding sections are ignored: transformers
// resets both on every call unless asked for them.
func NewGPT2FromTokenizerJSON(data []byte) (*GPT2, error) {
	tj, vocab, merges, err := parseTokenizerJSON(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: gpt2: %w", err)
	}
	fail := func(format string, args ...any) (*GPT2, error) {
		return nil, fmt.Errorf("tokenizer: gpt2: unsupported tokenizer.json: "+format, args...)
	}
	if tj.Normalizer != nil {
		return fail("has a normalizer (%s)", tj.Normalizer.Type)
	}
	if tj.PreTokenizer == nil {
		return fail("has no pre_tokenizer")
	}
	if err := checkByteLevel(*tj.PreTokenizer); err != nil {
		return fail("%v", err)
	}
	if !tj.PreTokenizer.useRegex() {
		return fail("ByteLevel pre-tokenizer without use_regex")
	}
	if pp := tj.PostProcessor; pp != nil && pp.Type != "ByteLevel" {
		return fail("post_processor %s would add tokens", pp.Type)
	}
	if d := tj.Decoder; d == nil || d.Type != "ByteLevel" {
		return fail("decoder is not ByteLevel")
	}
	if err := tj.Model.check(); err != nil {
		return fail("%v", err)
	}
	if s := tj.Model.EndOfWordSuffix; s != nil && *s != "" {
		return fail("end_of_word_suffix %q", *s)
	}
	added, err := tj.added()
	if err != nil {
		return fail("%v", err)
	}
	unk := ""
	if tj.Model.UnkToken != nil {
		unk = *tj.Model.UnkToken
	}
	return newGPT2(vocab, merges, unk, added)
}

func newCLIP(vocab map[string]int, merges [][2]string, suffix, unk string, added []addedToken,
	byteLevelRegex bool, bos, eos, pad int) (*CLIP, error) {
	model, err := newBPE(vocab, merges, suffix, unk, defaultCacheSize)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: clip: %w", err)
	}
	if err := addTokens(model, added); err != nil {
		return nil, fmt.Errorf("tokenizer: clip: %w", err)
	}
	return &CLIP{
		model:          model,
		rawTokens:      newTokenMatcher(added, false, nil),
		normTokens:     newTokenMatcher(added, true, clipNormalize),
		byteLevelRegex: byteLevelRegex,
		bos:            bos,
		eos:            eos,
		pad:            pad,
	}, nil
}

func newGPT2(vocab map[string]int, merges [][2]string, unk string, added []addedToken) (*GPT2, error) {
	model, err := newBPE(vocab, merges, "", unk, defaultCacheSize)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: gpt2: %w", err)
	}
	if err := addTokens(model, added); err != nil {
		return nil, fmt.Errorf("tokenizer: gpt2: %w", err)
	}
	t := &GPT2{
		model:       model,
		rawTokens:   newTokenMatcher(added, false, nil),
		normTokens:  newTokenMatcher(added, true, nil),
		decodeBytes: make([][]byte, len(model.tokens)),
		special:     make([]bool, len(model.tokens)),
		eos:         -1,
	}
	for id, tok := range model.tokens {
		if tok != "" {
			t.decodeBytes[id] = tokenBytes(tok)
		}
	}
	for _, a := range added {
		t.special[a.ID] = a.Special
		if a.Content == gpt2EOS {
			t.eos = a.ID
		}
	}
	if t.eos < 0 {
		return nil, fmt.Errorf("tokenizer: gpt2: no %q token", gpt2EOS)
	}
	return t, nil
}

// addTokens makes added tokens known to the id <-> token tables, growing
// them for ids beyond the model vocabulary.
func addTokens(m *bpe, added []addedToken) error {
	for _, a := range added {
		if a.ID < 0 {
			return fmt.Errorf("added token %q has negative id", a.Content)
		}
		for a.ID >= len(m.tokens) {
			m.tokens = append(m.tokens, "")
		}
		if cur := m.tokens[a.ID]; cur != "" && cur != a.Content {
			return fmt.Errorf("added token %q reuses id %d of %q", a.Content, a.ID, cur)
		}
		m.tokens[a.ID] = a.Content
		m.vocab[a.Content] = a.ID
	}
	return nil
}

func parseVocabMerges(vocabJSON, mergesTxt []byte) (map[string]int, [][2]string, error) {
	var vocab map[string]int
	if err := json.Unmarshal(vocabJSON, &vocab); err != nil {
		return nil, nil, fmt.Errorf("vocab.json: %w", err)
	}
	var merges [][2]string
	sc := bufio.NewScanner(bytes.NewReader(mergesTxt))
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSuffix(sc.Text(), "\r")
		if l == "" || (line == 1 && strings.HasPrefix(l, "#version")) {
			continue
		}
		a, b, ok := strings.Cut(l, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, nil, fmt.Errorf("merges.txt line %d: want two tokens, got %q", line, l)
		}
		merges = append(merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("merges.txt: %w", err)
	}
	return vocab, merges, nil
}
