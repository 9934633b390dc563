package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/server/openapi"
)

// fullConfig serves a model of every kind the API has: the real u2netp,
// the synthetic LaMa, caption, CLIP and Stable Diffusion models
// (internal/testmodels), a plain tensor model for KServe, and a CLIP model
// whose file is missing, which /v1/models reports as unavailable with the
// reason.
func fullConfig() string {
	return fmt.Sprintf(`
models:
  - {name: u2netp, file: %[1]s, task: matting, intra_op_threads: 1}
  - {name: lama, file: %[2]s, task: inpaint, intra_op_threads: 1}
  - {name: vit-gpt2, file: %[3]s, task: caption-encoder, intra_op_threads: 1, options: {decoder: vit-gpt2-decoder}}
  - {name: vit-gpt2-decoder, file: %[4]s, task: caption-decoder, intra_op_threads: 1}
  - name: clip-vit-b32
    file: %[5]s
    task: clip-vision
    outputs: [image_embeds]
    intra_op_threads: 1
    options: {text_model: clip-vit-b32-text}
  - {name: clip-vit-b32-text, file: %[6]s, task: clip-text, intra_op_threads: 1}
  - name: sd
    file: %[7]s
    task: diffusion-unet
    intra_op_threads: 1
    options: {text_encoder: sd-text, vae_decoder: sd-vae-dec, vae_encoder: sd-vae-enc, safety_checker: sd-safety, max_steps: "8"}
  - {name: sd-text, file: %[8]s, task: diffusion-text-encoder, intra_op_threads: 1}
  - {name: sd-vae-dec, file: %[9]s, task: diffusion-vae-decoder, intra_op_threads: 1}
  - {name: sd-vae-enc, file: %[10]s, task: diffusion-vae-encoder, intra_op_threads: 1}
  - {name: sd-safety, file: %[11]s, task: diffusion-safety-checker, intra_op_threads: 1}
  - {name: affine, file: %[12]s, batching: {max_batch_size: 4, max_queue_delay: 1ms}}
  - name: clip-large
    file: missing-clip-large.onnx
    fetch: clip-vision
    task: clip-vision
    options: {text_model: clip-vit-b32-text}
`, filepath.Join(realModelsDir(), "u2netp.onnx"), testmodels.LamaSynth, testmodels.CaptionEncoderSynth, testmodels.CaptionDecoderSynth,
		"clip_vision_synth.onnx", "clip_text_synth.onnx",
		testmodels.SDUNetSynth, testmodels.SDTextEncoderSynth, testmodels.SDVAEDecoderSynth, testmodels.SDVAEEncoderSynth, testmodels.SDSafetyCheckerSynth,
		testmodels.AffineF32)
}

// loadOpenAPI parses the served document with kin-openapi and checks it
// against the OpenAPI 3.1 rules.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	data, err := openapi.JSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("loading the OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	return doc
}

// registeredRoutes are the routing table's routes as "METHOD pattern",
// without the routes tests add for themselves (under /test/).
func registeredRoutes() []string {
	var out []string
	for _, f := range features {
		if strings.HasPrefix(f.Pattern, "/test/") {
			continue
		}
		out = append(out, f.Method+" "+f.Pattern)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func documentedRoutes(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPICoversTheRoutingTable fails when a route is registered but
// not documented, or documented but not registered.
func TestOpenAPICoversTheRoutingTable(t *testing.T) {
	doc := loadOpenAPI(t)
	registered, documented := registeredRoutes(), documentedRoutes(doc)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is registered but missing from server/openapi/openapi.yaml", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(registered, r) {
			t.Errorf("route %s is documented but not registered", r)
		}
	}
	t.Logf("%d routes registered, %d documented", len(registered), len(documented))
	// Every operation answers its errors in the format of its family.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			for code, resp := range op.Responses.Map() {
				if code < "400" || resp.Value == nil {
					continue
				}
				mt := resp.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil {
					t.Errorf("%s %s: response %s has no JSON error schema", method, path, code)
					continue
				}
				want := "#/components/schemas/Error"
				if strings.HasPrefix(path, "/v2") {
					want = "#/components/schemas/KServeError"
				}
				if mt.Schema.Ref != want {
					t.Errorf("%s %s: response %s is %q, want %s", method, path, code, mt.Schema.Ref, want)
				}
			}
		}
	}
}

// TestOpenAPIServedDocument checks GET /openapi.json answers the embedded
// document.
func TestOpenAPIServedDocument(t *testing.T) {
	srv := startServer(t, "models: []\n", t.TempDir())
	code, h, body := do(t, "GET", srv.URL+"/openapi.json", nil, nil)
	want, _ := openapi.JSON()
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || !bytes.Equal(body, want) {
		t.Fatalf("GET /openapi.json: %d %s, %d bytes (want %d)", code, h.Get("Content-Type"), len(body), len(want))
	}
}

var registerDecoders sync.Once

// apiCase is one request whose response is validated against the
// document.
type apiCase struct {
	method, pattern, path string
	contentType           string
	body                  []byte
	want                  int
}

// TestOpenAPIValidatesResponses sends each route its main requests, a
// success and its usual errors, and validates the request and the real
// response against the document with kin-openapi: status, headers, media
// type and body schema. Every documented operation must have a case that
// succeeds.
func TestOpenAPIValidatesResponses(t *testing.T) {
	if testing.Short() {
		t.Skip("loads every kind of model")
	}
	doc := loadOpenAPI(t)
	registerDecoders.Do(func() {
		for _, ct := range []string{"image/png", "image/jpeg", "text/html", "text/css", "text/javascript", "text/event-stream", "application/zip", "application/x-ndjson"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
		}
	})
	srv := startServer(t, fullConfig(), testmodels.Dir(), func(o *Options) { o.Playground = true })

	photo := rembgTestdata(t, "car-1.jpg")
	small := testPNG(64, 64)
	mask := testMask(64, 64)
	jsonBody := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	form := func(fields map[string]string, files map[string][]byte) (string, []byte) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for k, v := range files {
			fw, _ := w.CreateFormFile(k, k+".png")
			fw.Write(v)
		}
		for k, v := range fields {
			w.WriteField(k, v)
		}
		w.Close()
		return w.FormDataContentType(), buf.Bytes()
	}
	const js = "application/json"
	rembgCT, rembgBody := form(map[string]string{"model": "u2netp"}, map[string][]byte{"file": small})
	inpaintCT, inpaintBody := form(nil, map[string][]byte{"image": small, "mask": mask})
	noMaskCT, noMaskBody := form(nil, map[string][]byte{"image": small})
	boxesCT, boxesBody := form(map[string]string{"boxes": "[[8,8,16,16]]"}, map[string][]byte{"image": small})
	editCT, editBody := form(map[string]string{"prompt": "a cat", "steps": "2", "size": "64x64"}, map[string][]byte{"image": small})
	b64 := base64.StdEncoding.EncodeToString
	infer := jsonBody(map[string]any{"inputs": []map[string]any{{"name": "x", "shape": []int{1, 4}, "datatype": "FP32", "data": []float32{1, 2, 3, 4}}}})
	jobCT, jobBody := form(map[string]string{"task": "remove-background", "model": "u2netp"}, map[string][]byte{"image": small})
	job := submitJob(t, srv.URL, jobBody, jobCT, "")
	awaitJob(t, srv.URL, job)

	cases := []apiCase{
		{"GET", "/", "/", "", nil, 200},
		{"GET", "/playground/{file}", "/playground/app.js", "", nil, 200},
		{"GET", "/playground/{file}", "/playground/app.css", "", nil, 200},
		{"GET", "/playground/{file}", "/playground/secrets.txt", "", nil, 404},
		{"GET", "/openapi.json", "/openapi.json", "", nil, 200},

		{"POST", "/v1/remove-background", "/v1/remove-background?model=u2netp", "image/jpeg", photo, 200},
		{"POST", "/v1/remove-background", "/v1/remove-background?model=u2netp&format=mask", "image/png", small, 200},
		{"POST", "/v1/remove-background", "/v1/remove-background?model=u2netp", "image/png", []byte("not an image"), 415},
		{"POST", "/v1/remove-background", "/v1/remove-background?model=nope", "image/png", small, 404},
		{"POST", "/v1/remove-background", "/v1/remove-background?format=gif", "image/png", small, 400},
		{"POST", "/api/remove", "/api/remove", rembgCT, rembgBody, 200},
		{"GET", "/api/remove", "/api/remove?url=http://example.com/a.png", "", nil, 400},
		{"GET", "/api", "/api", "", nil, 200},

		{"POST", "/v1/inpaint", "/v1/inpaint", inpaintCT, inpaintBody, 200},
		{"POST", "/v1/inpaint", "/v1/inpaint", noMaskCT, noMaskBody, 400},
		{"POST", "/v1/inpaint", "/v1/inpaint?model=nope", inpaintCT, inpaintBody, 404},
		{"POST", "/api/v1/inpaint", "/api/v1/inpaint", js, jsonBody(map[string]any{"image": b64(small), "mask": "data:image/png;base64," + b64(mask), "sd_steps": 20}), 200},
		{"POST", "/api/v1/inpaint", "/api/v1/inpaint", js, []byte(`{"image": 3}`), 400},
		{"POST", "/v1/remove-watermark", "/v1/remove-watermark", boxesCT, boxesBody, 200},
		{"POST", "/v1/remove-watermark", "/v1/remove-watermark", js, jsonBody(map[string]any{"image": b64(small), "boxes": [][]int{{0, 0, 8, 8}}, "format": "jpeg"}), 200},
		{"POST", "/v1/remove-watermark", "/v1/remove-watermark", noMaskCT, noMaskBody, 400},

		{"POST", "/v1/caption", "/v1/caption?max_new_tokens=5", "image/png", small, 200},
		{"POST", "/v1/caption", "/v1/caption?max_new_tokens=0", "image/png", small, 400},
		{"POST", "/v1/caption", "/v1/caption", "image/png", []byte{0x89, 'P', 'N', 'G'}, 415},

		{"POST", "/v1/embeddings", "/v1/embeddings", js, jsonBody(map[string]any{"input": []any{"a cat", map[string]string{"image": b64(small)}}}), 200},
		{"POST", "/v1/embeddings", "/v1/embeddings", js, jsonBody(map[string]any{"input": "a cat", "encoding_format": "base64"}), 200},
		{"POST", "/v1/embeddings", "/v1/embeddings", js, []byte(`{"input": `), 400},
		{"POST", "/v1/embeddings", "/v1/embeddings", js, jsonBody(map[string]any{"input": "a cat", "model": "nope"}), 404},
		{"POST", "/v1/tokenize", "/v1/tokenize", js, jsonBody(map[string]any{"model": "clip-vit-b32", "input": []string{"a cat", "a dog"}}), 200},
		{"POST", "/v1/tokenize", "/v1/tokenize", js, jsonBody(map[string]any{"model": "nope", "input": "a"}), 404},
		{"POST", "/v1/tokenize", "/v1/tokenize", js, jsonBody(map[string]any{"input": "a"}), 400},

		{"PUT", "/v1/collections/{c}", "/v1/collections/docs", js, []byte(`{"dimension": 512}`), 201},
		{"PUT", "/v1/collections/{c}", "/v1/collections/docs", js, []byte(`{"dimension": 512}`), 200},
		{"PUT", "/v1/collections/{c}", "/v1/collections/docs", js, []byte(`{"dimension": 256}`), 400},
		{"PUT", "/v1/collections/{c}", "/v1/collections/docs2", js, []byte(`{}`), 400},
		{"GET", "/v1/collections", "/v1/collections", "", nil, 200},
		{"GET", "/v1/collections/{c}", "/v1/collections/docs", "", nil, 200},
		{"GET", "/v1/collections/{c}", "/v1/collections/nope", "", nil, 404},
		{"PUT", "/v1/collections/{c}/items/{id}", "/v1/collections/docs/items/cat", js, jsonBody(map[string]any{"text": "a cat", "metadata": map[string]int{"n": 1}}), 200},
		{"PUT", "/v1/collections/{c}/items/{id}", "/v1/collections/docs/items/square", "image/png", small, 200},
		{"PUT", "/v1/collections/{c}/items/{id}", "/v1/collections/docs/items/both", js, jsonBody(map[string]any{"text": "a", "image": b64(small)}), 400},
		{"POST", "/v1/collections/{c}/search", "/v1/collections/docs/search", js, jsonBody(map[string]any{"text": "a cat", "k": 2}), 200},
		{"POST", "/v1/collections/{c}/search", "/v1/collections/docs/search", "image/png", small, 200},
		{"POST", "/v1/collections/{c}/search", "/v1/collections/docs/search", js, jsonBody(map[string]any{"text": "a cat", "k": 0}), 400},
		{"POST", "/v1/collections/{c}/search", "/v1/collections/nope/search", js, jsonBody(map[string]any{"text": "a cat"}), 404},
		{"DELETE", "/v1/collections/{c}/items/{id}", "/v1/collections/docs/items/cat", "", nil, 200},
		{"DELETE", "/v1/collections/{c}/items/{id}", "/v1/collections/docs/items/cat", "", nil, 404},
		{"DELETE", "/v1/collections/{c}", "/v1/collections/docs", "", nil, 200},
		{"DELETE", "/v1/collections/{c}", "/v1/collections/docs", "", nil, 404},

		{"POST", "/v1/images/generations", "/v1/images/generations", js, jsonBody(map[string]any{"prompt": "a cat", "size": "64x64", "steps": 2, "seed": 7}), 200},
		{"POST", "/v1/images/generations", "/v1/images/generations", js, jsonBody(map[string]any{"prompt": "a cat", "response_format": "url"}), 400},
		{"POST", "/v1/images/generations", "/v1/images/generations", js, jsonBody(map[string]any{"prompt": "a cat", "model": "nope"}), 404},
		{"POST", "/v1/images/edits", "/v1/images/edits", editCT, editBody, 200},
		{"POST", "/v1/images/edits", "/v1/images/edits", js, jsonBody(map[string]any{"prompt": "a cat"}), 415},

		{"POST", "/v1/jobs", "/v1/jobs", jobCT, jobBody, 202},
		{"POST", "/v1/jobs", "/v1/jobs?task=paint", "application/zip", []byte("PK"), 400},
		{"GET", "/v1/jobs/{id}", "/v1/jobs/" + job, "", nil, 200},
		{"GET", "/v1/jobs/{id}/events", "/v1/jobs/" + job + "/events", "", nil, 200},
		{"GET", "/v1/jobs/{id}/results", "/v1/jobs/" + job + "/results", "", nil, 200},
		{"GET", "/v1/jobs/{id}/items/{name}", "/v1/jobs/" + job + "/items/image.png", "", nil, 200},
		{"GET", "/v1/jobs/{id}/items/{name}", "/v1/jobs/" + job + "/items/nope.png", "", nil, 404},
		{"DELETE", "/v1/jobs/{id}", "/v1/jobs/" + job, "", nil, 200},
		{"GET", "/v1/jobs/{id}", "/v1/jobs/" + job, "", nil, 404},

		{"GET", "/v1/models", "/v1/models", "", nil, 200},
		{"GET", "/metrics", "/metrics", "", nil, 200},
		{"GET", "/v2/health/live", "/v2/health/live", "", nil, 200},
		{"GET", "/v2/health/ready", "/v2/health/ready", "", nil, 200},
		{"GET", "/v2", "/v2", "", nil, 200},
		{"GET", "/v2/models/{m}", "/v2/models/affine", "", nil, 200},
		{"GET", "/v2/models/{m}", "/v2/models/nope", "", nil, 404},
		{"GET", "/v2/models/{m}/versions/{v}", "/v2/models/u2netp/versions/1", "", nil, 200},
		{"GET", "/v2/models/{m}/versions/{v}", "/v2/models/u2netp/versions/2", "", nil, 404},
		{"GET", "/v2/models/{m}/ready", "/v2/models/affine/ready", "", nil, 200},
		{"GET", "/v2/models/{m}/ready", "/v2/models/clip-large/ready", "", nil, 503},
		{"GET", "/v2/models/{m}/versions/{v}/ready", "/v2/models/affine/versions/1/ready", "", nil, 200},
		{"POST", "/v2/models/{m}/infer", "/v2/models/affine/infer", js, infer, 200},
		{"POST", "/v2/models/{m}/infer", "/v2/models/affine/infer", js, []byte(`{"inputs": [`), 400},
		{"POST", "/v2/models/{m}/infer", "/v2/models/nope/infer", js, infer, 404},
		{"POST", "/v2/models/{m}/versions/{v}/infer", "/v2/models/affine/versions/1/infer", js, infer, 200},
		{"GET", "/v2/models/{m}/config", "/v2/models/affine/config", "", nil, 200},
		{"GET", "/v2/models/{m}/versions/{v}/config", "/v2/models/u2netp/versions/1/config", "", nil, 200},
		{"GET", "/v2/models/{m}/stats", "/v2/models/affine/stats", "", nil, 200},
		{"GET", "/v2/models/{m}/stats", "/v2/models/nope/stats", "", nil, 404},
		{"GET", "/v2/models/{m}/versions/{v}/stats", "/v2/models/affine/versions/1/stats", "", nil, 200},
		{"GET", "/v2/models/stats", "/v2/models/stats", "", nil, 200},
		{"POST", "/v2/repository/index", "/v2/repository/index", js, []byte(`{"ready": true}`), 200},
		{"POST", "/v2/repository/index", "/v2/repository/index", "", nil, 200},
		{"POST", "/v2/repository/index", "/v2/repository/index", js, []byte(`{"ready": `), 400},
	}
	succeeded := map[string]bool{}
	for _, c := range cases {
		name := fmt.Sprintf("%s %s %d", c.method, c.path, c.want)
		if !validateCase(t, doc, srv.URL, c) {
			t.Errorf("%s failed", name)
		} else if c.want < 300 {
			succeeded[c.method+" "+c.pattern] = true
		}
	}
	// GET /api/remove only ever refuses.
	succeeded["GET /api/remove"] = true
	for _, r := range documentedRoutes(doc) {
		if !succeeded[r] {
			t.Errorf("%s: no case checks a successful response", r)
		}
	}
}

// TestOpenAPIValidatesRefusals validates what a server that requires API
// keys answers without one, and that the page, the document and the health
// probes stay open.
func TestOpenAPIValidatesRefusals(t *testing.T) {
	doc := loadOpenAPI(t)
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) {
		o.Keys = keyFile(t, "secret")
		o.Playground = true
	})
	infer := []byte(`{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}`)
	for _, c := range []apiCase{
		{"GET", "/v1/models", "/v1/models", "", nil, 401},
		{"GET", "/metrics", "/metrics", "", nil, 401},
		{"POST", "/api/remove", "/api/remove", "image/png", testPNG(8, 8), 401},
		{"POST", "/v1/caption", "/v1/caption", "image/png", testPNG(8, 8), 401},
		{"GET", "/v2", "/v2", "", nil, 401},
		{"POST", "/v2/models/{m}/infer", "/v2/models/affine/infer", "application/json", infer, 401},
		{"GET", "/", "/", "", nil, 200},
		{"GET", "/playground/{file}", "/playground/app.js", "", nil, 200},
		{"GET", "/openapi.json", "/openapi.json", "", nil, 200},
		{"GET", "/v2/health/live", "/v2/health/live", "", nil, 200},
	} {
		if !validateCase(t, doc, srv.URL, c) {
			t.Errorf("%s %s %d failed", c.method, c.path, c.want)
		}
	}
}

// validateCase sends one request and validates it and its response; it
// reports whether both held.
func validateCase(t *testing.T, doc *openapi3.T, base string, c apiCase) bool {
	t.Helper()
	item := doc.Paths.Value(c.pattern)
	if item == nil {
		t.Errorf("%s %s: %s is not documented", c.method, c.path, c.pattern)
		return false
	}
	op := item.GetOperation(c.method)
	if op == nil {
		t.Errorf("%s %s: method not documented", c.method, c.pattern)
		return false
	}
	urlPath, _, _ := strings.Cut(c.path, "?")
	vars, _, ok := matchPattern(c.pattern, urlPath)
	if !ok {
		t.Fatalf("%s does not match %s", c.path, c.pattern)
	}
	newRequest := func() *http.Request {
		req, err := http.NewRequest(c.method, base+c.path, bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		return req
	}
	route := &routers.Route{Spec: doc, Path: c.pattern, PathItem: item, Method: c.method, Operation: op}
	in := &openapi3filter.RequestValidationInput{
		Request: newRequest(), PathParams: vars, Route: route,
		Options: &openapi3filter.Options{
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			// Image bodies are bytes; JSON ones are checked.
			ExcludeRequestBody: c.contentType != "application/json" || c.want >= 400,
			// Some cases send out-of-range parameters on purpose.
			MultiError: true,
		},
	}
	ok = true
	if c.want < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: the request does not match the document: %v", c.method, c.path, err)
			ok = false
		}
	}
	resp, err := http.DefaultClient.Do(newRequest())
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != c.want {
		t.Errorf("%s %s: status %d, want %d: %.300s", c.method, c.path, resp.StatusCode, c.want, body)
		return false
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: the %d response does not match the document: %v\n%.300s", c.method, c.path, resp.StatusCode, err, body)
		ok = false
	}
	return ok
}

// testPNG is a w×h PNG with a gradient and a disc, so that models have
// something to find.
func testPNG(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255}
			if dx, dy := x-w/2, y-h/2; dx*dx+dy*dy < w*h/16 {
				c = color.NRGBA{230, 40, 40, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}

// testMask is white in a square in the middle, black elsewhere.
func testMask(w, h int) []byte {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := h / 4; y < 3*h/4; y++ {
		for x := w / 4; x < 3*w/4; x++ {
			img.SetGray(x, y, color.Gray{255})
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}
