package server

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/caption"
	"github.com/imgserve/imgserve/preprocess"
)

// captionConfig serves the synthetic caption models under the default
// names. The decoder batches up to 8 rows a step, and a new cohort waits
// for a full batch (up to a minute), so concurrent requests share their
// steps deterministically. Single requests in these tests come alone, so
// the decoder of caption-solo, which waits for nobody, serves them.
var captionConfig = fmt.Sprintf(`
models:
  - name: vit-gpt2
    file: %[1]s
    task: caption-encoder
    intra_op_threads: 1
    batching: {max_batch_size: 8, max_queue_delay: 5ms}
    options: {decoder: vit-gpt2-decoder}
  - name: vit-gpt2-decoder
    file: %[2]s
    task: caption-decoder
    intra_op_threads: 1
    batching: {max_batch_size: 1, max_queue_delay: 1m}
    options: {decode_batch_size: "8"}
  - name: caption-solo
    file: %[1]s
    task: caption-encoder
    intra_op_threads: 1
    options: {decoder: solo-decoder}
  - name: solo-decoder
    file: %[3]s
    task: caption-decoder
    intra_op_threads: 1
  - name: caption-nodecoder
    file: %[1]s
    task: caption-encoder
    options: {decoder: missing-decoder}
  - name: missing-decoder
    file: missing-caption-decoder.onnx
    task: caption-decoder
    fetch: caption-decoder-int8
  - name: affine
    file: affine_f32.onnx
`, testmodels.CaptionEncoderSynth, testmodels.CaptionDecoderSynth, testmodels.CaptionDecoderSynth2Layer)

type captionReply struct {
	Caption string `json:"caption"`
	Model   string `json:"model"`
	Tokens  int    `json:"tokens"`
}

func solidImage(c color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 80, 60))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

var captionColours = []color.NRGBA{
	{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255},
	{0, 0, 0, 255}, {200, 120, 40, 255}, {30, 90, 160, 255}, {250, 200, 10, 255},
}

// expectedCaption applies the synthetic decoder's rule
// (internal/testmodels/README.md) to the encoder's actual output for the
// uploaded image: the greedy token ids, and the caption text.
func expectedCaption(t *testing.T, srv *testServer, model string, upload []byte, maxNew int) ([]int64, string) {
	t.Helper()
	p, err := caption.NewRegistry(srv.Registry, nil).Get(model)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := preprocess.Decode(upload, preprocess.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	hidden, err := p.Encode(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	x := float32(inference.Values[float32](hidden)[0]*1000) + 0.5
	code := (int64(math.Floor(float64(x)))%97 + 97) % 97
	var ids []int64
	tok := int64(50256)
	for pos := int64(0); len(ids) < maxNew && pos < 3+code%5; pos++ {
		tok = 256 + (code*31+pos*7+tok)%2000
		ids = append(ids, tok)
	}
	return ids, p.Text(ids)
}

func postCaption(t *testing.T, url string, header map[string]string, body []byte) (int, captionReply, []byte) {
	t.Helper()
	code, h, resp := do(t, "POST", url, header, body)
	var r captionReply
	if code == http.StatusOK {
		if err := json.Unmarshal(resp, &r); err != nil {
			t.Fatalf("%s: %v", resp, err)
		}
		if !strings.Contains(h.Get("Server-Timing"), "generate;dur=") {
			t.Errorf("Server-Timing %q", h.Get("Server-Timing"))
		}
	}
	return code, r, resp
}

// A raw body and a multipart upload get the caption the synthetic model's
// rule predicts for the image, with the parameters honoured; the caption is
// never logged.
func TestCaptionAPI(t *testing.T) {
	srv := startServer(t, captionConfig, testmodels.Dir())
	blue := encodePNG(t, solidImage(captionColours[2]))
	ids, text := expectedCaption(t, srv, "caption-solo", blue, caption.DefaultMaxNewTokens)
	if len(ids) != 7 || text == "" {
		t.Fatalf("the rule gives blue %v %q; want 7 tokens", ids, text)
	}

	code, r, body := postCaption(t, srv.URL+"/v1/caption?model=caption-solo", map[string]string{"Content-Type": "image/png"}, blue)
	if code != 200 || r != (captionReply{Caption: text, Model: "caption-solo", Tokens: 7}) {
		t.Errorf("raw body: %d %s, want %q", code, body, text)
	}

	jpeg := encodeJPEG(t, solidImage(captionColours[4]))
	ids, text = expectedCaption(t, srv, "caption-solo", jpeg, 2)
	mp, ct := multipartBody(t, "image", jpeg, map[string]string{"model": "caption-solo", "max_new_tokens": "2", "num_beams": "3"})
	code, r, body = postCaption(t, srv.URL+"/v1/caption", map[string]string{"Content-Type": ct}, mp)
	if code != 200 || r != (captionReply{Caption: text, Model: "caption-solo", Tokens: 2}) || len(ids) != 2 {
		t.Errorf("multipart, 2 tokens, 3 beams: %d %s, want %q", code, body, text)
	}

	logs := srv.Logs.String()
	for _, c := range []string{r.Caption, text} {
		if strings.Contains(logs, c) {
			t.Errorf("a caption reached the log: %q", c)
		}
	}
}

// Eight concurrent requests on distinct images decode in shared steps,
// which the decoder's batch-size histogram shows, and each gets its own
// image's caption.
func TestCaptionConcurrentRequestsShareDecoderSteps(t *testing.T) {
	srv := startServer(t, captionConfig, testmodels.Dir())
	uploads := make([][]byte, len(captionColours))
	want := make([]string, len(uploads))
	steps, rows := 0, 0
	for i, c := range captionColours {
		uploads[i] = encodePNG(t, solidImage(c))
		var ids []int64
		ids, want[i] = expectedCaption(t, srv, "vit-gpt2", uploads[i], caption.DefaultMaxNewTokens)
		steps = max(steps, len(ids)+1) // the last step predicts EOS
		rows += len(ids) + 1
	}
	got := make([]captionReply, len(uploads))
	var wg sync.WaitGroup
	for i := range uploads {
		wg.Go(func() {
			code, r, body := postCaption(t, srv.URL+"/v1/caption", map[string]string{"Content-Type": "image/png"}, uploads[i])
			if code != 200 {
				t.Errorf("request %d: %d %s", i, code, body)
			}
			got[i] = r
		})
	}
	wg.Wait()
	for i := range got {
		if got[i].Caption != want[i] || got[i].Model != "vit-gpt2" {
			t.Errorf("image %d: %+v, want %q", i, got[i], want[i])
		}
	}

	_, _, metrics := do(t, "GET", srv.URL+"/metrics", nil, nil)
	series := `imgserve_inference_batch_size_%s{model="` + caption.DecodeLabel("vit-gpt2-decoder") + `"%s}`
	count := metricValue(t, metrics, fmt.Sprintf(series, "count", ""))
	sum := metricValue(t, metrics, fmt.Sprintf(series, "sum", ""))
	single := metricValue(t, metrics, fmt.Sprintf(series, "bucket", `,le="1"`))
	// One cohort of all eight, which loses each sequence as it ends.
	if count != float64(steps) || sum != float64(rows) || single != 0 {
		t.Errorf("decoder steps %v with %v rows, %v of one row; want %d steps with %d rows, none single",
			count, sum, single, steps, rows)
	}
	if n := metricValue(t, metrics, `imgserve_inference_request_success_total{model="`+caption.DecodeLabel("vit-gpt2-decoder")+`"}`); n != 8 {
		t.Errorf("%v captions decoded, want 8", n)
	}
}

func TestCaptionErrors(t *testing.T) {
	srv := startServer(t, captionConfig, testmodels.Dir())
	png := encodePNG(t, solidImage(captionColours[0]))
	pngCT := map[string]string{"Content-Type": "image/png"}
	for _, c := range []struct {
		name   string
		query  string
		header map[string]string
		body   []byte
		code   int
		msg    string
	}{
		{"zero tokens", "?model=caption-solo&max_new_tokens=0", pngCT, png, 400, "max_new_tokens must be an integer from 1 to 64"},
		{"too many tokens", "?model=caption-solo&max_new_tokens=65", pngCT, png, 400, "max_new_tokens"},
		{"tokens not a number", "?model=caption-solo&max_new_tokens=ten", pngCT, png, 400, "max_new_tokens"},
		{"too many beams", "?model=caption-solo&num_beams=9", pngCT, png, 400, "num_beams must be an integer from 1 to 8"},
		{"zero beams", "?model=caption-solo&num_beams=0", pngCT, png, 400, "num_beams"},
		{"unknown model", "?model=nope", pngCT, png, 404, "caption models: vit-gpt2, caption-solo, caption-nodecoder"},
		{"not a caption model", "?model=affine", pngCT, png, 404, "unknown caption model"},
		{"decoder unavailable", "?model=caption-nodecoder", pngCT, png, 503, "scripts/fetch-models.sh caption-decoder-int8"},
		{"empty body", "?model=caption-solo", pngCT, nil, 400, "empty body"},
		{"not an image", "?model=caption-solo", map[string]string{"Content-Type": "text/plain"}, []byte("hello"), 415, "not an image"},
		{"unknown format", "?model=caption-solo", nil, []byte("definitely not an image"), 415, ""},
		{"truncated image", "?model=caption-solo", pngCT, png[:len(png)/2], 422, ""},
	} {
		code, _, body := do(t, "POST", srv.URL+"/v1/caption"+c.query, c.header, c.body)
		if code != c.code || !strings.Contains(string(body), c.msg) || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, code, body, c.code, c.msg)
		}
	}
	if code, h, _ := do(t, "GET", srv.URL+"/v1/caption", nil, nil); code != 405 || h.Get("Allow") != "POST" {
		t.Errorf("GET: %d, Allow %q", code, h.Get("Allow"))
	}
	// The server still captions after all that.
	if code, _, body := postCaption(t, srv.URL+"/v1/caption?model=caption-solo", pngCT, png); code != 200 {
		t.Errorf("after errors: %d %s", code, body)
	}
}

// /v1/tokenize serves the caption model's GPT-2 tokenizer both ways, with
// or without the weights, and for the default model name even when the
// configuration leaves the model out.
func TestCaptionTokenize(t *testing.T) {
	srv := startServer(t, captionConfig, testmodels.Dir())
	url := srv.URL + "/v1/tokenize"
	var enc struct {
		Model string `json:"model"`
		Data  []struct {
			Index int   `json:"index"`
			IDs   []int `json:"ids"`
		} `json:"data"`
	}
	// "a dog sitting on a couch" in GPT-2's vocabulary.
	want := []int{64, 3290, 5586, 319, 257, 18507}
	call(t, "POST", url, map[string]any{"model": "vit-gpt2", "input": "a dog sitting on a couch"}, 200, &enc)
	if enc.Model != "vit-gpt2" || len(enc.Data) != 1 || !slices.Equal(enc.Data[0].IDs, want) {
		t.Errorf("encode: %+v, want ids %v", enc, want)
	}
	call(t, "POST", url, map[string]any{"model": "caption-nodecoder", "input": []string{"a", "<|endoftext|>"}}, 200, &enc)
	if len(enc.Data) != 2 || !slices.Equal(enc.Data[1].IDs, []int{50256}) || enc.Data[1].Index != 1 {
		t.Errorf("encode two texts with a model whose decoder is missing: %+v", enc)
	}

	var dec struct {
		Data []struct {
			Index int    `json:"index"`
			Text  string `json:"text"`
		} `json:"data"`
	}
	ids := append(slices.Clone(want), 764, 50256) // " ." and EOS
	call(t, "POST", url, map[string]any{"model": "vit-gpt2", "ids": ids}, 200, &dec)
	if len(dec.Data) != 1 || dec.Data[0].Text != "a dog sitting on a couch.<|endoftext|>" {
		t.Errorf("decode: %+v", dec)
	}
	call(t, "POST", url, map[string]any{"model": "caption-solo", "ids": [][]int{ids, {}}, "skip_special_tokens": true}, 200, &dec)
	if len(dec.Data) != 2 || dec.Data[0].Text != "a dog sitting on a couch." || dec.Data[1].Text != "" {
		t.Errorf("decode two lists, skipping special tokens: %+v", dec)
	}

	for _, c := range []struct {
		body any
		code int
	}{
		{map[string]any{"model": "vit-gpt2"}, 400},
		{map[string]any{"model": "vit-gpt2", "input": "a", "ids": []int{1}}, 400},
		{map[string]any{"model": "vit-gpt2", "ids": []int{50257}}, 400},
		{map[string]any{"model": "vit-gpt2", "ids": []int{-1}}, 400},
		{map[string]any{"model": "vit-gpt2", "ids": "a"}, 400},
		{map[string]any{"model": "vit-gpt2", "input": []string{}}, 400},
		{map[string]any{"model": "vit-gpt2", "input": make([]string, 257)}, 400},
		{map[string]any{"model": "vit-gpt2", "input": "a", "extra": 1}, 400},
		{map[string]any{"model": "vit-gpt2-decoder", "input": "a"}, 400},
	} {
		call(t, "POST", url, c.body, c.code, nil)
	}

	// Without any caption model configured, the default name still works.
	bare := startServer(t, "models:\n  - {name: affine, file: affine_f32.onnx}\n", testmodels.Dir())
	call(t, "POST", bare.URL+"/v1/tokenize", map[string]any{"model": "vit-gpt2", "input": "a dog sitting on a couch"}, 200, &enc)
	if !slices.Equal(enc.Data[0].IDs, want) {
		t.Errorf("unconfigured default model: %+v", enc)
	}
}

// The embedded defaults serve vit-gpt2; without its files (as on machines
// that cannot fetch them) the server starts, both models are unavailable,
// and a caption request says how to fetch them.
func TestCaptionDefaultsWithoutWeights(t *testing.T) {
	defaults, err := os.ReadFile(filepath.Join("..", "models", "defaults.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, string(defaults), t.TempDir())
	for name, item := range map[string]string{"vit-gpt2": "caption-encoder-int8", "vit-gpt2-decoder": "caption-decoder-int8"} {
		m, ok := srv.Registry.Get(name)
		if !ok {
			t.Fatalf("%s is not in the defaults", name)
		}
		if st := m.State(); st.Status != models.StatusUnavailable || !strings.Contains(st.Reason, "scripts/fetch-models.sh "+item) {
			t.Errorf("%s: %s %q", name, st.Status, st.Reason)
		}
	}
	code, _, body := do(t, "POST", srv.URL+"/v1/caption", map[string]string{"Content-Type": "image/png"},
		encodePNG(t, solidImage(captionColours[0])))
	if code != 503 || !strings.Contains(string(body), "scripts/fetch-models.sh caption-encoder-int8") {
		t.Errorf("caption without weights: %d %s", code, body)
	}
}
