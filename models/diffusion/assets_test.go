package diffusion

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgserve/imgserve/models/clip"
)

// A diffusers tokenizer/ folder names its pad token: SD 1.x's files say
// <|endoftext|>, SD 2.x's "!" (as a string or an AddedToken object).
func TestLoadTokenizerPadToken(t *testing.T) {
	tok, err := LoadTokenizer("")
	if err != nil || tok.PadID() != 0 {
		t.Fatalf("embedded: pad %d, %v", tok.PadID(), err)
	}
	for _, c := range []struct {
		file, content string
		pad           int
	}{
		{"special_tokens_map.json", `{"pad_token": "<|endoftext|>"}`, 49407},
		{"special_tokens_map.json", `{"pad_token": {"content": "!", "lstrip": false}}`, 0},
		{"tokenizer_config.json", `{"pad_token": "<|endoftext|>", "model_max_length": 77}`, 49407},
		{"unrelated.json", `{}`, 0}, // neither file: SD-Turbo's "!"
	} {
		dir := t.TempDir()
		for _, f := range []string{"vocab.json", "merges.txt"} {
			data, err := fs.ReadFile(clip.Assets(), f)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, f), data, 0o644)
		}
		os.WriteFile(filepath.Join(dir, c.file), []byte(c.content), 0o644)
		tok, err := LoadTokenizer(dir)
		if err != nil || tok.PadID() != c.pad {
			t.Errorf("%s %s: pad %v, %v; want %d", c.file, c.content, tok, err, c.pad)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "special_tokens_map.json"), []byte(`{"pad_token": "!"}`), 0o644)
	if _, err := LoadTokenizer(dir); err == nil {
		t.Error("a folder without vocab.json loaded")
	}
}

func TestBlocklistAndConceptsFiles(t *testing.T) {
	b := ParseBlocklist([]byte("# comment\nfoo bar\n\nBAZ  # trailing comment\n"))
	for prompt, want := range map[string]bool{"a Foo, bar!": true, "foobar": false, "baz": true, "bar foo": false, "": false} {
		if b.Blocks(prompt) != want {
			t.Errorf("%q: blocked %v", prompt, !want)
		}
	}
	if ParseBlocklist(nil).Blocks("anything nude") {
		t.Error("an empty blocklist blocks")
	}
	if d := DefaultBlocklist(); d.Len() < 20 {
		t.Errorf("default blocklist has %d entries", d.Len())
	}
	c := DefaultConcepts()
	if len(c.Unsafe) == 0 || len(c.Safe) == 0 || c.Threshold != 0.5 || c.LogitScale != 100 {
		t.Errorf("default concepts %+v", c)
	}
	for _, bad := range []string{"unsafe: []", "unsafe: [a]\nthreshold: 2", "unsafe: [a]\nlogit_scale: 0", "unsafe: [a]\nextra: 1"} {
		if _, err := ParseConcepts([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
