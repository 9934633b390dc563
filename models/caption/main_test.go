package caption

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/internal/testruntime"
	"github.com/imgserve/imgserve/models"
)

var testRuntime *inference.Runtime

// TestMain loads the real ONNX Runtime once and fails the run if a
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	testruntime.Run(m, "caption", func(rt *inference.Runtime) { testRuntime = rt })
}

// Names of the synthetic models in test configurations.
const (
	encName = "cap"
	decName = "cap-dec"
)

// kvCacheEnv, set to device or host, makes every test configuration keep
// the decoder's cache there (TestBatcherWithTheCacheOnTheDevice runs the
// batcher's tests again with it set to device).
const kvCacheEnv = "IMGSERVE_TEST_KV_CACHE"

// testConfig is a caption model on the synthetic encoder and the given
// decoder file; decoding settings go in decBatching and decOptions.
func testConfig(decoderFile, decBatching, decOptions string) string {
	if mode := os.Getenv(kvCacheEnv); mode != "" && !strings.Contains(decOptions, "kv_cache") {
		sep := ", "
		if strings.TrimSpace(decOptions) == "{}" {
			sep = ""
		}
		decOptions = "{kv_cache: " + mode + sep + strings.TrimPrefix(strings.TrimSpace(decOptions), "{")
	}
	return fmt.Sprintf(`
models:
  - name: %s
    file: %s
    task: caption-encoder
    intra_op_threads: 1
    batching: {max_batch_size: 8, max_queue_delay: 2ms, max_queue_size: 64}
    options: {decoder: %s}
  - name: %s
    file: %s
    task: caption-decoder
    intra_op_threads: 1
    batching: %s
    options: %s
`, encName, testmodels.CaptionEncoderSynth, decName, decName, decoderFile, decBatching, decOptions)
}

// loadRegistry loads a configuration from the synthetic models' folder.
func loadRegistry(t testing.TB, cfgYAML string, obs func(string) inference.Observer) *models.Registry {
	t.Helper()
	cfg, err := models.ParseConfig(strings.NewReader(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir: testmodels.Dir(),
		Runtime:   testRuntime,
		Observer:  obs,
		Logger:    slog.New(slog.DiscardHandler),
	})
	// Every device tensor a test's captions made is released by its end
	// (this cleanup runs after the registry's, registered below).
	live := inference.LiveDeviceTensors()
	t.Cleanup(func() {
		if n := inference.LiveDeviceTensors() - live; n != 0 {
			t.Errorf("%d device tensors not released", n)
		}
	})
	reg.Load()
	t.Cleanup(reg.Close)
	return reg
}

// pipeline loads a caption model and returns its pipeline.
func pipeline(t testing.TB, cfgYAML string, observe func(string) inference.Observer) *Pipeline {
	t.Helper()
	reg := loadRegistry(t, cfgYAML, nil)
	p, err := NewRegistry(reg, observe).Get(encName)
	if err != nil {
		t.Fatal(err)
	}
	if mode := os.Getenv(kvCacheEnv); mode != "" && !strings.Contains(cfgYAML, "kv_cache: host") && p.dec.onDevice != (mode == "device") {
		t.Fatalf("%s=%s, but the batcher's cache is on the device: %v", kvCacheEnv, mode, p.dec.onDevice)
	}
	return p
}

func defaultPipeline(t testing.TB) *Pipeline {
	return pipeline(t, testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1}", "{}"), nil)
}

func solid(c color.NRGBA, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

// testImages are solid colours whose synthetic captions differ in tokens
// and length.
var testImages = []color.NRGBA{
	{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255},
	{0, 0, 0, 255}, {200, 120, 40, 255}, {30, 90, 160, 255}, {250, 200, 10, 255},
}

// The synthetic decoder's rule (internal/testmodels/README.md): the image
// code comes from the encoder's actual output, in float32 as the graph
// computes it.
const (
	synthEOS   = 50256
	synthVocab = 50257
)

func synthCode(hidden inference.Tensor) int64 {
	v := inference.Values[float32](hidden)[0]
	x := float32(v*1000) + 0.5
	return (int64(math.Floor(float64(x)))%97 + 97) % 97 // Python's mod
}

func synthNext(code, pos, tok int64) (top, second int64) {
	next := 256 + ((code*31+pos*7+tok)%2000+2000)%2000
	if pos >= 3+code%5 {
		return synthEOS, next
	}
	return next, next + 1
}

// synthCaption is the greedy caption the rule predicts.
func synthCaption(code int64, maxNew int) []int64 {
	var out []int64
	tok := int64(synthEOS)
	for pos := int64(0); len(out) < maxNew; pos++ {
		top, _ := synthNext(code, pos, tok)
		if top == synthEOS {
			break
		}
		out = append(out, top)
		tok = top
	}
	return out
}

// encode runs the encoder on a solid image.
func encode(t testing.TB, p *Pipeline, c color.NRGBA) inference.Tensor {
	t.Helper()
	h, err := p.Encode(context.Background(), solid(c, 64, 48))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	batches  []int
	requests int
	failures []error
}

func (r *recorder) ObserveBatch(rows int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, rows)
}

func (r *recorder) ObserveRequest(_, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if err != nil {
		r.failures = append(r.failures, err)
	}
}

func (r *recorder) rows() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.batches...)
}
