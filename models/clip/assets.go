package clip

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/imgserve/imgserve/models/tokenizer"
)

// assets are copies of the export's tokenizer and preprocessing files
// (Xenova/clip-vit-base-patch32; MIT, see assets/LICENSE-openai-CLIP.txt). Embedding
// them means /v1/tokenize and the preprocessing never depend on a download.
//
//go:embed assets
var assets embed.FS

// Assets returns the embedded files: vocab.json, merges.txt,
// preprocessor_config.json and the licence.
func Assets() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the folder is embedded; it cannot be missing
	}
	return sub
}

// ErrTokenizer is returned when a tokenizer_dir cannot be loaded.
var ErrTokenizer = errors.New("clip: tokenizer unavailable")

// DefaultTokenizer is the embedded tokenizer, loaded once on first use
// (it takes a few tens of milliseconds).
var DefaultTokenizer = sync.OnceValue(func() *tokenizer.CLIP {
	tok, err := tokenizer.LoadCLIP(Assets())
	if err != nil {
		panic("clip: embedded tokenizer: " + err.Error())
	}
	return tok
})

// dirTokenizers caches tokenizers loaded from tokenizer_dir options, one per
// folder, errors included: a broken folder is reported on every request, not
// re-read each time.
var dirTokenizers sync.Map // string -> func() (*tokenizer.CLIP, error)

// LoadTokenizer returns the tokenizer in dir, or the embedded one when dir
// is "".
func LoadTokenizer(dir string) (*tokenizer.CLIP, error) {
	if dir == "" {
		return DefaultTokenizer(), nil
	}
	f, _ := dirTokenizers.LoadOrStore(dir, sync.OnceValues(func() (*tokenizer.CLIP, error) {
		tok, err := tokenizer.LoadCLIPDir(dir)
		if err != nil {
			return nil, fmt.Errorf("%w: tokenizer_dir %s: %v", ErrTokenizer, dir, err)
		}
		return tok, nil
	}))
	return f.(func() (*tokenizer.CLIP, error))()
}
