package diffusion

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/imgserve/imgserve/models/clip"
	"github.com/imgserve/imgserve/models/tokenizer"
)

// The embedded defaults: SD-Turbo's scheduler settings (the values of
// stabilityai/sd-turbo's scheduler/scheduler_config.json), the CLIP
// zero-shot check's labels and threshold, and the prompt blocklist.
//
//go:embed assets
var embedded embed.FS

func asset(name string) []byte {
	data, err := embedded.ReadFile("assets/" + name)
	if err != nil {
		panic(err) // embedded: cannot be missing
	}
	return data
}

// DefaultSchedulerConfig is SD-Turbo's: Euler, scaled_linear betas
// 0.00085 to 0.012, trailing timesteps, epsilon prediction.
func DefaultSchedulerConfig() SchedulerConfig {
	c, err := ParseSchedulerConfig(asset("scheduler_config.json"))
	if err != nil {
		panic(err)
	}
	return c
}

// Concepts are the CLIP zero-shot check's labels and threshold.
type Concepts struct {
	LogitScale float64  `yaml:"logit_scale"`
	Threshold  float64  `yaml:"threshold"`
	Unsafe     []string `yaml:"unsafe"`
	Safe       []string `yaml:"safe"`
}

// DefaultConcepts are the embedded labels (assets/nsfw_concepts.yaml).
func DefaultConcepts() Concepts {
	c, err := ParseConcepts(asset("nsfw_concepts.yaml"))
	if err != nil {
		panic(err)
	}
	return c
}

// ParseConcepts reads a concepts file; unknown keys are errors.
func ParseConcepts(data []byte) (Concepts, error) {
	c := Concepts{LogitScale: 100, Threshold: 0.5}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Concepts{}, fmt.Errorf("nsfw concepts: %w", err)
	}
	switch {
	case len(c.Unsafe) == 0:
		return Concepts{}, errors.New("nsfw concepts: no unsafe labels")
	case c.Threshold <= 0 || c.Threshold > 1:
		return Concepts{}, fmt.Errorf("nsfw concepts: threshold %v must be above 0 and at most 1", c.Threshold)
	case c.LogitScale <= 0 || c.LogitScale > 1000:
		return Concepts{}, fmt.Errorf("nsfw concepts: logit_scale %v out of range", c.LogitScale)
	}
	return c, nil
}

// Blocklist refuses prompts that contain any of its entries as whole
// words, ignoring case and punctuation.
type Blocklist struct {
	entries [][]string
}

// DefaultBlocklist is the embedded list (assets/prompt_blocklist.txt).
func DefaultBlocklist() *Blocklist { return ParseBlocklist(asset("prompt_blocklist.txt")) }

// ParseBlocklist reads one entry per line; # starts a comment.
func ParseBlocklist(data []byte) *Blocklist {
	b := &Blocklist{}
	for line := range strings.Lines(string(data)) {
		line, _, _ = strings.Cut(line, "#")
		if w := words(line); len(w) > 0 {
			b.entries = append(b.entries, w)
		}
	}
	return b
}

// words lower-cases s and splits it at everything that is not a letter
// or a digit.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// Blocks reports whether prompt contains an entry.
func (b *Blocklist) Blocks(prompt string) bool {
	w := words(prompt)
	for _, e := range b.entries {
		for i := 0; i+len(e) <= len(w); i++ {
			match := true
			for j := range e {
				if w[i+j] != e[j] {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}

// Len is the number of entries.
func (b *Blocklist) Len() int { return len(b.entries) }

// LoadTokenizer returns the text encoder's tokenizer: the CLIP BPE
// vocabulary from dir (a diffusers tokenizer/ folder: vocab.json and
// merges.txt, or tokenizer.json), or the embedded CLIP one when dir is "",
// padding with the pad_token of dir's special_tokens_map.json or
// tokenizer_config.json, "!" when there is neither (SD 2.x and SD-Turbo;
// SD 1.x's files name <|endoftext|>).
func LoadTokenizer(dir string) (*tokenizer.CLIP, error) {
	if dir == "" {
		return clip.DefaultTokenizer().WithPad(defaultPadToken)
	}
	tok, err := tokenizer.LoadCLIPDir(dir)
	if err != nil {
		return nil, err
	}
	pad := defaultPadToken
	for _, name := range []string{"special_tokens_map.json", "tokenizer_config.json"} {
		p, err := padToken(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if p != "" {
			pad = p
			break
		}
	}
	return tok.WithPad(pad)
}

// defaultPadToken is SD-Turbo's (and SD 2.x's) pad token.
const defaultPadToken = "!"

// padToken reads pad_token, a string or {"content": ...}, from a
// tokenizer JSON file; "" when the file or the key is absent.
func padToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var v struct {
		Pad json.RawMessage `json:"pad_token"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(v.Pad) == 0 || string(v.Pad) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(v.Pad, &s) == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(v.Pad, &obj); err != nil || obj.Content == "" {
		return "", fmt.Errorf("%s: pad_token is neither a string nor {\"content\": ...}", path)
	}
	return obj.Content, nil
}
