package caption

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image/color"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/preprocess"
)

// exportDigests are the sha256 of the files of the Hugging Face export
// Xenova/vit-gpt2-image-captioning that assets/ carries unchanged.
var exportDigests = map[string]string{
	"vocab.json":               "3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7",
	"merges.txt":               "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
	"config.json":              "f65c81039a672962d686f71ee0242f0c89dc020a0e3f193a989a696bf3f9515e",
	"generation_config.json":   "997e1f943576edcc46e1b93078ec0e72054a62b4c7f521da42a1eab43c4c1d0c",
	"preprocessor_config.json": "76304e9a1deb0d5f78349a57ad9d8057f36476c29bd292e907e2e8c451c93e9d",
	"tokenizer_config.json":    "5b477c376e81670409e943fc7c8233a0356c8488e05a8aa246082a1d29e8d609",
}

// The embedded files are the export's, byte for byte.
func TestAssetsMatchExport(t *testing.T) {
	for name, want := range exportDigests {
		got, err := fs.ReadFile(EmbeddedAssets(), name)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != want {
			t.Errorf("embedded %s has sha256 %x, the export's is %s", name, sum, want)
		}
	}
	// The export's tokenizer.json (vendored for the tokenizer's tests) and
	// the embedded vocab.json + merges.txt are one tokenizer.
	tokJSON, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", "caption", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := copyAssets(t, map[string]string{"tokenizer.json": string(tokJSON), "vocab.json": "", "merges.txt": ""})
	full, err := AssetsFor(dir)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := AssetsFor("")
	if err != nil {
		t.Fatal(err)
	}
	text := "A man riding a wave on top of a surfboard.<|endoftext|> Über café"
	if a, b := full.Tokenizer.Encode(text), emb.Tokenizer.Encode(text); !slices.Equal(a, b) {
		t.Errorf("tokenizer.json gives %v, vocab+merges %v", a, b)
	}
}

// What the pipeline reads from the export's files.
func TestEmbeddedAssets(t *testing.T) {
	a, err := AssetsFor("")
	if err != nil {
		t.Fatal(err)
	}
	if a.DecoderStart != 50256 || a.EOS != 50256 || a.VocabSize != 50257 || a.Tokenizer.VocabSize() != 50257 {
		t.Errorf("start %d, EOS %d, vocab %d / %d", a.DecoderStart, a.EOS, a.VocabSize, a.Tokenizer.VocabSize())
	}
	if a.LengthPenalty != 1 || a.EarlyStopping || !a.CleanUp {
		t.Errorf("length penalty %v, early stopping %v, clean-up %v", a.LengthPenalty, a.EarlyStopping, a.CleanUp)
	}
	want := ImageConfig{Width: 224, Height: 224, Filter: preprocess.Bilinear,
		Norm: preprocess.Norm{Scale: 0.00392156862745098, Mean: [3]float64{0.5, 0.5, 0.5}, Std: [3]float64{0.5, 0.5, 0.5}}}
	if a.Image != want {
		t.Errorf("image config %+v, want %+v", a.Image, want)
	}
}

// copyAssets writes the embedded files to a folder, with replacements.
func copyAssets(t *testing.T, replace map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(EmbeddedAssets(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(EmbeddedAssets(), path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range replace {
		if content == "" {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The assets option replaces the embedded files; broken folders fail with
// ErrAssets and say what is wrong.
func TestAssetsOption(t *testing.T) {
	dir := copyAssets(t, map[string]string{
		"generation_config.json":   `{"decoder_start_token_id": 50256, "eos_token_id": 50256, "length_penalty": 2.0, "early_stopping": true}`,
		"preprocessor_config.json": `{"do_resize": true, "do_rescale": true, "do_normalize": true, "size": {"height": 112, "width": 96}, "resample": 3, "rescale_factor": 0.00392156862745098, "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.5]}`,
		"tokenizer_config.json":    `{"clean_up_tokenization_spaces": false}`,
	})
	a, err := AssetsFor(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.LengthPenalty != 2 || !a.EarlyStopping || a.CleanUp || a.Image.Width != 96 || a.Image.Height != 112 ||
		a.Image.Filter != preprocess.Bicubic || a.Image.Norm.Mean != [3]float64{0.4, 0.5, 0.6} {
		t.Errorf("assets from %s: %+v", dir, a)
	}

	// The synthetic encoder takes 224x224: a config resizing to 96x112
	// does not fit it, and the pipeline says so.
	cfg := strings.Replace(testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1}", "{}"),
		"options: {decoder: cap-dec}", "options: {decoder: cap-dec, assets: "+dir+"}", 1)
	reg := loadRegistry(t, cfg, nil)
	if _, err := NewRegistry(reg, nil).Get(encName); err == nil || !strings.Contains(err.Error(), "96x112") {
		t.Errorf("mismatched image size: err %v", err)
	}

	// config.json holds the start token too, standing in for a generation
	// config without one.
	if a, err := AssetsFor(copyAssets(t, map[string]string{"generation_config.json": `{"eos_token_id": 50256}`})); err != nil || a.DecoderStart != 50256 {
		t.Errorf("start token from config.json: err %v", err)
	}
	noStart := map[string]string{"generation_config.json": `{"eos_token_id": 50256}`, "config.json": `{}`}
	for name, tc := range map[string]struct {
		files map[string]string
		msg   string
	}{
		"no tokenizer":       {map[string]string{"vocab.json": ""}, "vocab.json"},
		"no generation":      {map[string]string{"generation_config.json": ""}, "generation_config.json"},
		"no start token":     {noStart, "decoder_start_token_id"},
		"token out of range": {map[string]string{"generation_config.json": `{"decoder_start_token_id": 60000, "eos_token_id": 50256}`}, "outside"},
		"early never":        {map[string]string{"generation_config.json": `{"decoder_start_token_id": 1, "eos_token_id": 2, "early_stopping": "never"}`}, "never"},
		"nearest resample":   {map[string]string{"preprocessor_config.json": `{"do_resize": true, "size": {"height": 224, "width": 224}, "resample": 0}`}, "resample 0"},
		"no resize":          {map[string]string{"preprocessor_config.json": `{"do_resize": false}`}, "do_resize"},
		"bad std":            {map[string]string{"preprocessor_config.json": `{"do_resize": true, "do_normalize": true, "size": {"height": 224, "width": 224}, "resample": 2, "image_mean": [0,0,0], "image_std": [1,0,1]}`}, "image_std"},
		"bad json":           {map[string]string{"config.json": `{`}, "config.json"},
	} {
		_, err := AssetsFor(copyAssets(t, tc.files))
		if !errors.Is(err, ErrAssets) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err %v, want ErrAssets mentioning %q", name, err, tc.msg)
		}
	}
}

// Images are resized to 224x224 and mapped to [-1, 1] per channel.
func TestPixels(t *testing.T) {
	p := defaultPipeline(t)
	for _, c := range []color.NRGBA{{255, 0, 0, 255}, {0, 255, 127, 0}, {51, 102, 204, 255}} {
		px := p.Pixels(solid(c, 300, 170))
		if !slices.Equal(px.Shape, []int64{1, 3, 224, 224}) {
			t.Fatalf("shape %v", px.Shape)
		}
		v := inference.Values[float32](px)
		for ch, s := range []uint8{c.R, c.G, c.B} {
			want := (float32(float64(s)/255) - 0.5) / 0.5
			plane := v[ch*224*224 : (ch+1)*224*224]
			if plane[0] != want || plane[len(plane)-1] != want || plane[224*112+100] != want {
				t.Errorf("colour %v channel %d: %v, want %v", c, ch, plane[0], want)
			}
		}
	}
}

// Captions decode like transformers' pipeline: special tokens skipped,
// tokenisation spaces cleaned up, trimmed.
func TestText(t *testing.T) {
	p := defaultPipeline(t)
	tok := p.Tokenizer()
	var ids []int64
	for _, id := range tok.Encode(" a dog sitting on a couch . it's nice ") {
		ids = append(ids, int64(id))
	}
	ids = append(ids, synthEOS)
	if got := p.Text(ids); got != "a dog sitting on a couch. it's nice" {
		t.Errorf("text %q", got)
	}
	if got := p.Text(nil); got != "" {
		t.Errorf("empty caption %q", got)
	}
}

// Caption runs the whole pipeline on an image.
func TestCaption(t *testing.T) {
	p := defaultPipeline(t)
	img := solid(color.NRGBA{0, 0, 255, 255}, 640, 480)
	got, err := p.Caption(context.Background(), img, Params{})
	if err != nil {
		t.Fatal(err)
	}
	want := synthCaption(synthCode(encode(t, p, color.NRGBA{0, 0, 255, 255})), DefaultMaxNewTokens)
	if !slices.Equal(got.Tokens, want) || got.Text != p.Text(want) || got.Text == "" {
		t.Errorf("caption %q %v, want %q %v", got.Text, got.Tokens, p.Text(want), want)
	}
	if _, err := p.Caption(context.Background(), img, Params{NumBeams: MaxBeams + 1}); !errors.Is(err, ErrBadParams) {
		t.Errorf("too many beams: %v", err)
	}
}
