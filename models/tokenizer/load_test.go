package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func readModelFiles(t *testing.T, dir string, names ...string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		fsys[n] = &fstest.MapFile{Data: data}
	}
	return fsys
}

func goldenTexts(t *testing.T) []string {
	var g clipGolden
	readGolden(t, "clip_goldens.json", &g)
	texts := make([]string, len(g.Entries))
	for i, e := range g.Entries {
		texts[i] = e.Text
	}
	return texts
}

func TestCLIPLoadersAgree(t *testing.T) {
	fromJSON, err := LoadCLIP(readModelFiles(t, tokenizerJSONDir("clip"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	fromVM, err := LoadCLIP(readModelFiles(t, shippedDir("clip"), "vocab.json", "merges.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fromJSON.VocabSize() != 49408 || fromVM.VocabSize() != 49408 {
		t.Errorf("vocab sizes %d, %d; want 49408", fromJSON.VocabSize(), fromVM.VocabSize())
	}
	for _, tok := range []*CLIP{fromJSON, fromVM} {
		if tok.BOS() != 49406 || tok.EOS() != 49407 || tok.PadID() != 49407 {
			t.Errorf("BOS/EOS/pad = %d/%d/%d", tok.BOS(), tok.EOS(), tok.PadID())
		}
	}
	for _, s := range goldenTexts(t) {
		if d := diffIDs(fromVM.Encode(s), fromJSON.Encode(s)); d != "" {
			t.Errorf("vocab.json+merges.txt vs tokenizer.json on %q:\n%s", s, d)
		}
	}
}

func TestGPT2LoadersAgree(t *testing.T) {
	fromJSON, err := LoadGPT2(readModelFiles(t, tokenizerJSONDir("caption"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	fromVM, err := LoadGPT2(readModelFiles(t, shippedDir("caption"), "vocab.json", "merges.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []*GPT2{fromJSON, fromVM} {
		if tok.VocabSize() != 50257 || tok.EOS() != 50256 || !tok.IsSpecial(50256) || tok.IsSpecial(0) {
			t.Errorf("vocab %d, EOS %d", tok.VocabSize(), tok.EOS())
		}
	}
	for _, s := range goldenTexts(t) {
		a, b := fromVM.Encode(s), fromJSON.Encode(s)
		if d := diffIDs(a, b); d != "" {
			t.Errorf("vocab.json+merges.txt vs tokenizer.json on %q:\n%s", s, d)
		}
		if d := diffString(fromVM.Decode(a, DecodeOptions{}), fromJSON.Decode(b, DecodeOptions{})); d != "" {
			t.Errorf("decode differs on %q:\n%s", s, d)
		}
	}
}

// Newer tokenizer.json files store merges as ["a", "b"] pairs.
func TestTokenizerJSONMergePairs(t *testing.T) {
	fsys := readModelFiles(t, tokenizerJSONDir("caption"), "tokenizer.json")
	var doc map[string]any
	if err := json.Unmarshal(fsys["tokenizer.json"].Data, &doc); err != nil {
		t.Fatal(err)
	}
	model := doc["model"].(map[string]any)
	var pairs [][2]string
	for _, m := range model["merges"].([]any) {
		a, b, _ := strings.Cut(m.(string), " ")
		pairs = append(pairs, [2]string{a, b})
	}
	model["merges"] = pairs
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewGPT2FromTokenizerJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	want := loadGPT2(t)
	for _, s := range goldenTexts(t) {
		if d := diffIDs(tok.Encode(s), want.Encode(s)); d != "" {
			t.Fatalf("%q: %s", s, d)
		}
	}
}

// A tokenizer.json whose pipeline differs from the implemented one must be
// refused, not tokenised differently from Hugging Face.
func TestTokenizerJSONRejectsOtherPipelines(t *testing.T) {
	// Shrink the real files to their pipelines plus a byte-level vocabulary
	// so the many edited copies parse quickly.
	shrink := func(model string) []byte {
		var doc map[string]any
		if err := json.Unmarshal(readModelFiles(t, tokenizerJSONDir(model), "tokenizer.json")["tokenizer.json"].Data, &doc); err != nil {
			t.Fatal(err)
		}
		m := doc["model"].(map[string]any)
		vocab := map[string]int{}
		for b := 0; b < 256; b++ {
			vocab[string(byteRune[b])] = b
			vocab[string(byteRune[b])+"</w>"] = 256 + b
		}
		for _, a := range doc["added_tokens"].([]any) {
			a := a.(map[string]any)
			vocab[a["content"].(string)] = int(a["id"].(float64))
		}
		m["vocab"], m["merges"] = vocab, []string{}
		out, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	clipJSON, gpt2JSON := shrink("clip"), shrink("caption")
	if _, err := NewCLIPFromTokenizerJSON(clipJSON); err != nil {
		t.Fatalf("unedited clip pipeline rejected: %v", err)
	}
	if _, err := NewGPT2FromTokenizerJSON(gpt2JSON); err != nil {
		t.Fatalf("unedited gpt2 pipeline rejected: %v", err)
	}
	edit := func(data []byte, f func(doc map[string]any)) []byte {
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		f(doc)
		out, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	pre := func(doc map[string]any) map[string]any { return doc["pre_tokenizer"].(map[string]any) }
	for name, data := range map[string][]byte{
		"no lowercase": edit(clipJSON, func(doc map[string]any) {
			n := doc["normalizer"].(map[string]any)
			n["normalizers"] = n["normalizers"].([]any)[:2]
		}),
		"other split regex": edit(clipJSON, func(doc map[string]any) {
			split := pre(doc)["pretokenizers"].([]any)[0].(map[string]any)
			split["pattern"] = map[string]any{"Regex": `\w+`}
		}),
		"prefix space": edit(clipJSON, func(doc map[string]any) {
			pre(doc)["pretokenizers"].([]any)[1].(map[string]any)["add_prefix_space"] = true
		}),
		"lstrip token": edit(clipJSON, func(doc map[string]any) {
			doc["added_tokens"].([]any)[0].(map[string]any)["lstrip"] = true
		}),
		"bert post-processor": edit(clipJSON, func(doc map[string]any) {
			doc["post_processor"] = map[string]any{"type": "BertProcessing"}
		}),
	} {
		if _, err := NewCLIPFromTokenizerJSON(data); err == nil {
			t.Errorf("clip %s: accepted", name)
		}
	}
	for name, data := range map[string][]byte{
		"normalizer": edit(gpt2JSON, func(doc map[string]any) {
			doc["normalizer"] = map[string]any{"type": "NFC"}
		}),
		"no regex": edit(gpt2JSON, func(doc map[string]any) { pre(doc)["use_regex"] = false }),
		"template": edit(gpt2JSON, func(doc map[string]any) {
			doc["post_processor"] = map[string]any{"type": "TemplateProcessing"}
		}),
		"no decoder": edit(gpt2JSON, func(doc map[string]any) { doc["decoder"] = nil }),
		"wordpiece": edit(gpt2JSON, func(doc map[string]any) {
			doc["model"].(map[string]any)["type"] = "WordPiece"
		}),
	} {
		if _, err := NewGPT2FromTokenizerJSON(data); err == nil {
			t.Errorf("gpt2 %s: accepted", name)
		}
	}
	if _, err := NewGPT2FromTokenizerJSON([]byte("{")); err == nil {
		t.Error("broken JSON accepted")
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := LoadCLIP(fstest.MapFS{}); err == nil {
		t.Error("LoadCLIP of an empty FS succeeded")
	}
	if _, err := LoadGPT2Dir(t.TempDir()); err == nil {
		t.Error("LoadGPT2Dir of an empty dir succeeded")
	}
	vocab := []byte(`{"a": 0, "b": 1}`)
	for _, merges := range []string{"#version: 0.2\na b c\n", "a\n", "a x\n"} {
		if _, err := NewGPT2FromVocabMerges(vocab, []byte(merges)); err == nil {
			t.Errorf("merges %q accepted", merges)
		}
	}
	// vocab without <|endoftext|>
	if _, err := NewGPT2FromVocabMerges(vocab, nil); err == nil {
		t.Error("vocab without <|endoftext|> accepted")
	}
}
