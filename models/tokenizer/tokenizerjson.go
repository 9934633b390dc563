package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// tokenizerJSON is the subset of Hugging Face's tokenizer.json read here.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    *component `json:"normalizer"`
	PreTokenizer  *component `json:"pre_tokenizer"`
	PostProcessor *component `json:"post_processor"`
	Decoder       *component `json:"decoder"`
	Padding       *struct {
		PadID *int `json:"pad_id"`
	} `json:"padding"`
	Model modelJSON `json:"model"`
}

// component covers the fields of the normalizers, pre-tokenizers and
// post-processors that the two pipelines use.
type component struct {
	Type          string      `json:"type"`
	Normalizers   []component `json:"normalizers"`
	Pretokenizers []component `json:"pretokenizers"`
	Pattern       struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Content        string            `json:"content"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	AddPrefixSpace bool              `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Cls            []json.RawMessage `json:"cls"`
	Sep            []json.RawMessage `json:"sep"`
}

func (c component) useRegex() bool { return c.UseRegex == nil || *c.UseRegex }

func checkByteLevel(c component) error {
	if c.Type != "ByteLevel" {
		return fmt.Errorf("pre-tokenizer %s, want ByteLevel", c.Type)
	}
	if c.AddPrefixSpace {
		return errors.New("ByteLevel add_prefix_space=true")
	}
	return nil
}

// clsSep reads RobertaProcessing's ["<token>", id] pairs.
func (c component) clsSep() (cls, sep int, err error) {
	read := func(pair []json.RawMessage) (int, error) {
		var id int
		if len(pair) != 2 {
			return 0, errors.New("RobertaProcessing cls/sep is not [token, id]")
		}
		return id, json.Unmarshal(pair[1], &id)
	}
	if cls, err = read(c.Cls); err != nil {
		return 0, 0, err
	}
	sep, err = read(c.Sep)
	return cls, sep, err
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	Dropout                 *float64        `json:"dropout"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
}

func (m modelJSON) check() error {
	switch {
	case m.Type != "BPE":
		return fmt.Errorf("model %s, want BPE", m.Type)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return errors.New("BPE continuing_subword_prefix")
	case m.Dropout != nil && *m.Dropout != 0:
		return errors.New("BPE dropout")
	case m.ByteFallback:
		return errors.New("BPE byte_fallback")
	case m.IgnoreMerges:
		return errors.New("BPE ignore_merges")
	case m.FuseUnk:
		return errors.New("BPE fuse_unk")
	}
	return nil
}

func (tj *tokenizerJSON) added() ([]addedToken, error) {
	var out []addedToken
	for _, a := range tj.AddedTokens {
		if a.SingleWord || a.LStrip || a.RStrip {
			return nil, fmt.Errorf("added token %q uses single_word/lstrip/rstrip", a.Content)
		}
		out = append(out, addedToken{ID: a.ID, Content: a.Content, Normalized: a.Normalized, Special: a.Special})
	}
	return out, nil
}

func parseTokenizerJSON(data []byte) (*tokenizerJSON, map[string]int, [][2]string, error) {
	var tj tokenizerJSON
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, nil, nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if tj.Model.Vocab == nil {
		return nil, nil, nil, errors.New("tokenizer.json: model has no vocab")
	}
	// Merges are "a b" strings in older files and ["a", "b"] pairs in newer
	// ones (which allows tokens containing spaces).
	var merges [][2]string
	var asStrings []string
	if err := json.Unmarshal(tj.Model.Merges, &asStrings); err == nil {
		merges = make([][2]string, len(asStrings))
		for i, s := range asStrings {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, nil, nil, fmt.Errorf("tokenizer.json: merge %d %q is not two tokens", i, s)
			}
			merges[i] = [2]string{a, b}
		}
	} else if err := json.Unmarshal(tj.Model.Merges, &merges); err != nil {
		return nil, nil, nil, fmt.Errorf("tokenizer.json: merges: %w", err)
	}
	return &tj, tj.Model.Vocab, merges, nil
}
