package diffusion

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"sync"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/clip"
)

// Guard decides which images may leave the server. Every image a pipeline
// returns, and every image uploaded for editing, passes Check first; a
// prompt passes CheckPrompt. It fails closed: when no check can run, no
// image is returned.
type Guard struct {
	mode     string
	checker  *models.Model // nil when not configured
	clip     *clip.Towers  // nil when the CLIP model is not configured
	clipErr  error         // why not
	concepts Concepts
	block    *Blocklist

	mu     sync.Mutex
	labels [][]float32 // unit text embeddings of unsafe then safe labels, once computed
}

// CheckPrompt refuses a prompt the blocklist matches.
func (g *Guard) CheckPrompt(prompt string) error {
	if g.block.Blocks(prompt) {
		return fmt.Errorf("%w: it contains a term on the server's blocklist", ErrPromptBlocked)
	}
	return nil
}

// Which names the checks that would run now.
func (g *Guard) Which() (checker, zeroShot bool, err error) {
	checkerReady := g.checker != nil && g.checker.State().Status == models.StatusReady
	clipReady := g.clip != nil && g.clip.Vision != nil && g.clip.Text != nil &&
		g.clip.Vision.State().Status == models.StatusReady && g.clip.Text.State().Status == models.StatusReady
	why := func(what string) error {
		return fmt.Errorf("%w: %s", ErrNoSafetyCheck, what)
	}
	clipWhy := func() string {
		if g.clip == nil {
			return fmt.Sprintf("the CLIP model is not configured (%v)", g.clipErr)
		}
		return fmt.Sprintf("the CLIP model %s is not ready (vision and text models must both be loaded)", g.clip.Name)
	}
	switch g.mode {
	case CheckSafetyChecker:
		if !checkerReady {
			return false, false, why("the safety checker model is not ready")
		}
		return true, false, nil
	case CheckCLIP:
		if !clipReady {
			return false, false, why(clipWhy())
		}
		return false, true, nil
	case CheckBoth:
		if !checkerReady || !clipReady {
			return false, false, why("nsfw_check both needs the safety checker and the CLIP model ready")
		}
		return true, true, nil
	}
	if checkerReady {
		return true, false, nil
	}
	if clipReady {
		return false, true, nil
	}
	return false, false, why("neither a safety checker nor " + clipWhy())
}

// Check returns, for each image, whether it must be withheld.
func (g *Guard) Check(ctx context.Context, imgs []*image.NRGBA) ([]bool, error) {
	useChecker, useCLIP, err := g.Which()
	if err != nil {
		return nil, err
	}
	flags := make([]bool, len(imgs))
	if useChecker {
		if err := g.runChecker(ctx, imgs, flags); err != nil {
			return nil, err
		}
	}
	if useCLIP {
		if err := g.runCLIP(ctx, imgs, flags); err != nil {
			return nil, err
		}
	}
	return flags, nil
}

// runChecker runs the SD safety checker export, one image per request as
// diffusers' ONNX pipeline does (its exports misbehave above batch 1; the
// registry's scheduler still batches them when the model's batching
// settings allow it). The checker's own thresholds live in its weights.
func (g *Guard) runChecker(ctx context.Context, imgs []*image.NRGBA, flags []bool) error {
	st := g.checker.State()
	sig, err := parseSafetyChecker(st.Inputs, st.Outputs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(imgs))
	var wg sync.WaitGroup
	for i, img := range imgs {
		wg.Go(func() {
			flagged, err := g.checkOne(ctx, sig, img)
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			flags[i] = flags[i] || flagged
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (g *Guard) checkOne(ctx context.Context, sig safetySig, img *image.NRGBA) (bool, error) {
	px := make([]float32, clip.DefaultImageConfig.Values())
	if err := clip.DefaultImageConfig.PixelValues(px, img); err != nil {
		return false, err
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	// images: the picture as diffusers hands it to the checker, NHWC in
	// [0, 1]; here the very 8-bit pixels that would be returned.
	rgb := make([]float32, 3*w*h)
	for y := range h {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := range w {
			for c := range 3 {
				rgb[(y*w+x)*3+c] = float32(row[4*x+c]) / 255
			}
		}
	}
	in := make([]inference.Tensor, 2)
	s := int64(clip.DefaultImageConfig.Size)
	in[sig.clip] = floatTensor(sig.clipType, []int64{1, 3, s, s}, px)
	in[sig.images] = floatTensor(sig.imagesType, []int64{1, int64(h), int64(w), 3}, rgb)
	out, err := g.checker.Infer(ctx, in)
	if err != nil {
		return false, err
	}
	f := out[sig.flags]
	if f.DType != inference.BOOL || len(f.Data) != 1 {
		return false, fmt.Errorf("safety checker returned %s of %v %v, want BOOL [1]", outputHasNSFW, f.DType, f.Shape)
	}
	return f.Data[0] != 0, nil
}

// runCLIP is the zero-shot check: each image against every label,
// softmax(logit_scale * cosine); flagged when the unsafe labels' share
// reaches the threshold.
func (g *Guard) runCLIP(ctx context.Context, imgs []*image.NRGBA, flags []bool) error {
	labels, err := g.labelEmbeddings(ctx)
	if err != nil {
		return err
	}
	embs, err := g.clip.EmbedImages(ctx, len(imgs), func(i int) (*image.NRGBA, error) { return imgs[i], nil })
	if err != nil {
		return err
	}
	for i, e := range embs {
		if UnsafeShare(e, labels, len(g.concepts.Unsafe), g.concepts.LogitScale) >= g.concepts.Threshold {
			flags[i] = true
		}
	}
	return nil
}

// UnsafeShare is the zero-shot probability that a unit image embedding
// shows one of the first `unsafe` labels: softmax over scale * cosine with
// every label (unit text embeddings).
func UnsafeShare(img []float32, labels [][]float32, unsafe int, scale float64) float64 {
	logits := make([]float64, len(labels))
	top := math.Inf(-1)
	for j, l := range labels {
		var dot float64
		for k := range img {
			dot += float64(img[k]) * float64(l[k])
		}
		logits[j] = scale * dot
		top = max(top, logits[j])
	}
	var total, bad float64
	for j, z := range logits {
		p := math.Exp(z - top)
		total += p
		if j < unsafe {
			bad += p
		}
	}
	return bad / total
}

// labelEmbeddings embeds the labels once; a failure is retried on the next
// request.
func (g *Guard) labelEmbeddings(ctx context.Context) ([][]float32, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.labels != nil {
		return g.labels, nil
	}
	texts := append(append([]string(nil), g.concepts.Unsafe...), g.concepts.Safe...)
	embs, _, err := g.clip.EmbedTexts(ctx, texts)
	if err != nil {
		return nil, fmt.Errorf("embedding the NSFW labels: %w", err)
	}
	g.labels = embs
	return embs, nil
}
