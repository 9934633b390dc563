package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/diffusion"
)

// rowsClock is a clock that also counts rows, for batch sizes.
type rowsClock struct {
	clock
	rows atomic.Int64
}

func (c *rowsClock) ObserveBatch(rows int, d time.Duration) {
	c.rows.Add(int64(rows))
	c.clock.ObserveBatch(rows, d)
}

// sdBench loads the synthetic Stable Diffusion pipeline. Its models have
// the real exports' signatures and geometry (77x1024 text states, 4x64x64
// latents at 512x512, 3x512x512 images), so everything the pipeline does
// around a UNet run moves as much data as with real weights, while the
// runs themselves cost almost nothing: a step's time beyond its UNet run
// is the pipeline's overhead. unet observes the UNet's batches.
func sdBench(b *testing.B, maxBatch int, delay string) (*diffusion.Pipeline, *rowsClock) {
	unet := &rowsClock{}
	cfg := fmt.Sprintf(`
models:
  - name: sd
    file: %s
    task: diffusion-unet
    intra_op_threads: 1
    batching: {max_batch_size: %d, max_queue_delay: %s, max_queue_size: 256}
    options: {text_encoder: sd-text, vae_decoder: sd-vae-dec, safety_checker: sd-safety}
  - {name: sd-text, file: %s, task: diffusion-text-encoder, intra_op_threads: 1, batching: {max_batch_size: 16, max_queue_delay: 1ms, max_queue_size: 256}}
  - {name: sd-vae-dec, file: %s, task: diffusion-vae-decoder, intra_op_threads: 1, batching: {max_batch_size: 16, max_queue_delay: 1ms, max_queue_size: 256}}
  - {name: sd-safety, file: %s, task: diffusion-safety-checker, intra_op_threads: 1, batching: {max_queue_size: 256}}
`, testmodels.SDUNetSynth, maxBatch, delay, testmodels.SDTextEncoderSynth, testmodels.SDVAEDecoderSynth, testmodels.SDSafetyCheckerSynth)
	reg := loadRegistry(b, testmodels.Dir(), cfg, models.Options{
		Observer: func(model string) inference.Observer {
			if model == "sd" {
				return unet
			}
			return nil
		},
	})
	p, err := diffusion.NewRegistry(reg).Get("sd")
	if err != nil {
		b.Fatal(err)
	}
	return p, unet
}

// BenchmarkDiffusionSteps generates n images of 512x512 per op with 4
// Euler steps (guided: with a negative prompt at guidance 5, 2n rows per
// step), and reports per denoising step:
//
//   - rows/run: the UNet's rows per run (n images are one batch);
//   - run-ns/step: the UNet's runs (scheduler compute time, mostly
//     session.Run of the synthetic UNet, including ONNX Runtime's copy of
//     out_sample into Go memory);
//   - step-overhead-ns/step: the rest of the denoising loop, outside the
//     UNet's runs: scaling the latents and packing them (and the text
//     states) into the UNet's inputs, the scheduler hand-off, reading
//     out_sample, guidance, the Euler update, the finiteness check;
//   - overhead-ns/image-step: the same per image.
//
// The text encoder, VAE decoder and NSFW check run once per request, not
// per step; their cost is in ns/op.
func BenchmarkDiffusionSteps(b *testing.B) {
	const steps = 4
	for _, c := range []struct {
		n      int
		guided bool
	}{{1, false}, {4, false}, {8, false}, {4, true}} {
		name := fmt.Sprintf("n=%d", c.n)
		if c.guided {
			name += "/guided"
		}
		b.Run(name, func(b *testing.B) {
			// No queue delay: a lone request's step starts at once, so the
			// time outside the runs is the pipeline's, not a wait for
			// company that max_queue_delay would add.
			p, unet := sdBench(b, 16, "0s")
			req := diffusion.Request{Prompt: "a lighthouse at dusk", N: c.n, Steps: steps, Width: 512, Height: 512}
			if c.guided {
				g := 5.0
				req.Guidance, req.NegativePrompt = &g, "blurry"
			}
			seed := uint32(1)
			runs0, run0 := unet.read()
			rows0 := unet.rows.Load()
			var denoise time.Duration
			b.ReportAllocs()
			for b.Loop() {
				r := req
				r.Seed = &seed
				res, err := p.Generate(context.Background(), &r, nil)
				if err != nil {
					b.Fatal(err)
				}
				denoise += res.Timing.Denoise
			}
			runs, run := unet.read()
			runs, run = runs-runs0, run-run0
			stepCount := float64(b.N * steps)
			b.ReportMetric(float64(unet.rows.Load()-rows0)/float64(runs), "rows/run")
			b.ReportMetric(float64(run.Nanoseconds())/stepCount, "run-ns/step")
			b.ReportMetric(float64((denoise-run).Nanoseconds())/stepCount, "step-overhead-ns/step")
			b.ReportMetric(float64((denoise-run).Nanoseconds())/stepCount/float64(c.n), "overhead-ns/image-step")
		})
	}
}

// BenchmarkDiffusionConcurrent sends `clients` concurrent requests of one
// 512x512 image, 2 steps each, per op, to a UNet that batches up to 8 rows
// and waits up to 20 ms for company, and reports the UNet's rows per run:
// requests at the same step and size share runs.
func BenchmarkDiffusionConcurrent(b *testing.B) {
	for _, clients := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			p, unet := sdBench(b, 8, "20ms")
			runs0, _ := unet.read()
			rows0 := unet.rows.Load()
			var images atomic.Int64
			start := time.Now()
			for b.Loop() {
				var wg sync.WaitGroup
				for i := range clients {
					wg.Go(func() {
						seed := uint32(i)
						res, err := p.Generate(context.Background(), &diffusion.Request{Prompt: "a lighthouse", Steps: 2, Seed: &seed}, nil)
						if err != nil {
							b.Error(err)
							return
						}
						images.Add(int64(len(res.Images)))
					})
				}
				wg.Wait()
			}
			runs, _ := unet.read()
			b.ReportMetric(float64(unet.rows.Load()-rows0)/float64(runs-runs0), "rows/run")
			b.ReportMetric(float64(images.Load())/time.Since(start).Seconds(), "images/s")
		})
	}
}

// sdUNetFP16Bytes is the size of SD-Turbo's UNet weights in fp16 (865,910,724
// parameters): a CPU step reads each once, so reading this many bytes is a
// floor of a real step (BenchmarkDiffusionWeightsReadFloor).
const sdUNetFP16Bytes = 1_731_821_448

// BenchmarkDiffusionWeightsReadFloor reads 1.73 GB once per op on every
// core: the memory-bandwidth floor of one real SD-Turbo UNet step.
func BenchmarkDiffusionWeightsReadFloor(b *testing.B) { benchReadFloor(b, sdUNetFP16Bytes) }

// BenchmarkDiffusionUNetProxy times a stand-in for part of one real UNet
// step: the first down block of SD 2.x's UNet at 512x512 (64x64 latents,
// 320 channels: two ResNet blocks and two transformer blocks with
// self-attention over 4096 positions, cross-attention to 77x1024 text
// states and a GEGLU feed-forward), with random weights
// (models/diffusion/testdata/unet_proxy.py says what is in it: 54 G of
// the whole UNet's 402 G multiply-adds, 13%). The real weights cannot be fetched here;
// the proxy is generated on demand:
//
//	/usr/bin/python3 models/diffusion/testdata/unet_proxy.py /tmp/unet_proxy.onnx
//	DIFFUSION_UNET_PROXY=/tmp/unet_proxy.onnx go test -run '^$' -bench DiffusionUNetProxy ./bench/
func BenchmarkDiffusionUNetProxy(b *testing.B) {
	s := proxySession(b, "DIFFUSION_UNET_PROXY", "models/diffusion/testdata/unet_proxy.py")
	x := make([]float32, 320*64*64)
	ctx := make([]float32, 77*1024)
	for i := range x {
		x[i] = float32(i%13) * 0.01
	}
	for i := range ctx {
		ctx[i] = float32(i%7) * 0.02
	}
	in := []inference.Tensor{inference.NewTensor([]int64{1, 320, 64, 64}, x), inference.NewTensor([]int64{1, 77, 1024}, ctx)}
	for b.Loop() {
		if _, err := s.Run(in); err != nil {
			b.Fatal(err)
		}
	}
}
