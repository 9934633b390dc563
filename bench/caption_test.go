package bench

import (
	"context"
	"fmt"
	"image"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/caption"
)

// clock sums the batches an observer is told about. On the decoder's
// registry model (batching off) each batch is one session.Run; on the
// caption batcher's DecodeLabel each is a whole decode step, from building
// its inputs to regrouping its cache.
type clock struct {
	runs atomic.Int64
	ns   atomic.Int64
}

func (c *clock) ObserveBatch(_ int, d time.Duration) {
	c.runs.Add(1)
	c.ns.Add(int64(d))
}
func (c *clock) ObserveRequest(time.Duration, time.Duration, error) {}

func (c *clock) read() (int64, time.Duration) { return c.runs.Load(), time.Duration(c.ns.Load()) }

// captionBench loads the synthetic caption models: the 12-layer decoder has
// the real ViT-GPT2 decoder's cache geometry (12 layers, 12 heads of 64), so
// the cache the pipeline moves is as large as with real weights, while its
// run costs almost nothing: what a decode step costs beyond it is the
// pipeline's overhead.
func captionBench(b *testing.B, rows int) (p *caption.Pipeline, runs, steps *clock) {
	cfg := fmt.Sprintf(`
models:
  - {name: cap, file: %s, task: caption-encoder, intra_op_threads: 1, options: {decoder: dec}}
  - name: dec
    file: %s
    task: caption-decoder
    intra_op_threads: 1
    batching: {max_batch_size: 1, max_queue_delay: 1m}
    options: {decode_batch_size: "%d"}
`, testmodels.CaptionEncoderSynth, testmodels.CaptionDecoderSynth, rows)
	runs, steps = &clock{}, &clock{}
	reg := loadRegistry(b, testmodels.Dir(), cfg, models.Options{
		Observer: func(model string) inference.Observer {
			if model == "dec" {
				return runs
			}
			return nil
		},
	})
	p, err := caption.NewRegistry(reg, func(string) inference.Observer { return steps }).Get("cap")
	if err != nil {
		b.Fatal(err)
	}
	return p, runs, steps
}

// benchColours give captions of 3 to 7 tokens under the synthetic rule, so
// at batch 8 sequences leave the batch at different steps.
var benchColours = [][3]byte{
	{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255},
	{0, 0, 0}, {200, 120, 40}, {30, 90, 160}, {250, 200, 10},
}

// realDecoderBytes is the size of the int8 merged decoder
// (vit-gpt2-decoder-merged-int8.onnx). A CPU step at batch 1 reads every
// weight once, so reading this many bytes is a floor of a real step
// (BenchmarkCaptionWeightsReadFloor). The step is in fact compute-bound:
// GPT-2's cross-attention recomputes the keys and values of the 197 encoder
// positions every step (its cache holds only self-attention), about 2.8
// billion int8 multiply-adds per row, which BenchmarkCaptionStepProxy times.
const realDecoderBytes = 158_599_996

// BenchmarkCaptionDecode decodes `batch` concurrent captions per op through
// the continuous batcher, from encoder outputs computed beforehand, and
// reports per decoder step:
//
//   - run-ns/step: session.Run of the synthetic decoder, which includes
//     ONNX Runtime copying the outputs (logits, present) into Go memory;
//   - step-overhead-ns/step: the rest of the step, outside session.Run:
//     building the inputs (the past is the previous present, passed as is),
//     the hand-off to the registry's scheduler, taking present and the last
//     logits out, argmax or beam scoring, moving cache rows when sequences
//     leave or beams swap histories;
//   - overhead-ns/step: wall time minus run time, per step: the above plus
//     what each caption costs once (packing its encoder output into the
//     cohort, goroutines, the batcher's scheduling).
func BenchmarkCaptionDecode(b *testing.B) {
	for _, bc := range []struct {
		batch, beams int
	}{{1, 1}, {8, 1}, {1, 4}, {8, 4}} {
		b.Run(fmt.Sprintf("batch=%d/beams=%d", bc.batch, bc.beams), func(b *testing.B) {
			p, runs, steps := captionBench(b, bc.batch*bc.beams)
			hidden := make([]inference.Tensor, bc.batch)
			for i := range hidden {
				c := benchColours[(i+2)%len(benchColours)] // batch 1: blue, the longest caption
				img := image.NewNRGBA(image.Rect(0, 0, 224, 224))
				for j := 0; j < len(img.Pix); j += 4 {
					img.Pix[j], img.Pix[j+1], img.Pix[j+2], img.Pix[j+3] = c[0], c[1], c[2], 255
				}
				var err error
				if hidden[i], err = p.Encode(context.Background(), img); err != nil {
					b.Fatal(err)
				}
			}
			params := caption.Params{MaxNewTokens: caption.DefaultMaxNewTokens, NumBeams: bc.beams}
			var tokens atomic.Int64
			runs0, run0 := runs.read()
			_, step0 := steps.read()
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				var wg sync.WaitGroup
				for _, h := range hidden {
					wg.Go(func() {
						toks, err := p.Generate(context.Background(), h, params)
						if err != nil {
							b.Error(err)
						}
						tokens.Add(int64(len(toks)))
					})
				}
				wg.Wait()
			}
			wall := time.Since(start)
			n, run := runs.read()
			_, step := steps.read()
			count, run, step := float64(n-runs0), run-run0, step-step0
			b.ReportMetric(float64(tokens.Load())/wall.Seconds(), "tokens/s")
			b.ReportMetric(count/float64(b.N), "steps/op")
			b.ReportMetric(float64(run.Nanoseconds())/count, "run-ns/step")
			b.ReportMetric(float64((step-run).Nanoseconds())/count, "step-overhead-ns/step")
			b.ReportMetric(float64((wall-run).Nanoseconds())/count, "overhead-ns/step")
		})
	}
}

// BenchmarkCaptionWeightsReadFloor reads 158.6 MB, the int8 merged
// decoder's weights, once per op on every core: the memory-bandwidth floor
// of one real decoder step at batch 1 on this machine.
func BenchmarkCaptionWeightsReadFloor(b *testing.B) { benchReadFloor(b, realDecoderBytes) }

// BenchmarkCaptionStepProxy times a stand-in for one real decoder step: the
// export's int8 matrices with their shapes, dynamically quantised, on batch
// rows (models/caption/testdata/step_proxy.py says what is in it; attention,
// norms and the cache are left out, so it is a lower bound). The real
// weights cannot be fetched here; the proxy is generated on demand:
//
//	/usr/bin/python3 models/caption/testdata/step_proxy.py /tmp/step_proxy.onnx
//	CAPTION_STEP_PROXY=/tmp/step_proxy.onnx go test -run '^$' -bench CaptionStepProxy ./bench/
func BenchmarkCaptionStepProxy(b *testing.B) {
	s := proxySession(b, "CAPTION_STEP_PROXY", "models/caption/testdata/step_proxy.py")
	for _, rows := range []int{1, 4, 8, 32} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			x := make([]float32, rows*768)
			enc := make([]float32, rows*197*768)
			for i := range x {
				x[i] = float32(i%7) * 0.1
			}
			for i := range enc {
				enc[i] = float32(i%11) * 0.05
			}
			in := []inference.Tensor{
				inference.NewTensor([]int64{int64(rows), 768}, x),
				inference.NewTensor([]int64{int64(rows * 197), 768}, enc),
			}
			for b.Loop() {
				if _, err := s.Run(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
