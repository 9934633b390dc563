package diffusion

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/clip"
	// The embedded configuration names their tasks too.
	_ "github.com/imgserve/imgserve/models/caption"
	_ "github.com/imgserve/imgserve/models/inpaint"
	_ "github.com/imgserve/imgserve/models/matting"
)

// The synthetic models (internal/testmodels/README.md) make the pipeline's
// output computable by hand: the text encoder turns the prompt into four
// numbers c, the UNet is a perfect denoiser towards 0.18215*(c +
// 0.5*tanh(its input)), and the VAE decoder shows latent z as
// tanh(z[k] + 0.25*z[3]). refImage follows the same maths in float64,
// sharing nothing with the pipeline but the schedule (whose numbers
// scheduler_test.go checks against diffusers) and the seeded noise.

const vaeScale = 0.18215

// conditioning is c for a prompt, from the synthetic text encoder's rule
// and the tokenizer's 77 padded ids.
func conditioning(t *testing.T, p *Pipeline, prompt string) [4]float64 {
	t.Helper()
	ids, _, width := p.Tokenizer().EncodeBatchFlat([]string{prompt}, 77)
	if width != 77 {
		t.Fatalf("width %d", width)
	}
	var c [4]float64
	colours := []int64{736, 1901, 1746}
	for _, id := range ids {
		for k, col := range colours {
			v := -1.0
			if id == col {
				v += 38.5
			}
			c[k] += v / 77
		}
		c[3] += (float64(id%17)/34 - 0.25) / 77
	}
	return c
}

// refImage runs Euler on the synthetic UNet from latents x (in place) and
// decodes them.
func refImage(x []float64, c [4]float64, s *Schedule, w, h int) *image.NRGBA {
	plane := w / 8 * h / 8
	for i := range s.Steps() {
		sig, next := s.Sigmas[i], s.Sigmas[i+1]
		for k := range x {
			in := x[k] / math.Sqrt(sig*sig+1)
			target := vaeScale * (c[k/plane] + 0.5*math.Tanh(in))
			x[k] += (x[k] - target) / sig * (next - sig)
		}
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for xx := range w {
			l := y/8*(w/8) + xx/8
			z3 := x[3*plane+l] / vaeScale
			for k := range 3 {
				v := (math.Tanh(x[k*plane+l]/vaeScale+0.25*z3)/2 + 0.5) * 255
				img.Pix[y*img.Stride+4*xx+k] = byte(math.Round(v))
			}
			img.Pix[y*img.Stride+4*xx+3] = 255
		}
	}
	return img
}

func fill64(nz *Noise, n int) []float64 {
	v := make([]float32, n)
	nz.Fill(v)
	out := make([]float64, n)
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// maxDiff is the largest difference of any channel of two images.
func maxDiff(t *testing.T, a, b *image.NRGBA) int {
	t.Helper()
	if a.Rect != b.Rect {
		t.Fatalf("sizes %v and %v", a.Rect, b.Rect)
	}
	d := 0
	for i := range a.Pix {
		d = max(d, int(a.Pix[i])-int(b.Pix[i]), int(b.Pix[i])-int(a.Pix[i]))
	}
	return d
}

func generate(t *testing.T, p *Pipeline, req Request) *Result {
	t.Helper()
	res, err := p.Generate(context.Background(), &req, noRandom)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestTextToImageMatchesReference(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	for _, c := range []struct{ w, h, steps int }{{512, 512, 1}, {768, 512, 1}, {512, 512, 2}, {512, 768, 4}, {256, 256, 3}} {
		res := generate(t, p, Request{Prompt: "a cat", Width: c.w, Height: c.h, Steps: c.steps, Seed: fixedSeed(7)})
		if res.Width != c.w || res.Height != c.h || res.Steps != c.steps || len(res.Images) != 1 {
			t.Fatalf("%+v: result %dx%d, %d steps, %d images", c, res.Width, res.Height, res.Steps, len(res.Images))
		}
		got := res.Images[0]
		if got.Withheld || got.Seed != 7 || got.Image.Rect.Dx() != c.w || got.Image.Rect.Dy() != c.h {
			t.Fatalf("%+v: %+v", c, got)
		}
		s, err := p.set.scheduler.NewSchedule(SamplerEuler, c.steps)
		if err != nil {
			t.Fatal(err)
		}
		x := fill64(NewNoise(7), 4*c.w/8*c.h/8)
		for k := range x {
			x[k] *= s.InitNoiseSigma
		}
		want := refImage(x, conditioning(t, p, "a cat"), s, c.w, c.h)
		if d := maxDiff(t, got.Image, want); d > 1 {
			t.Errorf("%dx%d, %d steps: differs from the reference by %d levels", c.w, c.h, c.steps, d)
		}
	}
}

func TestSeeds(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	one := generate(t, p, Request{Prompt: "a cat", Seed: fixedSeed(41), N: 2})
	again := generate(t, p, Request{Prompt: "a cat", Seed: fixedSeed(41), N: 2})
	other := generate(t, p, Request{Prompt: "a cat", Seed: fixedSeed(42)})
	for i := range 2 {
		if !slices.Equal(one.Images[i].Image.Pix, again.Images[i].Image.Pix) {
			t.Errorf("image %d: the same seed gave different pixels", i)
		}
	}
	if slices.Equal(one.Images[0].Image.Pix, one.Images[1].Image.Pix) {
		t.Error("the two images of one request are the same")
	}
	// Image 1 of seed 41 is image 0 of seed 42.
	if one.Images[1].Seed != 42 || !slices.Equal(one.Images[1].Image.Pix, other.Images[0].Image.Pix) {
		t.Error("image 1 of seed 41 differs from image 0 of seed 42")
	}
	// Without a seed, one is drawn and reported.
	res, err := p.Generate(context.Background(), &Request{Prompt: "a cat"}, func() uint32 { return 77 })
	if err != nil || res.Images[0].Seed != 77 {
		t.Errorf("drawn seed: %v, %v", res, err)
	}
}

func TestBatching(t *testing.T) {
	unet := &batches{}
	obs := func(m string) inference.Observer {
		if m == "sd" {
			return unet
		}
		return nil
	}
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), obs)
	unet.take() // warm-up

	generate(t, p, Request{Prompt: "a cat", N: 4, Steps: 2, Seed: fixedSeed(1)})
	if got := unet.take(); !slices.Equal(got, []int{4, 4}) {
		t.Errorf("n=4, 2 steps: UNet batches %v, want [4 4]", got)
	}
	// With guidance, the negative prompt's rows join the same run.
	g := 3.0
	generate(t, p, Request{Prompt: "a cat", NegativePrompt: "blurry", Guidance: &g, N: 4, Seed: fixedSeed(1)})
	if got := unet.take(); !slices.Equal(got, []int{8}) {
		t.Errorf("n=4 with guidance: UNet batches %v, want [8]", got)
	}
	// More rows than a batch holds: chunks.
	generate(t, p, Request{Prompt: "a cat", Guidance: &g, N: 6, Seed: fixedSeed(1)})
	if got := unet.take(); len(got) != 2 || got[0]+got[1] != 12 || max(got[0], got[1]) != 8 {
		t.Errorf("n=6 with guidance: UNet batches %v, want 8 and 4", got)
	}
}

func TestGuidanceMatchesReference(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	g := 2.5
	res := generate(t, p, Request{Prompt: "green", NegativePrompt: "blue", Guidance: &g, Seed: fixedSeed(3), Width: 256, Height: 256})
	cc, cu := conditioning(t, p, "green"), conditioning(t, p, "blue")
	var c [4]float64
	for k := range c {
		// x0 = target(uncond) + g*(target(cond) - target(uncond)); tanh terms cancel.
		c[k] = cu[k] + g*(cc[k]-cu[k])
	}
	s, _ := p.set.scheduler.NewSchedule(SamplerEuler, 1)
	x := fill64(NewNoise(3), 4*32*32)
	for k := range x {
		x[k] *= s.InitNoiseSigma
	}
	if d := maxDiff(t, res.Images[0].Image, refImage(x, c, s, 256, 256)); d > 1 {
		t.Errorf("guided image differs from the reference by %d levels", d)
	}
}

// testImage is a smooth picture whose 8x8 blocks differ.
func testImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			o := y*img.Stride + 4*x
			img.Pix[o] = byte(40 + 150*x/w)
			img.Pix[o+1] = byte(30 + 170*y/h)
			img.Pix[o+2] = byte(90 + 60*((x/8+y/8)%2))
			img.Pix[o+3] = 255
		}
	}
	return img
}

func TestImageToImageMatchesReference(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	src := testImage(256, 192)
	res := generate(t, p, Request{Prompt: "a cat", Image: src, Width: 256, Height: 192, Strength: 0.5, Steps: 2, Seed: fixedSeed(5)})
	if res.Steps != 1 {
		t.Fatalf("2 steps at strength 0.5 ran %d", res.Steps)
	}
	full, _ := p.set.scheduler.NewSchedule(SamplerEuler, 2)
	s := full.Truncate(1)
	// The synthetic encoder: atanh of the 8x8 means of the image in [-1, 1].
	w, h := 256/8, 192/8
	plane := w * h
	nz := NewNoise(5)
	sampleNoise, addNoise := fill64(nz, 4*plane), fill64(nz, 4*plane)
	x := make([]float64, 4*plane)
	for k := range 3 {
		for by := range h {
			for bx := range w {
				var sum float64
				for y := by * 8; y < by*8+8; y++ {
					for xx := bx * 8; xx < bx*8+8; xx++ {
						sum += float64(float32(src.Pix[y*src.Stride+4*xx+k])/255*2 - 1)
					}
				}
				x[k*plane+by*w+bx] = math.Atanh(math.Max(-0.99, math.Min(0.99, sum/64)))
			}
		}
	}
	for i := range x {
		x[i] = (x[i]+math.Exp(-15)*sampleNoise[i])*vaeScale + addNoise[i]*s.Sigmas[0]
	}
	want := refImage(x, conditioning(t, p, "a cat"), s, 256, 192)
	if d := maxDiff(t, res.Images[0].Image, want); d > 1 {
		t.Errorf("image-to-image differs from the reference by %d levels", d)
	}
	// Default steps: the one default step that runs at strength 0.5 needs 2.
	res = generate(t, p, Request{Prompt: "a cat", Image: src, Strength: 0.5, Seed: fixedSeed(5)})
	// Generated at 576x448 (256x192 scaled to about 512x512's area, in
	// multiples of 64), returned at the upload's size.
	if res.Steps != 1 || res.Width != 256 || res.Height != 192 || res.Images[0].Image.Rect.Dx() != 256 {
		t.Errorf("defaults: %d steps, %dx%d, want 1 step returned at 256x192", res.Steps, res.Width, res.Height)
	}
}

func TestEditMaskKeepsUnmaskedPixels(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	src := testImage(300, 200) // not a multiple of 64: generated at 512x320, composited back
	mask := image.NewGray(src.Rect)
	for y := 50; y < 150; y++ {
		for x := 100; x < 250; x++ {
			mask.Pix[y*mask.Stride+x] = 255
		}
	}
	mask.Pix[10*mask.Stride+10] = 128 // one soft pixel
	res := generate(t, p, Request{Prompt: "a cat", Image: src, Mask: mask, Seed: fixedSeed(9)})
	out := res.Images[0].Image
	if out.Rect != src.Rect {
		t.Fatalf("edited image is %v, the upload %v", out.Rect, src.Rect)
	}
	changed := 0
	for y := range 200 {
		for x := range 300 {
			o := y*src.Stride + 4*x
			same := slices.Equal(out.Pix[o:o+4], src.Pix[o:o+4])
			switch m := mask.Pix[y*mask.Stride+x]; {
			case m == 0 && !same:
				t.Fatalf("pixel (%d,%d) outside the mask changed", x, y)
			case m == 255 && !same:
				changed++
			}
		}
	}
	if changed < 100*150/2 {
		t.Errorf("only %d of the 15000 masked pixels changed", changed)
	}
}

func TestFP16PipelineAgreesWithFP32(t *testing.T) {
	p32 := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	p16 := pipeline(t, synthConfig(true, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	for _, req := range []Request{
		{Prompt: "a green cat", Seed: fixedSeed(11), Width: 320, Height: 256, Steps: 3},
		{Prompt: "a green cat", Seed: fixedSeed(11), Image: testImage(320, 256), Strength: 0.75, Steps: 4},
	} {
		a, b := generate(t, p32, req), generate(t, p16, req)
		// fp16 keeps about 3 decimal digits through the UNet and VAE.
		if d := maxDiff(t, a.Images[0].Image, b.Images[0].Image); d > 6 {
			t.Errorf("fp16 pipeline differs from fp32 by %d levels", d)
		}
	}
}

func TestSafetyCheckerWithholdsFlaggedImages(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	count := func(prompt string) (withheld int, res *Result) {
		res = generate(t, p, Request{Prompt: prompt, N: 8, Seed: fixedSeed(100), Width: 128, Height: 128})
		for _, o := range res.Images {
			if o.Withheld != (o.Image == nil) {
				t.Fatalf("image %d: withheld %v with image %v", o.Index, o.Withheld, o.Image != nil)
			}
			if o.Withheld {
				withheld++
				continue
			}
			if red := cornerRed(o.Image); red > 0.5 {
				t.Errorf("%q image %d returned with a corner red of %v", prompt, o.Index, red)
			}
		}
		return withheld, res
	}
	if n, _ := count("a cat"); n != 0 {
		t.Errorf("a cat: %d of 8 withheld", n)
	}
	if n, _ := count("red red red red"); n != 8 {
		t.Errorf("red red red red: %d of 8 withheld, want all", n)
	}
	if n, _ := count("red red"); n == 0 || n == 8 {
		t.Errorf("red red: %d of 8 withheld, want some", n)
	}
}

// cornerRed is the synthetic checker's statistic.
func cornerRed(img *image.NRGBA) float64 {
	var sum float64
	for y := range 8 {
		for x := range 8 {
			sum += float64(img.Pix[y*img.Stride+4*x]) / 255
		}
	}
	return sum / 64
}

func TestUnsafeUploadRefused(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	src := testImage(128, 128)
	for y := range 8 {
		for x := range 8 {
			src.Pix[y*src.Stride+4*x] = 250
		}
	}
	_, err := p.Generate(context.Background(), &Request{Prompt: "a cat", Image: src, Seed: fixedSeed(1)}, noRandom)
	if !errors.Is(err, ErrUnsafeInput) {
		t.Errorf("flagged upload: %v", err)
	}
}

func TestPromptBlocklist(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	for _, prompt := range []string{"a NUDE figure", "Naked!", "porn, please", "child   porn"} {
		if _, err := p.Generate(context.Background(), &Request{Prompt: prompt, Seed: fixedSeed(1)}, noRandom); !errors.Is(err, ErrPromptBlocked) {
			t.Errorf("%q: %v", prompt, err)
		}
	}
	for _, prompt := range []string{"Essex countryside", "a nudibranch", "explicitly blue"} {
		if _, err := p.Generate(context.Background(), &Request{Prompt: prompt, Seed: fixedSeed(1)}, noRandom); err != nil {
			t.Errorf("%q refused: %v", prompt, err)
		}
	}
}

func TestCLIPZeroShotCheck(t *testing.T) {
	// The synthetic CLIP's similarities are arbitrary but fixed. Generate
	// eight images with the synthetic safety checker (which never flags
	// "a cat"), score them here with the CLIP towers and a softmax, then
	// generate them again under the CLIP check with the operator's
	// threshold between the 4th and 5th score: exactly the four images
	// above it must be withheld.
	const batching = "{max_batch_size: 8, max_queue_delay: 1ms}"
	req := Request{Prompt: "a cat", N: 8, Seed: fixedSeed(1), Width: 128, Height: 128}
	reg := loadRegistry(t, synthConfig(false, batching, ""), nil)
	p, err := NewRegistry(reg).Get("sd")
	if err != nil {
		t.Fatal(err)
	}
	all := generate(t, p, req)
	towers, err := clip.Resolve(reg, "clip-vit-b32")
	if err != nil {
		t.Fatal(err)
	}
	concepts := DefaultConcepts()
	labels, _, err := towers.EmbedTexts(context.Background(), append(slices.Clone(concepts.Unsafe), concepts.Safe...))
	if err != nil {
		t.Fatal(err)
	}
	shares := make([]float64, 8)
	for i, o := range all.Images {
		if o.Withheld {
			t.Fatalf("the safety checker withheld %q image %d", req.Prompt, i)
		}
		e, err := towers.EmbedImages(context.Background(), 1, func(int) (*image.NRGBA, error) { return o.Image, nil })
		if err != nil {
			t.Fatal(err)
		}
		var total, bad float64
		for j, l := range labels {
			var dot float64
			for k := range l {
				dot += float64(l[k]) * float64(e[0][k])
			}
			p := math.Exp(concepts.LogitScale * dot)
			total += p
			if j < len(concepts.Unsafe) {
				bad += p
			}
		}
		shares[i] = bad / total
	}
	sorted := slices.Sorted(slices.Values(shares))
	if sorted[3] == sorted[4] {
		t.Fatalf("scores do not separate: %v", shares)
	}
	threshold := (sorted[3] + sorted[4]) / 2
	p2 := pipeline(t, synthConfig(false, batching, fmt.Sprintf(`nsfw_check: clip, nsfw_threshold: "%v"`, threshold)), nil)
	if checker, zeroShot, err := p2.Guard().Which(); err != nil || checker || !zeroShot {
		t.Fatalf("nsfw_check clip: checker %v, zero-shot %v, %v", checker, zeroShot, err)
	}
	res := generate(t, p2, req)
	withheld := 0
	for i, o := range res.Images {
		if want := shares[i] >= threshold; o.Withheld != want {
			t.Errorf("image %d (unsafe share %.4f, threshold %.4f): withheld %v", i, shares[i], threshold, o.Withheld)
		}
		if o.Withheld {
			withheld++
		} else if !slices.Equal(o.Image.Pix, all.Images[i].Image.Pix) {
			t.Errorf("image %d differs between the two checks", i)
		}
	}
	if withheld != 4 {
		t.Errorf("%d withheld, want 4", withheld)
	}
}

func TestGuardFailsClosed(t *testing.T) {
	// No safety checker and no CLIP model: nothing may be generated.
	cfg := `
models:
  - {name: sd, file: sd_unet_synth.onnx, task: diffusion-unet, intra_op_threads: 1, options: {text_encoder: t, vae_decoder: d, nsfw_check: safety_checker, safety_checker: missing}}
  - {name: t, file: sd_text_encoder_synth.onnx, task: diffusion-text-encoder, intra_op_threads: 1}
  - {name: d, file: sd_vae_decoder_synth.onnx, task: diffusion-vae-decoder, intra_op_threads: 1}
  - {name: missing, file: no-such-safety-checker.onnx, task: diffusion-safety-checker}
`
	c, err := models.ParseConfig(strings.NewReader(cfg))
	if err != nil {
		t.Fatal(err)
	}
	reg := models.NewRegistry(c, models.Options{ModelsDir: testmodels.Dir(), Runtime: testRuntime, Logger: slog.New(slog.DiscardHandler)})
	reg.Load()
	t.Cleanup(reg.Close)
	p, err := NewRegistry(reg).Get("sd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Generate(context.Background(), &Request{Prompt: "a cat", Seed: fixedSeed(1)}, noRandom); !errors.Is(err, ErrNoSafetyCheck) {
		t.Errorf("without a safety check: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	p := pipeline(t, synthConfig(false, "{max_batch_size: 8, max_queue_delay: 1ms}", ""), nil)
	g := 3.0
	neg := -1.0
	for _, req := range []Request{
		{Prompt: ""},
		{Prompt: "x", N: 9},
		{Prompt: "x", N: -1},
		{Prompt: "x", Width: 500, Height: 512},
		{Prompt: "x", Width: 512},
		{Prompt: "x", Width: 2048, Height: 512},
		{Prompt: "x", Steps: 21},
		{Prompt: "x", Guidance: &neg},
		{Prompt: "x", NegativePrompt: "y"},
		{Prompt: "x", Strength: 0.5},
		{Prompt: "x", Image: testImage(64, 64), Strength: 0.2, Steps: 4},
		{Prompt: "x", Image: testImage(64, 64), Strength: 1.5},
		{Prompt: "x", Image: testImage(64, 64), Mask: image.NewGray(image.Rect(0, 0, 32, 32))},
		{Prompt: "x", Mask: image.NewGray(image.Rect(0, 0, 32, 32)), Guidance: &g},
	} {
		if _, err := p.Generate(context.Background(), &req, func() uint32 { return 1 }); !errors.Is(err, ErrBadParams) {
			t.Errorf("%+v: %v", req, err)
		}
	}
}

// The embedded configuration's image model parses: its options are known
// and its components are configured with the right tasks.
func TestDefaultConfigPipelineOptions(t *testing.T) {
	cfg, err := models.DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	reg := models.NewRegistry(cfg, models.Options{ModelsDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	names := NewRegistry(reg).Names()
	if !slices.Equal(names, []string{"sd-turbo"}) {
		t.Fatalf("image models %v", names)
	}
	m, _ := reg.Get("sd-turbo")
	set, err := parseSettings(reg, "sd-turbo", m.Config.Options)
	if err != nil {
		t.Fatal(err)
	}
	for opt, task := range map[string]string{set.textEncoder: TaskTextEncoder, set.vaeDecoder: TaskVAEDecoder} {
		if c, ok := reg.Get(opt); !ok || c.Config.Task != task {
			t.Errorf("%s is not a %s model", opt, task)
		}
	}
	if set.sampler != SamplerEuler || set.limits.DefaultSteps != 1 || set.limits.MaxSteps != 4 || set.limits.DefaultGuidance != 0 {
		t.Errorf("sd-turbo defaults: %+v, sampler %s", set.limits, set.sampler)
	}
	// Without weights the pipeline reports what is missing.
	if _, err := NewRegistry(reg).Get("sd-turbo"); !errors.Is(err, models.ErrNotReady) {
		t.Errorf("without weights: %v", err)
	}
}
