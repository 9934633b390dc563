package clip

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/models/tokenizer"
)

// sharedDir is ../shared/<sub> beside the module root, where CI keeps the
// real tokenizer files. It skips on a developer machine without them and
// fails under CI, where a skip would hide the comparison.
func sharedDir(t testing.TB, sub ...string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = filepath.Dir(dir)
	}
	d := filepath.Join(append([]string{dir, "..", "shared"}, sub...)...)
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared files missing in CI: %v", err)
		}
		t.Skipf("shared files not available: %v", err)
	}
	return d
}

// The embedded files are the export's, byte for byte.
func TestAssetsMatchExport(t *testing.T) {
	dir := sharedDir(t, "models", "clip")
	for _, name := range []string{"vocab.json", "merges.txt", "preprocessor_config.json", "LICENSE-openai-CLIP.txt"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := fs.ReadFile(Assets(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("embedded %s differs from %s", name, dir)
		}
	}
}

type clipGoldens struct {
	Entries []struct {
		Text         string `json:"text"`
		IDs          []int  `json:"ids"`
		IDsTruncated []int  `json:"ids_truncated"`
	} `json:"entries"`
}

func readGoldens(t *testing.T) clipGoldens {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", "clip_goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g clipGoldens
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Entries) < 250 {
		t.Fatalf("only %d goldens", len(g.Entries))
	}
	return g
}

// Tokenize, on the embedded vocab.json + merges.txt, gives Hugging Face's
// ids for every golden (models/tokenizer checks tokenizer.json against the
// same goldens), truncated to 77 as the text tower reads them.
func TestTokenizeMatchesGoldens(t *testing.T) {
	g := readGoldens(t)
	tw := &Towers{Name: "clip-vit-b32"}
	texts := make([]string, len(g.Entries))
	for i, e := range g.Entries {
		texts[i] = e.Text
	}
	ids, truncated, err := tw.Tokenize(texts)
	if err != nil {
		t.Fatal(err)
	}
	cut := 0
	for i, e := range g.Entries {
		want := e.IDs
		if e.IDsTruncated != nil {
			want = e.IDsTruncated
		}
		if !slices.Equal(ids[i], want) {
			t.Fatalf("entry %d %q: got %v, want %v", i, e.Text, ids[i], want)
		}
		if truncated[i] != (e.IDsTruncated != nil) {
			t.Errorf("entry %d: truncated %v", i, truncated[i])
		}
		if truncated[i] {
			cut++
		}
	}
	if cut == 0 {
		t.Error("no golden exercises truncation")
	}
}

func TestTokenizerDirOption(t *testing.T) {
	dir := sharedDir(t, "models", "clip") // holds tokenizer.json: the other loader
	fromDir := &Towers{Text: optionModel(OptionTokenizerDir, dir)}
	tok, err := fromDir.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	if tok == DefaultTokenizer() {
		t.Fatal("tokenizer_dir ignored")
	}
	again, _ := fromDir.Tokenizer()
	if again != tok {
		t.Error("tokenizer_dir reloaded on every call")
	}
	const s = "A photo of a Golden Retriever, 2 dogs!"
	if got, want := tok.Encode(s), DefaultTokenizer().Encode(s); !slices.Equal(got, want) {
		t.Errorf("tokenizer.json gives %v, embedded files %v", got, want)
	}

	broken := &Towers{Vision: optionModel(OptionTokenizerDir, t.TempDir())}
	if _, err := broken.Tokenizer(); !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), "tokenizer_dir") {
		t.Errorf("empty tokenizer_dir: %v", err)
	}
	if _, _, err := broken.Tokenize([]string{"x"}); !errors.Is(err, ErrTokenizer) {
		t.Errorf("Tokenize with a broken tokenizer_dir: %v", err)
	}
}

func TestContextLengthDefault(t *testing.T) {
	if n := (&Towers{}).ContextLength(); n != tokenizer.CLIPContextLength {
		t.Errorf("ContextLength without a text model = %d", n)
	}
}
