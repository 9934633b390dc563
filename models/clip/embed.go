package clip

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/models"
)

// ErrBadEmbedding: the model returned something that is not a usable
// embedding (wrong shape, zero, NaN). It means a broken model, not bad input.
var ErrBadEmbedding = errors.New("clip: bad embedding from model")

// ImageSource returns image i of a request. EmbedImages calls it once per
// image from a few worker goroutines, so decoding runs in parallel while
// only a few full-size images are alive at once.
type ImageSource func(i int) (*image.NRGBA, error)

// EmbedImages returns the unit-length embeddings of n images. They go to the
// vision model's scheduler in chunks of up to its max_batch_size, each chunk
// as soon as its images are preprocessed; the scheduler may batch them with
// other requests' images.
func (t *Towers) EmbedImages(ctx context.Context, n int, src ImageSource) ([][]float32, error) {
	if t.Vision == nil {
		return nil, fmt.Errorf("%w: %s has no vision tower", ErrNoTower, t.Name)
	}
	st, err := ready(t.Vision)
	if err != nil {
		return nil, err
	}
	outAt, err := outputIndex(st, OutputImageEmbeds)
	if err != nil {
		return nil, err
	}
	img := DefaultImageConfig
	size, per := st.Batching.MaxBatchSize, img.Values()
	bufs := make([]*[]float32, chunks(n, size))
	for c := range bufs {
		bufs[c] = getFloats(per * (min(n, (c+1)*size) - c*size))
	}
	out := make([][]float32, n)
	prepare := func(i int) error {
		decoded, err := src(i)
		if err != nil {
			return err
		}
		row := i % size
		return img.PixelValues((*bufs[i/size])[row*per:(row+1)*per], decoded)
	}
	submit := func(ctx context.Context, lo, hi int) error {
		s := int64(img.Size)
		in := inference.NewTensor([]int64{int64(hi - lo), 3, s, s}, *bufs[lo/size])
		res, err := t.Vision.Infer(ctx, []inference.Tensor{in})
		if err != nil {
			return err
		}
		return unitRows(out[lo:hi], res[outAt])
	}
	err = batches(ctx, n, size, prepare, submit)
	// Every Submit has returned, after an error too, so no batch reads the
	// buffers any more.
	for _, b := range bufs {
		floatPool.Put(b)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EmbedTexts returns the unit-length embeddings of texts and the number of
// tokens the model read (framing included, padding not). Every text is
// padded to ContextLength with attention mask 0, so texts of any length
// share a batch.
func (t *Towers) EmbedTexts(ctx context.Context, texts []string) ([][]float32, int, error) {
	if t.Text == nil {
		return nil, 0, fmt.Errorf("%w: %s has no text tower (configure %s)", ErrNoTower, t.Name, OptionTextModel)
	}
	tok, err := t.Tokenizer()
	if err != nil {
		return nil, 0, err
	}
	st, err := ready(t.Text)
	if err != nil {
		return nil, 0, err
	}
	outAt, err := outputIndex(st, OutputTextEmbeds)
	if err != nil {
		return nil, 0, err
	}
	width := t.ContextLength()
	ids, mask, _ := tok.EncodeBatchFlat(texts, width)
	tokens := 0
	for _, m := range mask {
		tokens += int(m)
	}
	out := make([][]float32, len(texts))
	submit := func(ctx context.Context, lo, hi int) error {
		shape := []int64{int64(hi - lo), int64(width)}
		in := make([]inference.Tensor, len(st.Inputs))
		for k, info := range st.Inputs {
			src := ids
			if info.Name == InputAttentionMask {
				src = mask
			}
			in[k] = inference.NewTensor(shape, src[lo*width:hi*width])
		}
		res, err := t.Text.Infer(ctx, in)
		if err != nil {
			return err
		}
		return unitRows(out[lo:hi], res[outAt])
	}
	if err := batches(ctx, len(texts), st.Batching.MaxBatchSize, nil, submit); err != nil {
		return nil, 0, err
	}
	return out, tokens, nil
}

func ready(m *models.Model) (*models.State, error) {
	st := m.State()
	if st.Status != models.StatusReady {
		return nil, fmt.Errorf("%w: %s is %s: %s", models.ErrNotReady, m.Config.Name, st.Status, st.Reason)
	}
	return st, nil
}

func outputIndex(st *models.State, name string) (int, error) {
	if _, i := find(st.Outputs, name); i >= 0 {
		return i, nil
	}
	// The task's signature check makes this unreachable for a loaded model.
	return 0, fmt.Errorf("%w: no output %s", ErrBadEmbedding, name)
}

// unitRows copies the rows of an FP32 [len(dst), Dim] tensor into dst,
// each scaled to unit length. The norm is summed in float64 so that the
// result is unit length to float32 precision. A row of zeros has no
// direction: it stays the zero vector, which the caller gets as it is (an
// index refuses to store or search it); NaN or infinity means a broken
// model.
func unitRows(dst [][]float32, t inference.Tensor) error {
	if t.DType != inference.FP32 || len(t.Shape) != 2 || t.Shape[0] != int64(len(dst)) || t.Shape[1] != Dim {
		return fmt.Errorf("%w: got %v %v, want FP32 [%d %d]", ErrBadEmbedding, t.DType, t.Shape, len(dst), Dim)
	}
	v := inference.Values[float32](t)
	for r := range dst {
		row := v[r*Dim : (r+1)*Dim]
		var ss float64
		for _, x := range row {
			ss += float64(x) * float64(x)
		}
		if math.IsNaN(ss) || math.IsInf(ss, 0) {
			return fmt.Errorf("%w: row %d has norm %v", ErrBadEmbedding, r, math.Sqrt(ss))
		}
		if ss == 0 {
			dst[r] = make([]float32, Dim)
			continue
		}
		inv := 1 / math.Sqrt(ss)
		u := make([]float32, Dim)
		for i, x := range row {
			u[i] = float32(float64(x) * inv)
		}
		dst[r] = u
	}
	return nil
}

func chunks(n, size int) int { return (n + size - 1) / size }

// batches runs a request of n items as chunks of up to size consecutive
// items. prepare (may be nil) readies item i, on up to GOMAXPROCS workers
// taking items in order; submit runs chunk [lo, hi) once all its items are
// ready, concurrently with later chunks. The first error cancels the rest and
// is returned.
func batches(ctx context.Context, n, size int, prepare func(i int) error, submit func(ctx context.Context, lo, hi int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    recovered.Group
		once  sync.Once
		first error
	)
	fail := func(err error) {
		once.Do(func() { first = err })
		cancel()
	}
	run := func(c int) {
		wg.Go(func() {
			if err := submit(ctx, c*size, min(n, (c+1)*size)); err != nil {
				fail(err)
			}
		})
	}
	if prepare == nil {
		for c := range chunks(n, size) {
			run(c)
		}
	} else {
		left := make([]atomic.Int32, chunks(n, size))
		for c := range left {
			left[c].Store(int32(min(n, (c+1)*size) - c*size))
		}
		var next atomic.Int64
		for range min(n, runtime.GOMAXPROCS(0)) {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					// A request whose deadline passed stops preparing: its
					// remaining chunks would never be submitted.
					if err := ctx.Err(); err != nil {
						fail(err)
						return
					}
					if err := prepare(i); err != nil {
						fail(err)
						return
					}
					if left[i/size].Add(-1) == 0 {
						run(i / size)
					}
				}
			})
		}
	}
	wg.Wait()
	return first
}

var floatPool sync.Pool // *[]float32, pixel_values chunks

func getFloats(n int) *[]float32 {
	p, _ := floatPool.Get().(*[]float32)
	if p == nil || cap(*p) < n {
		s := make([]float32, n)
		return &s
	}
	*p = (*p)[:n]
	return p
}
