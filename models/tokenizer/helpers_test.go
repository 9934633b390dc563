package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// shippedDir is the folder of vocab.json + merges.txt that the server
// embeds for model ("clip" or "caption"), so the goldens test what ships.
func shippedDir(model string) string {
	return filepath.Join("..", model, "assets")
}

// tokenizerJSONDir holds the export's tokenizer.json for model, vendored
// only to test the other loader against the shipped files.
func tokenizerJSONDir(model string) string {
	return filepath.Join("testdata", model)
}

var (
	clipOnce, gpt2Once sync.Once
	clipTok            *CLIP
	gpt2Tok            *GPT2
	clipErr, gpt2Err   error
)

func loadCLIP(t testing.TB) *CLIP {
	t.Helper()
	clipOnce.Do(func() { clipTok, clipErr = LoadCLIPDir(shippedDir("clip")) })
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return clipTok
}

func loadGPT2(t testing.TB) *GPT2 {
	t.Helper()
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = LoadGPT2Dir(shippedDir("caption")) })
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
