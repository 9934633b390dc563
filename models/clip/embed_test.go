package clip

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
)

func cosine(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func checkUnit(t *testing.T, what string, v []float32) {
	t.Helper()
	if len(v) != Dim {
		t.Fatalf("%s: %d values", what, len(v))
	}
	if n := math.Sqrt(cosine(v, v)); math.Abs(n-1) > 1e-5 {
		t.Errorf("%s: norm %v", what, n)
	}
}

func checkClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > tol {
			t.Fatalf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// direct runs a synthetic model file without the scheduler and returns the
// named output's rows, normalised: the reference for the pipeline.
func direct(t *testing.T, file, output string, inputs []inference.Tensor) [][]float32 {
	t.Helper()
	s, err := testRuntime.NewSession(testmodels.Bytes(file), inference.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(inputs)
	if err != nil {
		t.Fatal(err)
	}
	_, at := find(s.Outputs(), output)
	rows := make([][]float32, out[at].Shape[0])
	if err := unitRows(rows, out[at]); err != nil {
		t.Fatal(err)
	}
	return rows
}

var testTexts = []string{
	"a photo of a cat",
	"A golden retriever puppy playing in the snow.",
	"an aerial photograph of a city at night, with lights reflecting on the river and on the glass of the towers",
	"x",
}

// Each text's embedding equals the text model run alone on its unpadded ids:
// padding to 77 with attention mask 0 changes nothing.
func TestEmbedTextsMatchesUnpaddedRun(t *testing.T) {
	reg := loadRegistry(t, synthConfig)
	tw := resolve(t, reg, "clip-vit-b32")
	got, tokens, err := tw.EmbedTexts(context.Background(), testTexts)
	if err != nil {
		t.Fatal(err)
	}
	ids, _, _ := tw.Tokenize(testTexts)
	wantTokens := 0
	for i, text := range testTexts {
		checkUnit(t, text, got[i])
		row := make([]int64, len(ids[i]))
		mask := make([]int64, len(ids[i]))
		for j, id := range ids[i] {
			row[j], mask[j] = int64(id), 1
		}
		wantTokens += len(row)
		shape := []int64{1, int64(len(row))}
		want := direct(t, testmodels.ClipTextSynth, OutputTextEmbeds,
			[]inference.Tensor{inference.NewTensor(shape, row), inference.NewTensor(shape, mask)})
		checkClose(t, text, got[i], want[0], 1e-5)
	}
	if tokens != wantTokens {
		t.Errorf("tokens = %d, want %d", tokens, wantTokens)
	}
	if c := cosine(got[0], got[1]); c > 0.95 {
		t.Errorf("different texts have cosine %v", c)
	}
}

// Without an attention_mask input the padded row is what the model reads.
func TestEmbedTextsNoAttentionMask(t *testing.T) {
	reg := loadRegistry(t, synthConfig)
	tw := resolve(t, reg, "clip-text-noattn")
	got, _, err := tw.EmbedTexts(context.Background(), testTexts[:2])
	if err != nil {
		t.Fatal(err)
	}
	ids, _, _ := DefaultTokenizer().EncodeBatchFlat(testTexts[:2], 77)
	want := direct(t, testmodels.ClipTextSynthNoAttn, OutputTextEmbeds,
		[]inference.Tensor{inference.NewTensor([]int64{2, 77}, ids)})
	for i := range want {
		checkClose(t, testTexts[i], got[i], want[i], 1e-5)
	}
}

// batchObserver records the rows of every batch a model ran.
type batchObserver struct {
	mu   sync.Mutex
	rows map[string][]int
}

type modelObs struct {
	b     *batchObserver
	model string
}

func (o modelObs) ObserveBatch(rows int, _ time.Duration) {
	o.b.mu.Lock()
	defer o.b.mu.Unlock()
	o.b.rows[o.model] = append(o.b.rows[o.model], rows)
}

func (o modelObs) ObserveRequest(time.Duration, time.Duration, error) {}

func (b *batchObserver) batches(model string) []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.rows[model]...)
}

func observedRegistry(t *testing.T) (*models.Registry, *batchObserver) {
	t.Helper()
	cfg, err := models.ParseConfig(strings.NewReader(synthConfig))
	if err != nil {
		t.Fatal(err)
	}
	obs := &batchObserver{rows: map[string][]int{}}
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir: testmodels.Dir(),
		Runtime:   testRuntime,
		Observer:  func(m string) inference.Observer { return modelObs{obs, m} },
		Logger:    quiet,
	})
	reg.Load()
	t.Cleanup(reg.Close)
	obs.mu.Lock()
	obs.rows = map[string][]int{} // forget the warm-up runs
	obs.mu.Unlock()
	return reg, obs
}

// Texts of different token lengths run as one batch, and each row equals
// the text embedded alone.
func TestEmbedTextsBatchesMixedLengths(t *testing.T) {
	reg, obs := observedRegistry(t)
	tw := resolve(t, reg, "clip-vit-b32")
	got, _, err := tw.EmbedTexts(context.Background(), testTexts)
	if err != nil {
		t.Fatal(err)
	}
	if b := obs.batches("clip-text"); len(b) != 1 || b[0] != 4 {
		t.Fatalf("batches %v, want one of 4 rows", b)
	}
	for i, text := range testTexts {
		alone, _, err := tw.EmbedTexts(context.Background(), []string{text})
		if err != nil {
			t.Fatal(err)
		}
		checkClose(t, text, got[i], alone[0], 1e-6)
	}
}

// testImage draws one of a few distinct synthetic pictures.
func testImage(kind, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			fx, fy := float64(x)/float64(w), float64(y)/float64(h)
			var c color.NRGBA
			switch kind % 4 {
			case 0: // horizontal gradient
				c = color.NRGBA{uint8(255 * fx), 60, uint8(255 * (1 - fx)), 255}
			case 1: // vertical gradient
				c = color.NRGBA{30, uint8(255 * fy), 200, 255}
			case 2: // disc on a dark ground
				c = color.NRGBA{20, 20, 40, 255}
				if (fx-0.5)*(fx-0.5)+(fy-0.5)*(fy-0.5) < 0.09 {
					c = color.NRGBA{250, 220, 30, 255}
				}
			case 3: // checkerboard
				c = color.NRGBA{240, 240, 240, 255}
				if (x/(w/4)+y/(h/4))%2 == 1 {
					c = color.NRGBA{10, 90, 10, 255}
				}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

// Images embedded in one call, in chunks of the model's max_batch_size,
// equal the vision model run directly on their pixel values.
func TestEmbedImagesMatchesDirectRun(t *testing.T) {
	reg, obs := observedRegistry(t)
	tw := resolve(t, reg, "clip-vit-b32")
	const n = 7
	imgs := make([]*image.NRGBA, n)
	for i := range imgs {
		imgs[i] = testImage(i, 300+10*i, 200+7*i)
	}
	got, err := tw.EmbedImages(context.Background(), n, func(i int) (*image.NRGBA, error) { return imgs[i], nil })
	if err != nil {
		t.Fatal(err)
	}
	b := obs.batches("clip-vit-b32")
	rows := 0
	for _, r := range b {
		rows += r
		if r > 4 {
			t.Errorf("batch of %d rows, max_batch_size is 4", r)
		}
	}
	if rows != n {
		t.Errorf("batches %v, want %d rows in all", b, n)
	}
	per := DefaultImageConfig.Values()
	pv := make([]float32, n*per)
	for i, img := range imgs {
		if err := DefaultImageConfig.PixelValues(pv[i*per:(i+1)*per], img); err != nil {
			t.Fatal(err)
		}
	}
	want := direct(t, testmodels.ClipVisionSynth, OutputImageEmbeds,
		[]inference.Tensor{inference.NewTensor([]int64{n, 3, 224, 224}, pv)})
	for i := range want {
		checkUnit(t, fmt.Sprint("image ", i), got[i])
		checkClose(t, fmt.Sprint("image ", i), got[i], want[i], 1e-5)
	}
	if c := cosine(got[0], got[2]); c > 0.9 {
		t.Errorf("gradient and disc have cosine %v", c)
	}
	if c := cosine(got[0], got[4]); c < 0.95 {
		t.Errorf("the same gradient at two sizes has cosine %v", c)
	}
}

func TestEmbedErrors(t *testing.T) {
	reg := loadRegistry(t, synthConfig)
	ctx := context.Background()
	img := func(int) (*image.NRGBA, error) { return testImage(0, 64, 64), nil }

	for name, want := range map[string]error{"nope": ErrUnknownModel, "affine": ErrNotCLIP} {
		if _, err := Resolve(reg, name); !errors.Is(err, want) {
			t.Errorf("Resolve(%s): %v, want %v", name, err, want)
		}
	}
	bad := loadRegistry(t, `
models:
  - {name: v, file: clip_vision_synth.onnx, task: clip-vision, options: {text_model: v}}
`)
	if _, err := Resolve(bad, "v"); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "text_model") {
		t.Errorf("text_model naming a vision model: %v", err)
	}

	text := resolve(t, reg, "clip-text")
	if _, err := text.EmbedImages(ctx, 1, img); !errors.Is(err, ErrNoTower) {
		t.Errorf("image to a text model: %v", err)
	}
	visionOnly := loadRegistry(t, `
models:
  - {name: v, file: clip_vision_synth.onnx, task: clip-vision}
`)
	if _, _, err := resolve(t, visionOnly, "v").EmbedTexts(ctx, []string{"a"}); !errors.Is(err, ErrNoTower) {
		t.Errorf("text to a vision model without text_model: %v", err)
	}

	missing := resolve(t, reg, "clip-missing")
	if _, err := missing.EmbedImages(ctx, 1, img); !errors.Is(err, models.ErrNotReady) || !strings.Contains(err.Error(), "fetch") {
		t.Errorf("missing vision weights: %v", err)
	}
	if _, _, err := missing.EmbedTexts(ctx, []string{"a"}); !errors.Is(err, models.ErrNotReady) {
		t.Errorf("missing text weights: %v", err)
	}
	if ids, _, err := missing.Tokenize([]string{"a cat"}); err != nil || len(ids[0]) != 4 {
		t.Errorf("Tokenize without weights: %v %v", ids, err)
	}

	tw := resolve(t, reg, "clip-vit-b32")
	boom := errors.New("undecodable")
	_, err := tw.EmbedImages(ctx, 9, func(i int) (*image.NRGBA, error) {
		if i == 5 {
			return nil, boom
		}
		return testImage(i, 64, 48), nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("source error: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tw.EmbedImages(cancelled, 3, img); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled images: %v", err)
	}
	if _, _, err := tw.EmbedTexts(cancelled, []string{"a", "b"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled texts: %v", err)
	}
}

// A row of zeros (no direction) comes back as the zero vector, which
// callers can tell apart; NaN or infinity means a broken model.
func TestUnitRowsZeroAndBroken(t *testing.T) {
	rows := make([]float32, 2*Dim)
	rows[Dim] = 3
	dst := make([][]float32, 2)
	if err := unitRows(dst, inference.NewTensor([]int64{2, Dim}, rows)); err != nil {
		t.Fatal(err)
	}
	if len(dst[0]) != Dim || slices.ContainsFunc(dst[0], func(v float32) bool { return v != 0 }) || dst[1][0] != 1 {
		t.Fatalf("got %v... and %v...", dst[0][:4], dst[1][:4])
	}
	rows[0] = float32(math.NaN())
	if err := unitRows(dst, inference.NewTensor([]int64{2, Dim}, rows)); !errors.Is(err, ErrBadEmbedding) {
		t.Fatalf("NaN row: %v", err)
	}
}
