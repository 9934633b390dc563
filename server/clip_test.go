package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"maps"
	"math"
	"math/rand/v2"
	"mime/multipart"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/preprocess"
)

// clipConfig serves the synthetic towers (the export's exact signatures)
// as defaults.yaml serves the real ones, plus a pair whose files are missing.
const clipConfig = `
models:
  - name: clip-vit-b32
    file: clip_vision_synth.onnx
    task: clip-vision
    outputs: [image_embeds]
    options: {text_model: clip-vit-b32-text}
    batching: {max_batch_size: 8, max_queue_delay: 2ms}
  - name: clip-vit-b32-text
    file: clip_text_synth.onnx
    task: clip-text
    batching: {max_batch_size: 8, max_queue_delay: 2ms}
  - name: clip-missing
    file: missing-clip-vision.onnx
    fetch: clip-vision
    task: clip-vision
    options: {text_model: clip-missing-text}
  - name: clip-missing-text
    file: missing-clip-text.onnx
    task: clip-text
  - name: affine
    file: affine_f32.onnx
`

type searchHit struct {
	ID       string          `json:"id"`
	Score    float64         `json:"score"`
	Metadata json.RawMessage `json:"metadata"`
}

var jsonHeader = map[string]string{"Content-Type": "application/json"}

// call sends a JSON body and decodes a JSON answer into out (when not nil),
// failing unless the status is want.
func call(t *testing.T, method, url string, body any, want int, out any) []byte {
	t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	code, _, resp := do(t, method, url, jsonHeader, data)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, code, resp, want)
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, resp)
		}
	}
	return resp
}

func search(t *testing.T, url string, body any) []searchHit {
	t.Helper()
	var r struct {
		Results []searchHit `json:"results"`
	}
	call(t, "POST", url, body, 200, &r)
	return r.Results
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := preprocess.EncodeJPEG(&b, img, 90); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := preprocess.EncodePNG(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// generatedImages are distinct synthetic pictures: gradients, shapes and
// smooth noise patterns.
func generatedImages() map[string]*image.NRGBA {
	const w, h = 320, 240
	draw := func(f func(fx, fy float64, x, y int) color.NRGBA) *image.NRGBA {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				img.SetNRGBA(x, y, f(float64(x)/w, float64(y)/h, x, y))
			}
		}
		return img
	}
	c8 := func(v float64) uint8 { return uint8(max(0, min(255, v))) }
	// valueNoise is a random grid of colours, bilinearly interpolated, plus
	// per-pixel grain: a different low-frequency pattern for every seed.
	valueNoise := func(seed uint64) *image.NRGBA {
		rng := rand.New(rand.NewPCG(seed, seed*7+1))
		const g = 5
		var grid [g + 1][g + 1][3]float64
		for i := range grid {
			for j := range grid[i] {
				for c := range 3 {
					grid[i][j][c] = rng.Float64() * 255
				}
			}
		}
		return draw(func(fx, fy float64, _, _ int) color.NRGBA {
			gx, gy := fx*g, fy*g
			i, j := int(gy), int(gx)
			ty, tx := gy-float64(i), gx-float64(j)
			var v [3]float64
			for c := range 3 {
				top := grid[i][j][c]*(1-tx) + grid[i][j+1][c]*tx
				bot := grid[i+1][j][c]*(1-tx) + grid[i+1][j+1][c]*tx
				v[c] = top*(1-ty) + bot*ty + rng.NormFloat64()*12
			}
			return color.NRGBA{c8(v[0]), c8(v[1]), c8(v[2]), 255}
		})
	}
	return map[string]*image.NRGBA{
		"gradient-h": draw(func(fx, _ float64, _, _ int) color.NRGBA {
			return color.NRGBA{c8(255 * fx), 40, c8(255 * (1 - fx)), 255}
		}),
		"gradient-v": draw(func(_, fy float64, _, _ int) color.NRGBA { return color.NRGBA{30, c8(255 * fy), 180, 255} }),
		"gradient-radial": draw(func(fx, fy float64, _, _ int) color.NRGBA {
			d := math.Hypot(fx-0.5, fy-0.5)
			return color.NRGBA{c8(255 - 400*d), c8(120 + 200*d), 60, 255}
		}),
		"disc": draw(func(fx, fy float64, _, _ int) color.NRGBA {
			if math.Hypot(fx-0.4, fy-0.55) < 0.25 {
				return color.NRGBA{250, 210, 20, 255}
			}
			return color.NRGBA{20, 30, 70, 255}
		}),
		"squares": draw(func(_, _ float64, x, y int) color.NRGBA {
			if (x/40+y/40)%2 == 0 {
				return color.NRGBA{230, 230, 230, 255}
			}
			return color.NRGBA{150, 20, 40, 255}
		}),
		"stripes": draw(func(fx, _ float64, _, _ int) color.NRGBA {
			if int(fx*6)%2 == 0 {
				return color.NRGBA{10, 120, 10, 255}
			}
			return color.NRGBA{240, 200, 180, 255}
		}),
		"noise-1": valueNoise(1),
		"noise-2": valueNoise(2),
		"noise-3": valueNoise(3),
	}
}

// nearCopy is the kind of copy a user searches with: slightly cropped
// (a few percent off each side, unevenly), scaled to 70% and re-encoded as
// JPEG.
func nearCopy(t *testing.T, img *image.NRGBA) []byte {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	crop := img.SubImage(image.Rect(b.Min.X+w*5/100, b.Min.Y+h*3/100, b.Max.X-w*2/100, b.Max.Y-h*4/100)).(*image.NRGBA)
	small := preprocess.ResizeRGB(crop, crop.Bounds().Dx()*7/10, crop.Bounds().Dy()*7/10, preprocess.Bicubic)
	return encodeJPEG(t, small)
}

// Acceptance: real photos and generated images are indexed through the
// three upload forms; a resized, slightly cropped JPEG copy of each finds
// its original first, through the raw-body, multipart and JSON searches.
func TestCLIPSearchFindsOriginalFromNearCopy(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) { testSearchFindsOriginal(t, be.open(t)) })
	}
}

func testSearchFindsOriginal(t *testing.T, b index.Backend) {
	srv := startServer(t, clipConfig, testmodels.Dir(), withIndex(b))
	originals := map[string]*image.NRGBA{}
	for _, name := range []string{"car-1.jpg", "cloth-1.jpg"} {
		data := rembgTestdata(t, name)
		img, _, err := preprocess.Decode(data, preprocess.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSuffix(name, ".jpg")
		originals[id] = img
		// Real photos go in as the raw JPEG body, with metadata in the query.
		code, _, resp := do(t, "PUT", srv.URL+"/v1/collections/photos/items/"+id+`?metadata={"file":"`+name+`"}`,
			map[string]string{"Content-Type": "image/jpeg"}, data)
		if code != 200 {
			t.Fatalf("PUT %s: %d %s", id, code, resp)
		}
	}
	generated := generatedImages()
	for i, id := range slices.Sorted(maps.Keys(generated)) {
		img := generated[id]
		originals[id] = img
		png := encodePNG(t, img)
		url := srv.URL + "/v1/collections/photos/items/" + id
		switch i % 2 {
		case 0:
			body, ct := multipartBody(t, "image", png, map[string]string{"metadata": `{"kind":"generated"}`})
			if code, _, resp := do(t, "PUT", url, map[string]string{"Content-Type": ct}, body); code != 200 {
				t.Fatalf("PUT %s (multipart): %d %s", id, code, resp)
			}
		case 1:
			call(t, "PUT", url, map[string]any{"image": base64.StdEncoding.EncodeToString(png), "metadata": map[string]string{"kind": "generated"}}, 200, nil)
		}
	}
	var info struct {
		Name      string `json:"name"`
		Count     int    `json:"count"`
		Dimension int    `json:"dimension"`
	}
	call(t, "GET", srv.URL+"/v1/collections/photos", nil, 200, &info)
	if info.Count != len(originals) || info.Dimension != 512 || info.Name != "photos" {
		t.Fatalf("collection: %+v, want %d items of dimension 512", info, len(originals))
	}

	for i, id := range slices.Sorted(maps.Keys(originals)) {
		q := nearCopy(t, originals[id])
		var hits []searchHit
		switch i % 3 {
		case 0:
			code, _, resp := do(t, "POST", srv.URL+"/v1/collections/photos/search?k=3", map[string]string{"Content-Type": "image/jpeg"}, q)
			if code != 200 {
				t.Fatalf("search %s: %d %s", id, code, resp)
			}
			var r struct{ Results []searchHit }
			if err := json.Unmarshal(resp, &r); err != nil {
				t.Fatal(err)
			}
			hits = r.Results
		case 1:
			body, ct := multipartBody(t, "image", q, map[string]string{"k": "3"})
			code, _, resp := do(t, "POST", srv.URL+"/v1/collections/photos/search", map[string]string{"Content-Type": ct}, body)
			if code != 200 {
				t.Fatalf("search %s: %d %s", id, code, resp)
			}
			var r struct{ Results []searchHit }
			if err := json.Unmarshal(resp, &r); err != nil {
				t.Fatal(err)
			}
			hits = r.Results
		case 2:
			hits = search(t, srv.URL+"/v1/collections/photos/search", map[string]any{"image": base64.StdEncoding.EncodeToString(q), "k": 3})
		}
		if len(hits) != 3 || hits[0].ID != id {
			t.Errorf("near copy of %s: got %+v, want %s first", id, hits, id)
			continue
		}
		if hits[0].Score < 0.95 || hits[0].Score <= hits[1].Score || hits[1].Score < hits[2].Score {
			t.Errorf("near copy of %s: scores %v, %v, %v not best first with the original near 1", id, hits[0].Score, hits[1].Score, hits[2].Score)
		}
		if len(hits[0].Metadata) == 0 {
			t.Errorf("%s: metadata missing from the hit", id)
		}
		t.Logf("%-16s first %.4f, runner-up %s %.4f", id, hits[0].Score, hits[1].ID, hits[1].Score)
	}
}

// Acceptance: text-to-image search through the same endpoints, over the
// text tower. The synthetic text tower sums one vector per token (order
// does not matter), so a permuted caption finds its item with score 1 and an
// overlapping query finds the item sharing the most words.
func TestCLIPTextSearch(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) { testTextSearch(t, be.open(t)) })
	}
}

func testTextSearch(t *testing.T, b index.Backend) {
	srv := startServer(t, clipConfig, testmodels.Dir(), withIndex(b))
	captions := map[string]string{
		"car":        "a red sports car parked on a city street",
		"dog":        "a golden retriever puppy playing in the snow",
		"ramen":      "a bowl of ramen with a soft boiled egg",
		"lighthouse": "an old lighthouse on a rocky coast during a storm",
		"market":     "people shopping for fruit at a busy market",
	}
	for id, text := range captions {
		call(t, "PUT", srv.URL+"/v1/collections/mixed/items/"+id, map[string]any{"text": text, "metadata": map[string]string{"source": "text"}}, 200, nil)
	}
	// Images in the same collection: a text query must still rank texts
	// by their words, whatever the image vectors are.
	code, _, resp := do(t, "PUT", srv.URL+"/v1/collections/mixed/items/car-photo", map[string]string{"Content-Type": "image/jpeg"}, rembgTestdata(t, "car-1.jpg"))
	if code != 200 {
		t.Fatalf("PUT car photo: %d %s", code, resp)
	}
	call(t, "PUT", srv.URL+"/v1/collections/mixed/items/disc", map[string]any{"image": base64.StdEncoding.EncodeToString(encodePNG(t, generatedImages()["disc"]))}, 200, nil)

	url := srv.URL + "/v1/collections/mixed/search"
	for _, c := range []struct{ query, want string }{
		{"snow the in playing puppy retriever golden a", "dog"},
		{"a storm on a rocky coast", "lighthouse"},
		{"ramen bowl with egg", "ramen"},
		{"a red car on the street", "car"},
		{"busy fruit market", "market"},
	} {
		hits := search(t, url, map[string]any{"text": c.query, "k": 7})
		if len(hits) != 7 || hits[0].ID != c.want {
			t.Errorf("query %q: got %+v, want %s first", c.query, hits, c.want)
			continue
		}
		t.Logf("%-12s %.4f, runner-up %s %.4f", c.want, hits[0].Score, hits[1].ID, hits[1].Score)
	}
	if hits := search(t, url, map[string]any{"text": "snow the in playing puppy retriever golden a", "k": 1}); math.Abs(hits[0].Score-1) > 1e-5 {
		t.Errorf("permuted caption scores %v, want 1", hits[0].Score)
	}
	// A text query as a form field works too.
	body, ct := multipartFields(t, map[string]string{"text": "a storm on a rocky coast", "k": "1"})
	code, _, resp = do(t, "POST", url, map[string]string{"Content-Type": ct}, body)
	if code != 200 || !bytes.Contains(resp, []byte(`"id":"lighthouse"`)) {
		t.Errorf("multipart text search: %d %s", code, resp)
	}
}

func multipartFields(t *testing.T, fields map[string]string) ([]byte, string) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}

type embeddingsReply struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func (r embeddingsReply) vector(t *testing.T, i int) []float32 {
	t.Helper()
	var v []float32
	if err := json.Unmarshal(r.Data[i].Embedding, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func unitLength(v []float32) bool {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return len(v) == 512 && math.Abs(math.Sqrt(s)-1) < 1e-5
}

func TestCLIPEmbeddingsAPI(t *testing.T) {
	srv := startServer(t, clipConfig, testmodels.Dir())
	url := srv.URL + "/v1/embeddings"
	car := rembgTestdata(t, "car-1.jpg")
	disc := encodePNG(t, generatedImages()["disc"])
	b64 := base64.StdEncoding.EncodeToString

	var mixed embeddingsReply
	call(t, "POST", url, map[string]any{"model": "clip-vit-b32", "input": []any{
		"a photo of a cat",
		map[string]string{"image": b64(car)},
		map[string]string{"text": "a dog"},
		map[string]string{"image": "data:image/png;base64," + strings.TrimRight(b64(disc), "=")},
	}}, 200, &mixed)
	if mixed.Object != "list" || mixed.Model != "clip-vit-b32" || len(mixed.Data) != 4 {
		t.Fatalf("reply %+v", mixed)
	}
	// "a photo of a cat" and "a dog" are 7 and 4 ids with the framing.
	if mixed.Usage.PromptTokens != 11 || mixed.Usage.TotalTokens != 11 {
		t.Errorf("usage %+v, want 11 tokens", mixed.Usage)
	}
	for i, d := range mixed.Data {
		if d.Object != "embedding" || d.Index != i || !unitLength(mixed.vector(t, i)) {
			t.Errorf("item %d: %s index %d, not a unit 512-vector", i, d.Object, d.Index)
		}
	}

	// The same inputs alone, in the other forms, give the same vectors.
	var one embeddingsReply
	call(t, "POST", url, map[string]any{"input": "a photo of a cat"}, 200, &one)
	same(t, "text alone, default model", one.vector(t, 0), mixed.vector(t, 0))
	code, _, resp := do(t, "POST", url+"?encoding_format=float", map[string]string{"Content-Type": "image/jpeg"}, car)
	if code != 200 {
		t.Fatalf("raw image body: %d %s", code, resp)
	}
	json.Unmarshal(resp, &one)
	same(t, "raw image body", one.vector(t, 0), mixed.vector(t, 1))
	body, ct := multipartBody(t, "image", disc, map[string]string{"model": "clip-vit-b32"})
	code, _, resp = do(t, "POST", url, map[string]string{"Content-Type": ct}, body)
	if code != 200 {
		t.Fatalf("multipart image: %d %s", code, resp)
	}
	json.Unmarshal(resp, &one)
	same(t, "multipart image", one.vector(t, 0), mixed.vector(t, 3))

	// encoding_format=base64 is little-endian float32, as OpenAI's clients
	// decode it.
	var packed embeddingsReply
	call(t, "POST", url, map[string]any{"input": []string{"a dog"}, "encoding_format": "base64"}, 200, &packed)
	var s string
	if err := json.Unmarshal(packed.Data[0].Embedding, &s); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 4*512 {
		t.Fatalf("base64 embedding: %d bytes, %v", len(raw), err)
	}
	got := make([]float32, 512)
	for i := range got {
		got[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	same(t, "base64", got, mixed.vector(t, 2))
}

func same(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// Eight texts of different token lengths in one request run as one batch
// of eight on the text tower: padding to 77 with the mask makes them one
// shape.
func TestCLIPTextsShareABatch(t *testing.T) {
	srv := startServer(t, clipConfig, testmodels.Dir())
	texts := []string{"a", "a cat", "a photo of a cat", "two dogs running on a beach at sunset",
		"x y z", "the quick brown fox jumps over the lazy dog near the river bank", "ok", "a b c d e f g h i j"}
	var r embeddingsReply
	call(t, "POST", srv.URL+"/v1/embeddings", map[string]any{"input": texts}, 200, &r)
	if len(r.Data) != len(texts) {
		t.Fatalf("%d embeddings", len(r.Data))
	}
	_, _, metrics := do(t, "GET", srv.URL+"/metrics", nil, nil)
	// The warm-up run (1 row) and the request (8 rows, one batch).
	count := metricValue(t, metrics, `imgserve_inference_batch_size_count{model="clip-vit-b32-text"}`)
	sum := metricValue(t, metrics, `imgserve_inference_batch_size_sum{model="clip-vit-b32-text"}`)
	if count != 2 || sum != 9 {
		t.Errorf("text tower ran %v rows in %v batches, want 9 in 2", sum, count)
	}
}

func TestCLIPTokenize(t *testing.T) {
	srv := startServer(t, clipConfig, testmodels.Dir())
	url := srv.URL + "/v1/tokenize"
	type reply struct {
		Model string `json:"model"`
		Data  []struct {
			Index     int   `json:"index"`
			IDs       []int `json:"ids"`
			Truncated bool  `json:"truncated"`
		} `json:"data"`
	}
	var r reply
	call(t, "POST", url, map[string]any{"model": "clip-vit-b32", "input": "a photo of a cat"}, 200, &r)
	if want := []int{49406, 320, 1125, 539, 320, 2368, 49407}; len(r.Data) != 1 || !slices.Equal(r.Data[0].IDs, want) || r.Data[0].Truncated {
		t.Errorf("got %+v, want ids %v", r, want)
	}
	long := strings.Repeat("cat ", 100)
	// Tokenizing needs no weights: clip-missing's files are absent.
	call(t, "POST", url, map[string]any{"model": "clip-missing", "input": []string{"A Photo of a CAT", long, ""}}, 200, &r)
	if len(r.Data) != 3 || !slices.Equal(r.Data[0].IDs, []int{49406, 320, 1125, 539, 320, 2368, 49407}) || r.Data[2].Index != 2 {
		t.Fatalf("batch: %+v", r)
	}
	if d := r.Data[1]; len(d.IDs) != 77 || d.IDs[76] != 49407 || !d.Truncated {
		t.Errorf("long text: %d ids ending %d, truncated %v; want 77 ending 49407", len(d.IDs), d.IDs[len(d.IDs)-1], d.Truncated)
	}
	if !slices.Equal(r.Data[2].IDs, []int{49406, 49407}) {
		t.Errorf("empty text: %v", r.Data[2].IDs)
	}
	// The text model's own name works too.
	call(t, "POST", url, map[string]any{"model": "clip-vit-b32-text", "input": "a"}, 200, &r)

	for _, c := range []struct {
		body any
		code int
	}{
		{map[string]any{"input": "a"}, 400},
		{map[string]any{"model": "nope", "input": "a"}, 404},
		{map[string]any{"model": "affine", "input": "a"}, 400},
		{map[string]any{"model": "clip-vit-b32"}, 400},
		{map[string]any{"model": "clip-vit-b32", "input": []string{}}, 400},
		{map[string]any{"model": "clip-vit-b32", "input": []int{1, 2}}, 400},
		{map[string]any{"model": "clip-vit-b32", "input": make([]string, 257)}, 400},
		{map[string]any{"model": "clip-vit-b32", "input": "a", "ids": []int{1}}, 400},
	} {
		call(t, "POST", url, c.body, c.code, nil)
	}
	if code, _, _ := do(t, "POST", url, jsonHeader, []byte("{not json")); code != 400 {
		t.Errorf("malformed JSON: %d", code)
	}
}

// Another family's tokenizer plugs into /v1/tokenize by name without
// touching the handler.
func TestTokenizeDispatchByName(t *testing.T) {
	srv := startServer(t, clipConfig, testmodels.Dir())
	registerTokenizer("count-bytes-test", func(_ *Server, model string, body []byte) (any, error) {
		return map[string]any{"model": model, "bytes": len(body)}, nil
	})
	t.Cleanup(func() { delete(tokenizers, "count-bytes-test") })
	body := `{"model":"count-bytes-test","ids":[1,2,3]}`
	var r struct {
		Model string `json:"model"`
		Bytes int    `json:"bytes"`
	}
	call(t, "POST", srv.URL+"/v1/tokenize", json.RawMessage(body), 200, &r)
	if r.Model != "count-bytes-test" || r.Bytes != len(body) {
		t.Errorf("got %+v", r)
	}
}

func TestCLIPCollectionsLifecycle(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) { testCollectionsLifecycle(t, be.open(t)) })
	}
}

func testCollectionsLifecycle(t *testing.T, b index.Backend) {
	srv := startServer(t, clipConfig, testmodels.Dir(), withIndex(b))
	base := srv.URL + "/v1/collections/vecs"
	vec := func(seed int) []float32 {
		v := make([]float32, 4)
		for i := range v {
			v[i] = float32(math.Sin(float64(seed*7 + i)))
		}
		return v
	}
	for i := range 5 {
		call(t, "PUT", fmt.Sprintf("%s/items/v%d", base, i), map[string]any{"vector": vec(i), "metadata": map[string]int{"n": i}}, 200, nil)
	}
	// Replacing keeps the count.
	call(t, "PUT", base+"/items/v4", map[string]any{"vector": vec(4)}, 200, nil)
	hits := search(t, base+"/search", map[string]any{"vector": vec(2), "k": 2})
	if len(hits) != 2 || hits[0].ID != "v2" || math.Abs(hits[0].Score-1) > 1e-6 || string(hits[0].Metadata) != `{"n":2}` {
		t.Errorf("vector search: %+v", hits)
	}
	var list struct {
		Collections []struct {
			Name      string `json:"name"`
			Count     int    `json:"count"`
			Dimension int    `json:"dimension"`
		} `json:"collections"`
	}
	call(t, "GET", srv.URL+"/v1/collections", nil, 200, &list)
	if len(list.Collections) != 1 || list.Collections[0].Count != 5 || list.Collections[0].Dimension != 4 {
		t.Errorf("list: %+v", list)
	}
	call(t, "DELETE", base+"/items/v2", nil, 200, nil)
	call(t, "DELETE", base+"/items/v2", nil, 404, nil)
	if hits := search(t, base+"/search", map[string]any{"vector": vec(2), "k": 10}); len(hits) != 4 || hits[0].ID == "v2" {
		t.Errorf("after delete: %+v", hits)
	}
	call(t, "DELETE", base, nil, 200, nil)
	call(t, "GET", base, nil, 404, nil)
}

func TestCLIPErrors(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) { testCLIPErrors(t, be.open(t)) })
	}
}

func testCLIPErrors(t *testing.T, b index.Backend) {
	srv := startServer(t, clipConfig, testmodels.Dir(), withIndex(b))
	col := srv.URL + "/v1/collections/c"
	call(t, "PUT", col+"/items/a", map[string]any{"text": "a cat"}, 200, nil)
	png := encodePNG(t, generatedImages()["disc"])
	emb := srv.URL + "/v1/embeddings"

	for _, c := range []struct {
		method, url string
		body        any
		code        int
		says        string
	}{
		// unknown collection or item
		{"POST", srv.URL + "/v1/collections/nope/search", map[string]any{"text": "x"}, 404, "no collection"},
		{"GET", srv.URL + "/v1/collections/nope", nil, 404, "no collection"},
		{"DELETE", srv.URL + "/v1/collections/nope/items/a", nil, 404, "no collection"},
		{"DELETE", col + "/items/zzz", nil, 404, "not found"},
		// wrong dimension
		{"PUT", col + "/items/b", map[string]any{"vector": []float32{1, 2, 3}}, 400, "dimension"},
		{"POST", col + "/search", map[string]any{"vector": []float32{1, 2, 3}}, 400, "dimension"},
		// k
		{"POST", col + "/search", map[string]any{"text": "x", "k": 0}, 400, "k must be"},
		{"POST", col + "/search", map[string]any{"text": "x", "k": -3}, 400, "k must be"},
		{"POST", col + "/search", map[string]any{"text": "x", "k": 1001}, 400, "k must be"},
		// empty or ambiguous queries
		{"PUT", col + "/items/b", map[string]any{}, 400, "exactly one"},
		{"PUT", col + "/items/b", map[string]any{"text": "x", "vector": []float32{1}}, 400, "exactly one"},
		{"PUT", col + "/items/b", map[string]any{"text": ""}, 400, "empty"},
		{"PUT", col + "/items/b", map[string]any{"vector": []float32{}}, 400, "empty"},
		{"PUT", srv.URL + "/v1/collections/zero/items/b", map[string]any{"vector": []float32{0, 0, 0}}, 400, "bad vector"},
		{"GET", srv.URL + "/v1/collections/zero", nil, 404, "no collection"}, // the failed PUT created nothing
		{"PUT", srv.URL + "/v1/collections/long/items/" + strings.Repeat("i", 600), map[string]any{"vector": []float32{1}}, 400, "bad id"},
		{"GET", srv.URL + "/v1/collections/long", nil, 404, "no collection"},
		{"PUT", col + "/items/b", map[string]any{"image": ""}, 400, "empty"},
		{"PUT", col + "/items/b", map[string]any{"image": "not base64!"}, 400, "base64"},
		{"PUT", col + "/items/b", map[string]any{"image": base64.StdEncoding.EncodeToString([]byte("not an image"))}, 415, ""},
		{"PUT", col + "/items/b", map[string]any{"txt": "typo"}, 400, "unknown field"},
		{"PUT", srv.URL + "/v1/collections/bad%20name/items/b", map[string]any{"text": "x"}, 400, "collection name"},
		{"PUT", col + "/items/b", map[string]any{"text": "x", "metadata": strings.Repeat("m", 5000)}, 400, "metadata"},
		// models
		{"PUT", col + "/items/b", map[string]any{"text": "x", "model": "nope"}, 404, "unknown model"},
		{"PUT", col + "/items/b", map[string]any{"text": "x", "model": "affine"}, 400, "not a CLIP model"},
		{"PUT", col + "/items/b", map[string]any{"image": base64.StdEncoding.EncodeToString(png), "model": "clip-vit-b32-text"}, 400, "no vision tower"},
		{"PUT", col + "/items/b", map[string]any{"text": "x", "model": "clip-missing"}, 503, "fetch it with: scripts/fetch-models.sh clip-missing-text"},
		{"PUT", col + "/items/b", map[string]any{"image": base64.StdEncoding.EncodeToString(png), "model": "clip-missing"}, 503, "fetch it with: scripts/fetch-models.sh clip-vision"},
		// embeddings
		{"POST", emb, map[string]any{"model": "clip-vit-b32"}, 400, "required"},
		{"POST", emb, map[string]any{"input": []string{}}, 400, "empty"},
		{"POST", emb, map[string]any{"input": ""}, 400, "empty text"},
		{"POST", emb, map[string]any{"input": []any{"ok", 42}}, 400, "input 1"},
		{"POST", emb, map[string]any{"input": [][]int{{320, 2368}}}, 400, "token arrays"},
		{"POST", emb, map[string]any{"input": []any{map[string]string{"text": "a", "image": "b"}}}, 400, "exactly one"},
		{"POST", emb, map[string]any{"input": make([]string, 257)}, 400, "limit"},
		{"POST", emb, map[string]any{"input": "x", "encoding_format": "int8"}, 400, "encoding_format"},
		{"POST", emb, map[string]any{"input": "x", "model": "nope"}, 404, "unknown model"},
		{"POST", emb, map[string]any{"input": []any{"x", map[string]string{"image": base64.StdEncoding.EncodeToString(png[:100])}}}, 422, "input 1"},
	} {
		var data []byte
		if c.body != nil {
			data, _ = json.Marshal(c.body)
		}
		code, _, resp := do(t, c.method, c.url, jsonHeader, data)
		if code != c.code || !strings.Contains(string(resp), c.says) || !bytes.Contains(resp, []byte(`"error"`)) {
			t.Errorf("%s %s %s: %d %s, want %d saying %q", c.method, c.url, data, code, resp, c.code, c.says)
		}
	}
	// Raw bodies: empty, not an image, a bad k.
	for _, c := range []struct {
		url, ct string
		body    []byte
		code    int
	}{
		{col + "/search", "image/png", nil, 400},
		{col + "/search?k=abc", "image/png", png, 400},
		{col + "/search?k=0", "image/png", png, 400},
		{col + "/search", "text/plain", []byte("a cat"), 415},
		{emb, "image/png", nil, 400},
		{emb, "image/png", []byte("garbage"), 415},
	} {
		if code, _, resp := do(t, "POST", c.url, map[string]string{"Content-Type": c.ct}, c.body); code != c.code {
			t.Errorf("POST %s (%s, %d bytes): %d %s, want %d", c.url, c.ct, len(c.body), code, resp, c.code)
		}
	}
	body, ct := multipartBody(t, "image", png, map[string]string{"text": "a cat"})
	if code, _, resp := do(t, "POST", col+"/search", map[string]string{"Content-Type": ct}, body); code != 400 {
		t.Errorf("multipart image and text: %d %s", code, resp)
	}
	if code, _, _ := do(t, "PATCH", col, nil, nil); code != 405 {
		t.Errorf("PATCH a collection: %d", code)
	}
}

// Texts are user queries: no log line and no error message carries them.
func TestCLIPTextsAreNotLogged(t *testing.T) {
	srv := startServer(t, clipConfig, testmodels.Dir())
	secret := "my secret query " + privacyMarker
	call(t, "PUT", srv.URL+"/v1/collections/p/items/1", map[string]any{"text": secret}, 200, nil)
	search(t, srv.URL+"/v1/collections/p/search", map[string]any{"text": secret})
	call(t, "POST", srv.URL+"/v1/embeddings", map[string]any{"input": []string{secret}}, 200, nil)
	call(t, "POST", srv.URL+"/v1/tokenize", map[string]any{"model": "clip-vit-b32", "input": secret}, 200, nil)
	// Failing requests answer without quoting the text.
	for _, body := range []map[string]any{
		{"input": []any{secret, 42}},
		{"input": secret, "model": "clip-missing"},
		{"input": []any{map[string]string{"text": secret, "image": "x"}}},
		{"input": secret, "model": "affine"},
	} {
		data, _ := json.Marshal(body)
		code, _, resp := do(t, "POST", srv.URL+"/v1/embeddings", jsonHeader, data)
		if code < 400 || bytes.Contains(resp, []byte(privacyMarker)) {
			t.Errorf("%s: %d %s", data, code, resp)
		}
	}
	if strings.Contains(srv.Logs.String(), privacyMarker) {
		t.Errorf("a text query reached the log:\n%s", srv.Logs.String())
	}
}
