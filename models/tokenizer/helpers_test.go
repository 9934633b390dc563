package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// modelsDir is where the real tokenizer files live: shared/ beside the
// repository, as in CI, unless IMGSERVE_MODELS_DIR says otherwise.
func modelsDir() string {
	if d := os.Getenv("IMGSERVE_MODELS_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared", "models")
}

// requireDir skips when the model files are absent on a developer machine,
// but fails under CI, where a skip would hide the golden comparison.
func requireDir(t testing.TB, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tokenizer files missing in CI: %v", err)
		}
		t.Skipf("tokenizer files not available: %v", err)
	}
}

var (
	clipOnce, gpt2Once sync.Once
	clipTok            *CLIP
	gpt2Tok            *GPT2
	clipErr, gpt2Err   error
)

func loadCLIP(t testing.TB) *CLIP {
	t.Helper()
	dir := filepath.Join(modelsDir(), "clip")
	requireDir(t, dir)
	clipOnce.Do(func() { clipTok, clipErr = LoadCLIPDir(dir) })
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return clipTok
}

func loadGPT2(t testing.TB) *GPT2 {
	t.Helper()
	dir := filepath.Join(modelsDir(), "caption")
	requireDir(t, dir)
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = LoadGPT2Dir(dir) })
	if gpt2Err != nil {
		t.Fatal(gpt2Err)
	}
	return gpt2Tok
}

type clipGolden struct {
	Reference string `json:"reference"`
	Entries   []struct {
		Text         string `json:"text"`
		IDs          []int  `json:"ids"`
		IDsTruncated []int  `json:"ids_truncated"`
	} `json:"entries"`
}

type gpt2Golden struct {
	Reference string `json:"reference"`
	Entries   []struct {
		Text               string  `json:"text"`
		IDs                []int   `json:"ids"`
		Decoded            string  `json:"decoded"`
		DecodedSkipSpecial *string `json:"decoded_skip_special"`
		DecodedClean       *string `json:"decoded_clean"`
		Roundtrip          bool    `json:"roundtrip"`
	} `json:"entries"`
	DecodeCases []struct {
		IDs                []int   `json:"ids"`
		Decoded            string  `json:"decoded"`
		DecodedSkipSpecial *string `json:"decoded_skip_special"`
	} `json:"decode_cases"`
}

func readGolden(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// diffIDs describes the first difference between two id lists, or "".
func diffIDs[T, U int | int64](got []T, want []U) string {
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if int64(got[i]) != int64(want[i]) {
			return fmt.Sprintf("first difference at position %d: got %d, want %d\n got  %v\n want %v",
				i, got[i], want[i], got, want)
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("lengths differ (got %d, want %d) after common prefix of %d\n got  %v\n want %v",
			len(got), len(want), n, got, want)
	}
	return ""
}

// diffString describes the first difference between two strings, or "".
func diffString(got, want string) string {
	if got == want {
		return ""
	}
	g, w := []rune(got), []rune(want)
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	return fmt.Sprintf("first difference at rune %d\n got  %q\n want %q", i, got, want)
}
