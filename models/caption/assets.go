package caption

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/imgserve/imgserve/models/tokenizer"
	"github.com/imgserve/imgserve/preprocess"
)

// The export's tokenizer and configs (Xenova/vit-gpt2-image-captioning, Apache-2.0,
// see assets/NOTICE.txt), embedded so that captioning and /v1/tokenize never
// depend on a download.
//
//go:embed assets
var embedded embed.FS

// EmbeddedAssets returns the embedded files: vocab.json, merges.txt,
// config.json, generation_config.json, preprocessor_config.json and
// tokenizer_config.json.
func EmbeddedAssets() fs.FS {
	sub, err := fs.Sub(embedded, "assets")
	if err != nil {
		panic(err) // the folder is embedded; it cannot be missing
	}
	return sub
}

// Assets are what the pipeline reads from the export's files: the
// tokenizer, the generation settings and the image preprocessing.
type Assets struct {
	Tokenizer *tokenizer.GPT2
	// DecoderStart is the first input token of every caption; EOS ends one.
	DecoderStart, EOS int64
	// LengthPenalty divides a finished beam's log-probability by its length
	// to this power, as transformers' beam search does.
	LengthPenalty float64
	// EarlyStopping ends a beam search as soon as num_beams captions are
	// finished, instead of when no running beam can beat them.
	EarlyStopping bool
	// CleanUp is tokenizer_config's clean_up_tokenization_spaces.
	CleanUp bool
	// VocabSize is the decoder's vocabulary (config.json), 0 if unknown.
	VocabSize int
	Image     ImageConfig
}

// ImageConfig is the encoder's preprocessing: resize to Width x Height,
// then normalise.
type ImageConfig struct {
	Width, Height int
	Filter        preprocess.Filter
	Norm          preprocess.Norm
}

// ErrAssets wraps every failure to load a model's assets.
var ErrAssets = errors.New("caption assets")

var defaultAssets = sync.OnceValues(func() (*Assets, error) { return LoadAssets(EmbeddedAssets()) })

// assetDirs caches the assets of each `assets` option folder, errors
// included, so a broken folder is reported on every request rather than
// re-read each time.
var assetDirs sync.Map // string -> func() (*Assets, error)

// AssetsFor returns the embedded assets when dir is "", else those in dir.
func AssetsFor(dir string) (*Assets, error) {
	if dir == "" {
		return defaultAssets()
	}
	f, _ := assetDirs.LoadOrStore(dir, sync.OnceValues(func() (*Assets, error) { return LoadAssets(os.DirFS(dir)) }))
	return f.(func() (*Assets, error))()
}

// LoadAssets reads the tokenizer (tokenizer.json, or vocab.json and
// merges.txt), generation_config.json and preprocessor_config.json, and
// optionally config.json and tokenizer_config.json, from the root of fsys.
func LoadAssets(fsys fs.FS) (*Assets, error) {
	tok, err := tokenizer.LoadGPT2(fsys)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAssets, err)
	}
	a := &Assets{Tokenizer: tok, LengthPenalty: 1}

	var model struct {
		DecoderStart *int64 `json:"decoder_start_token_id"`
		EOS          *int64 `json:"eos_token_id"`
		Decoder      struct {
			VocabSize int `json:"vocab_size"`
		} `json:"decoder"`
	}
	if err := readJSON(fsys, "config.json", &model, true); err != nil {
		return nil, err
	}
	var gen struct {
		DecoderStart  *int64          `json:"decoder_start_token_id"`
		EOS           *int64          `json:"eos_token_id"`
		LengthPenalty *float64        `json:"length_penalty"`
		EarlyStopping json.RawMessage `json:"early_stopping"`
	}
	if err := readJSON(fsys, "generation_config.json", &gen, false); err != nil {
		return nil, err
	}
	// generation_config.json wins, as in transformers; config.json is the
	// older place for the same settings.
	start, eos := firstSet(gen.DecoderStart, model.DecoderStart), firstSet(gen.EOS, model.EOS)
	if start == nil || eos == nil {
		return nil, fmt.Errorf("%w: generation_config.json needs decoder_start_token_id and eos_token_id", ErrAssets)
	}
	a.DecoderStart, a.EOS, a.VocabSize = *start, *eos, model.Decoder.VocabSize
	if n := int64(tok.VocabSize()); a.DecoderStart < 0 || a.DecoderStart >= n || a.EOS < 0 || a.EOS >= n {
		return nil, fmt.Errorf("%w: token ids %d and %d outside the tokenizer's %d", ErrAssets, a.DecoderStart, a.EOS, n)
	}
	if gen.LengthPenalty != nil {
		a.LengthPenalty = *gen.LengthPenalty
	}
	switch string(gen.EarlyStopping) {
	case "", "false", "null":
	case "true":
		a.EarlyStopping = true
	default:
		// transformers' "never" uses a different stopping bound, not built here.
		return nil, fmt.Errorf("%w: early_stopping %s is not supported (true or false)", ErrAssets, gen.EarlyStopping)
	}

	tc := struct {
		CleanUp *bool `json:"clean_up_tokenization_spaces"`
	}{}
	if err := readJSON(fsys, "tokenizer_config.json", &tc, true); err != nil {
		return nil, err
	}
	// transformers' default when the file does not say.
	a.CleanUp = tc.CleanUp == nil || *tc.CleanUp

	data, err := fs.ReadFile(fsys, "preprocessor_config.json")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAssets, err)
	}
	if a.Image, err = ParseImageConfig(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAssets, err)
	}
	return a, nil
}

func firstSet(vs ...*int64) *int64 {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

func readJSON(fsys fs.FS, name string, v any, optional bool) error {
	data, err := fs.ReadFile(fsys, name)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAssets, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrAssets, name, err)
	}
	return nil
}

// ParseImageConfig reads a ViTImageProcessor preprocessor_config.json:
// resize to size.height x size.width with the PIL filter `resample`, then
// rescale and normalise. Settings the pipeline does not implement are
// refused rather than approximated.
func ParseImageConfig(data []byte) (ImageConfig, error) {
	var h struct {
		DoResize bool `json:"do_resize"`
		Size     struct {
			Height int `json:"height"`
			Width  int `json:"width"`
		} `json:"size"`
		preprocess.HFImageProcessor
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return ImageConfig{}, fmt.Errorf("preprocessor_config.json: %w", err)
	}
	if !h.DoResize {
		// Without a resize every upload would have to come at the model's size.
		return ImageConfig{}, errors.New("preprocessor_config.json: do_resize false is not supported")
	}
	if h.Size.Width < 1 || h.Size.Height < 1 || h.Size.Width > 4096 || h.Size.Height > 4096 {
		return ImageConfig{}, fmt.Errorf("preprocessor_config.json: size %dx%d out of range", h.Size.Width, h.Size.Height)
	}
	f, norm, err := h.FilterAndNorm()
	if err != nil {
		return ImageConfig{}, fmt.Errorf("preprocessor_config.json: %w", err)
	}
	return ImageConfig{Width: h.Size.Width, Height: h.Size.Height, Filter: f, Norm: norm}, nil
}
