package bench

import (
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/internal/testfiles"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/clip"
	"github.com/imgserve/imgserve/preprocess"
)

// CLIP benchmarks: the tokenizer, the embedding pipelines on the synthetic
// towers (which cost far less than ViT-B/32, so these measure imgserve's
// own work: decode, resize, crop, pack, tokenise, schedule, normalise), and
// exact top-k search over 100k and 1M 512-d vectors.
//
//	go test -run '^$' -bench CLIP -benchmem ./bench/
//	INDEX_BENCH_1M=1 go test -run '^$' -bench 'CLIPSearch' -benchtime 20x ./bench/

var clipCaptions = []string{
	"a photo of a cat",
	"A golden retriever puppy playing in the snow.",
	"an aerial photograph of a city at night, with lights reflecting on the river",
	"Two people riding bicycles down a tree-lined street in autumn.",
	"a bowl of ramen with a soft-boiled egg, green onions and chashu pork",
	"A black and white photo of an old lighthouse on a rocky coast during a storm.",
	"a diagram showing the parts of a plant cell",
	"Close-up portrait of a smiling elderly woman wearing a red scarf.",
}

// BenchmarkCLIPTokenize is the embedded tokenizer on prompt-like texts, in
// the steady state (its word cache holds their words), as
// models/tokenizer's BenchmarkCLIPEncode measures it for the shared files.
func BenchmarkCLIPTokenize(b *testing.B) {
	tok := clip.DefaultTokenizer()
	tokens := 0
	for _, s := range clipCaptions {
		tokens += len(tok.Encode(s))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tok.Encode(clipCaptions[i%len(clipCaptions)])
	}
	b.ReportMetric(float64(tokens)/float64(len(clipCaptions))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// clipTowers serves the synthetic towers with batches of up to 32 and no
// queue delay, so each benchmark request runs as one batch at once.
func clipTowers(b *testing.B) *clip.Towers {
	reg := loadRegistry(b, testmodels.Dir(), `
models:
  - name: clip-vit-b32
    file: clip_vision_synth.onnx
    task: clip-vision
    outputs: [image_embeds]
    options: {text_model: clip-vit-b32-text}
    batching: {max_batch_size: 32, max_queue_delay: 0s}
  - name: clip-vit-b32-text
    file: clip_text_synth.onnx
    task: clip-text
    outputs: [text_embeds]
    batching: {max_batch_size: 32, max_queue_delay: 0s}
`, models.Options{})
	tw, err := clip.Resolve(reg, "clip-vit-b32")
	if err != nil {
		b.Fatal(err)
	}
	return tw
}

// BenchmarkCLIPEmbedImages embeds batches of rembg's car-1.jpg (480x360
// JPEG) the way /v1/embeddings does: decode, resize to 224 on the short
// side, centre crop, normalise and pack, one scheduler batch, normalise the
// output. ns/op is per batch; images/s is the throughput.
func BenchmarkCLIPEmbedImages(b *testing.B) {
	jpg := testfiles.Rembg(b, "car-1.jpg")
	tw := clipTowers(b)
	src := func(int) (*image.NRGBA, error) {
		img, _, err := preprocess.Decode(jpg, preprocess.Limits{})
		return img, err
	}
	for _, n := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tw.EmbedImages(context.Background(), n, src); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}

// BenchmarkCLIPEmbedTexts: tokenise, pad to 77, one batch, normalise.
func BenchmarkCLIPEmbedTexts(b *testing.B) {
	tw := clipTowers(b)
	for _, n := range []int{1, 8, 32} {
		texts := make([]string, n)
		for i := range texts {
			texts[i] = clipCaptions[i%len(clipCaptions)]
		}
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := tw.EmbedTexts(context.Background(), texts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "texts/s")
		})
	}
}

// clipSearchCols caches built collections across the calls the testing
// package makes to one benchmark; 1M rows take seconds and 2 GB to build.
var (
	clipSearchMu   sync.Mutex
	clipSearchCols = map[int]*index.Collection{}
)

func clipSearchCollection(b *testing.B, n int) *index.Collection {
	clipSearchMu.Lock()
	defer clipSearchMu.Unlock()
	if c := clipSearchCols[n]; c != nil {
		return c
	}
	c, err := index.NewCollectionParams(clip.Dim, index.Params{Index: index.IndexFlat}) // the exact scan; bench/ann measures the graph
	if err != nil {
		b.Fatal(err)
	}
	c.Grow(n)
	rng := rand.New(rand.NewPCG(1, 2))
	const chunk = 4096
	items := make([]index.Item, 0, chunk)
	vecs := make([]float32, chunk*clip.Dim)
	for i := 0; i < n; i += chunk {
		items = items[:0]
		for j := range min(chunk, n-i) {
			v := clipGaussian(rng, vecs[j*clip.Dim:(j+1)*clip.Dim])
			items = append(items, index.Item{ID: fmt.Sprintf("img-%012d", i+j), Vector: v})
		}
		if err := c.UpsertBatch(items); err != nil {
			b.Fatal(err)
		}
	}
	clipSearchCols[n] = c
	return c
}

func clipGaussian(rng *rand.Rand, v []float32) []float32 {
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// BenchmarkCLIPSearch is the latency of one exact k=10 search, what
// POST /v1/collections/{c}/search costs beyond the embedding. 1M needs
// INDEX_BENCH_1M=1 (as index's own benchmark).
func BenchmarkCLIPSearch(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d/k=10", n), func(b *testing.B) {
			if n > 100_000 && os.Getenv("INDEX_BENCH_1M") == "" {
				b.Skip("set INDEX_BENCH_1M=1 to run (builds 1M x 512 vectors, ~2.2 GB)")
			}
			c := clipSearchCollection(b, n)
			rng := rand.New(rand.NewPCG(3, 4))
			queries := make([][]float32, 16)
			for i := range queries {
				queries[i] = clipGaussian(rng, make([]float32, clip.Dim))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := c.Search(queries[i%len(queries)], 10); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
		})
	}
}
