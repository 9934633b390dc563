package server

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/internal/testmodels"
)

// The fixtures in testdata/kserve are written from the protocol documents
// (see its README). Answers are compared with them as generic JSON, whose
// keys are case-sensitive, never through the server's own types: Go's JSON
// decoder matches struct fields regardless of case, which once let a
// "Parameters" key pass that Triton's clients do not read.

const goldenConfig = `
models:
  - name: affine
    file: affine_f32.onnx
    intra_op_threads: 1
    batching: {max_batch_size: 8, preferred_batch_sizes: [4, 8], max_queue_delay: 500us, max_queue_size: 16, instances: 1}
  - name: lama
    file: lama_fp32.onnx
`

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "kserve", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeGeneric(t *testing.T, what string, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s is not JSON: %v: %.300s", what, err, b)
	}
	if dec.More() {
		t.Fatalf("%s has trailing data: %.300s", what, b)
	}
	return v
}

// matchFixture compares a body with a fixture. With subset, the body may
// hold object keys the fixture does not name.
func matchFixture(t *testing.T, name string, body []byte, subset bool) {
	t.Helper()
	want, got := decodeGeneric(t, name, fixture(t, name)), decodeGeneric(t, "the answer", body)
	if diffs := matchJSON("$", want, got, subset); len(diffs) > 0 {
		t.Fatalf("answer differs from %s:\n  %s\nanswer: %.2000s", name, strings.Join(diffs, "\n  "), body)
	}
}

func matchJSON(path string, want, got any, subset bool) []string {
	if w, ok := want.(string); ok && strings.HasPrefix(w, "<") {
		return matchPlaceholder(path, w, got)
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %v", path, got)}
		}
		var diffs []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s: missing key %q (has %v)", path, k, keys(g)))
				continue
			}
			diffs = append(diffs, matchJSON(path+"."+k, wv, gv, subset)...)
		}
		if !subset {
			for k := range g {
				if _, ok := w[k]; !ok {
					diffs = append(diffs, fmt.Sprintf("%s: unexpected key %q", path, k))
				}
			}
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %d elements, got %v", path, len(w), got)}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, matchJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], subset)...)
		}
		return diffs
	case json.Number:
		g, ok := got.(json.Number)
		wf, _ := w.Float64()
		if gf, err := g.Float64(); !ok || err != nil || gf != wf {
			return []string{fmt.Sprintf("%s: want %s, got %v", path, w, got)}
		}
		return nil
	}
	if fmt.Sprint(want) != fmt.Sprint(got) || fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
		return []string{fmt.Sprintf("%s: want %#v, got %#v", path, want, got)}
	}
	return nil
}

func matchPlaceholder(path, placeholder string, got any) []string {
	switch placeholder {
	case "<string>":
		if _, ok := got.(string); ok {
			return nil
		}
	case "<ns>", "<ms>":
		if n, ok := got.(json.Number); ok {
			if v, err := strconv.ParseUint(n.String(), 10, 64); err == nil && (placeholder == "<ns>" || v > 0) {
				return nil
			}
		}
	}
	return []string{fmt.Sprintf("%s: want %s, got %#v", path, placeholder, got)}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// fp32LE is FP32 values as little-endian bytes, written out by hand.
func fp32LE(t *testing.T, hexBytes string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(hexBytes, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKServeWireMatchesProtocolFixtures(t *testing.T) {
	srv := startServer(t, goldenConfig, testmodels.Dir())
	get := func(path string) []byte {
		t.Helper()
		code, h, body := do(t, "GET", srv.URL+path, nil, nil)
		if code != 200 || h.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %q %s", path, code, h.Get("Content-Type"), body)
		}
		return body
	}

	matchFixture(t, "server_metadata.json", get("/v2"), false)
	matchFixture(t, "model_metadata.json", get("/v2/models/affine"), false)
	matchFixture(t, "model_metadata.json", get("/v2/models/affine/versions/1"), false)
	matchFixture(t, "model_config.json", get("/v2/models/affine/config"), true)

	// JSON tensors, as in the Open Inference Protocol's examples.
	code, h, body := do(t, "POST", srv.URL+"/v2/models/affine/infer", map[string]string{"Content-Type": "application/json"},
		fixture(t, "infer_json_request.json"))
	if code != 200 || h.Get("Inference-Header-Content-Length") != "" {
		t.Fatalf("JSON infer: %d %s", code, body)
	}
	matchFixture(t, "infer_json_response.json", body, false)

	// The binary-tensor extension: a JSON header of
	// Inference-Header-Content-Length bytes, then the raw input.
	header := fixture(t, "infer_binary_request.json")
	x := fp32LE(t, "0000803f 00000040 00004040 00008040 0000003f 000080bf 00000000 00002041") // 1 2 3 4 0.5 -1 0 10
	code, h, body = do(t, "POST", srv.URL+"/v2/models/affine/infer", map[string]string{
		"Content-Type":                    "application/octet-stream",
		"Inference-Header-Content-Length": strconv.Itoa(len(header)),
	}, append(append([]byte{}, header...), x...))
	if code != 200 {
		t.Fatalf("binary infer: %d %s", code, body)
	}
	n, err := strconv.Atoi(h.Get("Inference-Header-Content-Length"))
	if err != nil || n <= 0 || n > len(body) || h.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("binary infer: Inference-Header-Content-Length %q, Content-Type %q, body of %d bytes",
			h.Get("Inference-Header-Content-Length"), h.Get("Content-Type"), len(body))
	}
	matchFixture(t, "infer_binary_response.json", body[:n], false)
	y := fp32LE(t, "00004040 0000a040 0000e040 00001041 00000040 000080bf 0000803f 0000a841") // 3 5 7 9 2 -1 1 21
	if !bytes.Equal(body[n:], y) {
		t.Fatalf("binary output y = % x, want % x", body[n:], y)
	}

	// Two successful infers of two rows each, one batch each; the
	// registry's warm-up run is not counted.
	stats := get("/v2/models/affine/stats")
	matchFixture(t, "model_stats.json", stats, false)
	matchFixture(t, "model_stats.json", get("/v2/models/stats"), false) // lama is not loaded, so not listed

	code, _, body = do(t, "POST", srv.URL+"/v2/repository/index", nil, nil)
	if code != 200 {
		t.Fatalf("repository index: %d %s", code, body)
	}
	matchFixture(t, "repository_index.json", body, false)
	if !bytes.Contains(body, []byte("scripts/fetch-models.sh lama")) {
		t.Fatalf("the unavailable model's reason does not say how to fetch it: %s", body)
	}
	code, _, body = do(t, "POST", srv.URL+"/v2/repository/index", nil, []byte(`{"ready": true}`))
	if code != 200 || !bytes.Equal(bytes.TrimSpace(body), []byte(`[{"name":"affine","version":"1","state":"READY","reason":""}]`)) {
		t.Fatalf("ready-only index: %d %s", code, body)
	}

	for path, status := range map[string]int{
		"/v2/models/nope/config":              404,
		"/v2/models/nope/stats":               404,
		"/v2/models/affine/versions/2/config": 404,
		"/v2/models/lama/config":              503,
		"/v2/models/lama/stats":               503,
	} {
		code, _, body := do(t, "GET", srv.URL+path, nil, nil)
		if code != status {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, status)
			continue
		}
		matchFixture(t, "error.json", body, false)
	}
}

// Requests that ask for an extension the server does not serve get an
// error, not a silently different answer.
func TestKServeRefusesClassification(t *testing.T) {
	srv := startServer(t, goldenConfig, testmodels.Dir())
	body := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],
		"outputs":[{"name":"y","parameters":{"classification":2}}]}`
	code, _, resp := do(t, "POST", srv.URL+"/v2/models/affine/infer", nil, []byte(body))
	if code != 400 || !bytes.Contains(resp, []byte("classification")) {
		t.Fatalf("got %d %s, want 400 naming classification", code, resp)
	}
	matchFixture(t, "error.json", resp, false)
}
