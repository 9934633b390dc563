package clip

import (
	"crypto/sha256"
	"encoding/hex"
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

// exportDigests are the sha256 of the files of the Hugging Face export
// Xenova/clip-vit-base-patch32 that assets/ carries unchanged.
var exportDigests = map[string]string{
	"vocab.json":               "5047b556ce86ccaf6aa22b3ffccfc52d391ea4accdab9c2f2407da5b742d4363",
	"merges.txt":               "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
	"preprocessor_config.json": "6f638fb9401a6d6296feff533ee7efe657b787c49f954f82f5906b36ef2a1b1f",
	"LICENSE-openai-CLIP.txt":  "987e63b32f6c89ff5160e429458a872ff048e6860b590a3912e938f9da8f14db",
}

// The embedded files are the export's, byte for byte.
func TestAssetsMatchExport(t *testing.T) {
	for name, want := range exportDigests {
		got, err := fs.ReadFile(Assets(), name)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != want {
			t.Errorf("embedded %s has sha256 %x, the export's is %s", name, sum, want)
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
	// The export's tokenizer.json, vendored for the tokenizer's tests: the
	// other loader.
	dir := filepath.Join("..", "tokenizer", "testdata", "clip")
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
