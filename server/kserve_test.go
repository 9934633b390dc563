package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
)

const u2netpConfig = `
models:
  - name: u2netp
    file: u2netp.onnx
    batching: {max_batch_size: 1, instances: 2}
    intra_op_threads: 1
  - name: lama
    file: lama_fp32.onnx
`

// binaryInfer builds a request with Triton's binary-tensor extension.
func binaryInfer(t testing.TB, inputs []map[string]any, blobs [][]byte, params map[string]any) ([]byte, map[string]string) {
	t.Helper()
	req := map[string]any{"id": "req-7", "inputs": inputs}
	if params != nil {
		req["parameters"] = params
	}
	header, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	body := append([]byte(nil), header...)
	for _, b := range blobs {
		body = append(body, b...)
	}
	return body, map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(header)), "Content-Type": "application/octet-stream"}
}

// splitBinaryResponse parses a binary-extension response into its JSON
// header, as generic JSON (case-sensitive keys, unlike Go structs), and each
// output's raw bytes, in order.
func splitBinaryResponse(t testing.TB, h http.Header, body []byte) (map[string]any, [][]byte) {
	t.Helper()
	n, err := strconv.Atoi(h.Get("Inference-Header-Content-Length"))
	if err != nil {
		t.Fatalf("no Inference-Header-Content-Length in a binary response: %v", err)
	}
	var resp map[string]any
	if err := json.Unmarshal(body[:n], &resp); err != nil {
		t.Fatal(err)
	}
	rest := body[n:]
	var blobs [][]byte
	for _, o := range outputsOf(t, resp) {
		params, _ := o["parameters"].(map[string]any)
		size, ok := params["binary_data_size"].(float64)
		if !ok {
			t.Fatalf("output %v has no parameters.binary_data_size", o["name"])
		}
		blobs = append(blobs, rest[:int(size)])
		rest = rest[int(size):]
	}
	if len(rest) != 0 {
		t.Fatalf("%d trailing bytes", len(rest))
	}
	return resp, blobs
}

// outputsOf is a generic response's "outputs".
func outputsOf(t testing.TB, resp map[string]any) []map[string]any {
	t.Helper()
	list, ok := resp["outputs"].([]any)
	if !ok {
		t.Fatalf("response has no outputs: %v", resp)
	}
	out := make([]map[string]any, len(list))
	for i, o := range list {
		if out[i], ok = o.(map[string]any); !ok {
			t.Fatalf("output %d is not an object", i)
		}
	}
	return out
}

// shapeOf reads a generic tensor's "shape".
func shapeOf(o map[string]any) []int64 {
	var shape []int64
	list, _ := o["shape"].([]any)
	for _, d := range list {
		f, _ := d.(float64)
		shape = append(shape, int64(f))
	}
	return shape
}

func asBytes[T int32 | int64](v []T) []byte {
	var out []byte
	for _, x := range v {
		out, _ = binary.Append(out, binary.LittleEndian, x)
	}
	return out
}

func float32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
	}
	return out
}

func TestKServeServesRealU2netpLikeSessionRun(t *testing.T) {
	srv := startServer(t, u2netpConfig, realModelsDir())

	// A client that knows nothing of imgserve: plain HTTP, as Triton's
	// client libraries send.
	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/u2netp/ready", "/v2/models/u2netp/versions/1/ready"} {
		if code, _, body := do(t, "GET", srv.URL+path, nil, nil); code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
	}
	code, _, body := do(t, "GET", srv.URL+"/v2/models/u2netp", nil, nil)
	var meta map[string]any
	if err := json.Unmarshal(body, &meta); code != 200 || err != nil {
		t.Fatalf("metadata: %d %s %v", code, body, err)
	}
	metaInputs, _ := meta["inputs"].([]any)
	metaOutputs, _ := meta["outputs"].([]any)
	if len(metaInputs) != 1 || len(metaOutputs) != 7 {
		t.Fatalf("metadata %s", body)
	}
	if in, _ := metaInputs[0].(map[string]any); in["name"] != "input.1" || in["datatype"] != "FP32" ||
		!slices.Equal(shapeOf(in), []int64{1, 3, 320, 320}) {
		t.Fatalf("metadata %s", body)
	}

	// The same input through the server and straight through session.Run.
	x, names, want := u2netpDirect(t, 3)
	input := map[string]any{"name": "input.1", "shape": []int{1, 3, 320, 320}, "datatype": "FP32",
		"parameters": map[string]any{"binary_data_size": len(x) * 4}}
	reqBody, hdr := binaryInfer(t, []map[string]any{input}, [][]byte{float32Bytes(x)}, map[string]any{"binary_data_output": true})
	code, h, body := do(t, "POST", srv.URL+"/v2/models/u2netp/infer", hdr, reqBody)
	if code != 200 {
		t.Fatalf("binary infer: %d %s", code, body)
	}
	resp, blobs := splitBinaryResponse(t, h, body)
	outputs := outputsOf(t, resp)
	if resp["id"] != "req-7" || resp["model_name"] != "u2netp" || len(outputs) != 7 {
		t.Fatalf("response header %+v", resp)
	}
	for i, o := range outputs {
		if o["name"] != names[i] || !slices.Equal(shapeOf(o), want[i].Shape) {
			t.Fatalf("output %d: %v %v, want %s %v", i, o["name"], o["shape"], names[i], want[i].Shape)
		}
		if !bytes.Equal(blobs[i], want[i].Data) {
			t.Fatalf("output %v differs from a direct session.Run", o["name"])
		}
	}

	// The JSON form of the same request gives the same numbers.
	jsonReq, _ := json.Marshal(map[string]any{
		"inputs":  []map[string]any{{"name": "input.1", "shape": []int{1, 3, 320, 320}, "datatype": "FP32", "data": x}},
		"outputs": []map[string]any{{"name": outputs[0]["name"]}},
	})
	code, _, body = do(t, "POST", srv.URL+"/v2/models/u2netp/infer", map[string]string{"Content-Type": "application/json"}, jsonReq)
	if code != 200 {
		t.Fatalf("json infer: %d %.200s", code, body)
	}
	var jr struct {
		Outputs []struct {
			Name string    `json:"name"`
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &jr); err != nil || len(jr.Outputs) != 1 {
		t.Fatalf("json response: %v %.200s", err, body)
	}
	if got := float32Bytes(jr.Outputs[0].Data); !bytes.Equal(got, want[0].Data) {
		t.Fatal("JSON output differs from a direct session.Run")
	}
}

// u2netpDirect runs a random input straight through session.Run, to
// compare with what the server answers for it.
func u2netpDirect(t *testing.T, seed uint64) (x []float32, names []string, want []inference.Tensor) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	x = make([]float32, 3*320*320)
	for i := range x {
		x[i] = rng.Float32()*4 - 2
	}
	model, err := os.ReadFile(filepath.Join(realModelsDir(), "u2netp.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	// The graph the server runs: its Resize nodes take constant scales.
	model, _, _ = testRuntime.RewriteResizes(model, "")
	sess, err := testRuntime.NewSession(model, inference.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	want, err = sess.Run([]inference.Tensor{inference.NewTensor([]int64{1, 3, 320, 320}, x)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range sess.Outputs() {
		names = append(names, o.Name)
	}
	return x, names, want
}

func TestKServeRejectsBadRequests(t *testing.T) {
	srv := startServer(t, u2netpConfig, realModelsDir())
	infer := srv.URL + "/v2/models/u2netp/infer"
	json400 := map[string]string{"Content-Type": "application/json"}
	small := `{"inputs":[{"name":"input.1","shape":[1,3,320,320],"datatype":"FP32","data":[1,2,3]}]}`
	binaryOnly := `{"inputs":[{"name":"input.1","shape":[1,3,320,320],"datatype":"FP32","parameters":{"binary_data_size":1228800}}]}`
	cases := []struct {
		name   string
		url    string
		header map[string]string
		body   string
		status int
		want   string
	}{
		{"malformed JSON", infer, json400, `{"inputs":[{"name":`, 400, "malformed JSON"},
		{"not an object", infer, json400, `[1,2,3]`, 400, "malformed JSON"},
		{"no inputs", infer, json400, `{"inputs":[]}`, 400, "no inputs"},
		{"wrong shape", infer, json400, `{"inputs":[{"name":"input.1","shape":[1,3,32,32],"datatype":"FP32","data":[1]}]}`, 400, "does not match"},
		{"wrong rank", infer, json400, `{"inputs":[{"name":"input.1","shape":[3,320,320],"datatype":"FP32","data":[1]}]}`, 400, "rank"},
		{"data not matching shape", infer, json400, small, 400, "3 elements"},
		{"wrong datatype", infer, json400, `{"inputs":[{"name":"input.1","shape":[1,3,320,320],"datatype":"INT64","data":[1]}]}`, 400, "datatype"},
		{"unknown datatype", infer, json400, `{"inputs":[{"name":"input.1","shape":[1,3,320,320],"datatype":"FP33","data":[1]}]}`, 400, "unsupported datatype"},
		{"unknown input", infer, json400, `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`, 400, "unknown input"},
		{"non-numeric data", infer, json400, strings.Replace(small, "[1,2,3]", `["a"]`, 1), 400, "not a number"},
		{"binary size beyond body", infer, map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(binaryOnly))},
			binaryOnly, 400, "binary_data_size"},
		{"header length beyond body", infer, map[string]string{"Inference-Header-Content-Length": "99999"}, `{}`, 400, "exceeds the body"},
		{"unknown model", srv.URL + "/v2/models/nope/infer", json400, small, 404, "unknown model"},
		{"unknown model metadata", srv.URL + "/v2/models/nope", nil, "", 404, "unknown model"},
		{"unavailable model", srv.URL + "/v2/models/lama/infer", json400, small, 503, "fetch-models.sh lama"},
		{"unknown version", srv.URL + "/v2/models/u2netp/versions/2/infer", json400, small, 404, "only version 1"},
		{"unknown route", srv.URL + "/v2/nothing", nil, "", 404, "no such route"},
		{"wrong method", infer, nil, "", 405, "method not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := "POST"
			if c.body == "" {
				method = "GET"
			}
			code, h, body := do(t, method, c.url, c.header, []byte(c.body))
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body is not KServe JSON: %s", body)
			}
			if code != c.status || !strings.Contains(e.Error, c.want) {
				t.Fatalf("got %d %q, want %d containing %q", code, e.Error, c.status, c.want)
			}
			if h.Get("Content-Type") != "application/json" {
				t.Fatalf("content type %q", h.Get("Content-Type"))
			}
		})
	}
	// The server is still serving after all of that.
	if code, _, _ := do(t, "GET", srv.URL+"/v2/health/ready", nil, nil); code != 200 {
		t.Fatalf("not ready after bad requests: %d", code)
	}
}

const dtypesConfig = `
models:
  - name: dtypes
    file: dtypes.onnx
    batching: {max_batch_size: 4}
`

func TestKServeDatatypes(t *testing.T) {
	srv := startServer(t, dtypesConfig, testmodels.Dir())
	// dtypes.onnx: f32+1, f16*2, i64+7, i32-3, u8+1, not(b), each [batch,3].
	jsonReq := `{"inputs":[
		{"name":"f32","shape":[1,3],"datatype":"FP32","data":[[1.5,-2,0.25]]},
		{"name":"f16","shape":[1,3],"datatype":"FP16","data":[1.5,-2,0.25]},
		{"name":"i64","shape":[1,3],"datatype":"INT64","data":[-9000000000,0,5]},
		{"name":"i32","shape":[1,3],"datatype":"INT32","data":[-5,0,2147483647]},
		{"name":"u8","shape":[1,3],"datatype":"UINT8","data":[0,200,255]},
		{"name":"b","shape":[1,3],"datatype":"BOOL","data":[true,false,true]}]}`
	want := map[string]string{
		"f32_out": "[2.5,-1,1.25]", "f16_out": "[3,-4,0.5]", "i64_out": "[-8999999993,7,12]",
		"i32_out": "[-8,-3,2147483644]", "u8_out": "[1,201,0]", "b_out": "[false,true,false]",
	}
	code, _, body := do(t, "POST", srv.URL+"/v2/models/dtypes/infer", nil, []byte(jsonReq))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var resp map[string]any
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	for _, o := range outputsOf(t, resp) {
		name, _ := o["name"].(string)
		if got, _ := json.Marshal(o["data"]); string(got) != want[name] {
			t.Errorf("%s = %s, want %s", name, got, want[name])
		}
	}

	// The binary form: each input as raw little-endian bytes.
	raw := map[string][]byte{
		"f32": float32Bytes([]float32{1.5, -2, 0.25}),
		"f16": {0x00, 0x3e, 0x00, 0xc0, 0x00, 0x34}, // 1.5, -2, 0.25
		"i64": asBytes([]int64{-9000000000, 0, 5}),
		"i32": asBytes([]int32{-5, 0, 2147483647}),
		"u8":  {0, 200, 255},
		"b":   {1, 0, 1},
	}
	dtypes := map[string]string{"f32": "FP32", "f16": "FP16", "i64": "INT64", "i32": "INT32", "u8": "UINT8", "b": "BOOL"}
	var inputs []map[string]any
	var blobs [][]byte
	for _, name := range []string{"f32", "f16", "i64", "i32", "u8", "b"} {
		inputs = append(inputs, map[string]any{"name": name, "shape": []int{1, 3}, "datatype": dtypes[name],
			"parameters": map[string]any{"binary_data_size": len(raw[name])}})
		blobs = append(blobs, raw[name])
	}
	reqBody, hdr := binaryInfer(t, inputs, blobs, map[string]any{"binary_data_output": true})
	code, h, body2 := do(t, "POST", srv.URL+"/v2/models/dtypes/infer", hdr, reqBody)
	if code != 200 {
		t.Fatalf("%d %s", code, body2)
	}
	bresp, bblobs := splitBinaryResponse(t, h, body2)
	for i, o := range outputsOf(t, bresp) {
		name, _ := o["name"].(string)
		if !bytes.Equal(bblobs[i], dtypesOutputBytes[name]) || o["datatype"] != dtypesOutputTypes[name] {
			t.Errorf("binary %s = %v % x, want %s % x", name, o["datatype"], bblobs[i], dtypesOutputTypes[name], dtypesOutputBytes[name])
		}
	}
}

// dtypesOutputBytes are dtypes.onnx's outputs for the inputs above, as
// little-endian bytes written out by hand.
var dtypesOutputBytes = map[string][]byte{
	"f32_out": float32Bytes([]float32{2.5, -1, 1.25}),
	"f16_out": {0x00, 0x42, 0x00, 0xc4, 0x00, 0x38}, // 3, -4, 0.5
	"i64_out": asBytes([]int64{-8999999993, 7, 12}),
	"i32_out": asBytes([]int32{-8, -3, 2147483644}),
	"u8_out":  {1, 201, 0},
	"b_out":   {0, 1, 0},
}

var dtypesOutputTypes = map[string]string{"f32_out": "FP32", "f16_out": "FP16", "i64_out": "INT64",
	"i32_out": "INT32", "u8_out": "UINT8", "b_out": "BOOL"}

const affineConfig = `
models:
  - name: affine
    file: slow_affine.onnx
    batching: {max_batch_size: 8, max_queue_delay: 20ms, max_queue_size: 64, instances: 1}
  - name: tight
    file: slow_affine.onnx
    batching: {max_batch_size: 1, max_queue_size: 1, instances: 1}
`

func affineRequest(id int) []byte {
	body, _ := json.Marshal(map[string]any{"id": strconv.Itoa(id), "inputs": []map[string]any{{
		"name": "x", "shape": []int{1, 4}, "datatype": "FP32", "data": []float32{float32(id), 1, 2, 3},
	}}})
	return body
}

func TestKServeConcurrentRequestsShareBatches(t *testing.T) {
	srv := startServer(t, affineConfig, testmodels.Dir())
	var wg sync.WaitGroup
	for id := 0; id < 32; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, body := do(t, "POST", srv.URL+"/v2/models/affine/infer", nil, affineRequest(id))
			var resp struct {
				ID      string `json:"id"`
				Outputs []struct {
					Name string    `json:"name"`
					Data []float32 `json:"data"`
				} `json:"outputs"`
			}
			if code != 200 || json.Unmarshal(body, &resp) != nil {
				t.Errorf("request %d: %d %s", id, code, body)
				return
			}
			// y = 2x+1: each caller gets its own row back.
			if resp.ID != strconv.Itoa(id) || resp.Outputs[0].Data[0] != float32(2*id+1) {
				t.Errorf("request %d got %+v", id, resp)
			}
		}()
	}
	wg.Wait()
	_, _, metrics := do(t, "GET", srv.URL+"/metrics", nil, nil)
	count := metricValue(t, metrics, `imgserve_inference_batch_size_count{model="affine"}`)
	sum := metricValue(t, metrics, `imgserve_inference_batch_size_sum{model="affine"}`)
	// 33 rows with the warm-up; fewer batches than rows means they were shared.
	if sum != 33 || count >= sum {
		t.Fatalf("%v rows in %v batches: requests were not batched", sum, count)
	}
	for _, series := range []string{"imgserve_inference_request_success_total", "imgserve_inference_queue_duration_seconds_bucket",
		"imgserve_inference_compute_duration_seconds_bucket", "imgserve_inference_pending_requests", "imgserve_http_requests_total"} {
		if !bytes.Contains(metrics, []byte(series)) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

func metricValue(t *testing.T, metrics []byte, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in /metrics", series)
	return 0
}

func TestKServeFullQueueAnswers429(t *testing.T) {
	srv := startServer(t, affineConfig, testmodels.Dir())
	var mu sync.Mutex
	codes := map[int]int{}
	retryAfter := ""
	var wg sync.WaitGroup
	for id := 0; id < 40; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, h, _ := do(t, "POST", srv.URL+"/v2/models/tight/infer", nil, affineRequest(id))
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code == 429 {
				retryAfter = h.Get("Retry-After")
			}
		}()
	}
	wg.Wait()
	if codes[429] == 0 || codes[200] == 0 || codes[429]+codes[200] != 40 {
		t.Fatalf("status counts %v: want some 200s and some 429s only", codes)
	}
	if retryAfter == "" {
		t.Fatal("429 without Retry-After")
	}
}

func TestKServeDeadlineAnswers504(t *testing.T) {
	srv := startServer(t, affineConfig, testmodels.Dir())
	body, _ := json.Marshal(map[string]any{"parameters": map[string]any{"timeout": 1}, "inputs": []map[string]any{{
		"name": "x", "shape": []int{1, 4}, "datatype": "FP32", "data": []float32{1, 2, 3, 4},
	}}})
	if code, _, b := do(t, "POST", srv.URL+"/v2/models/affine/infer", nil, body); code != 504 {
		t.Fatalf("got %d %s, want 504", code, b)
	}
}

func TestBodyLimitAnswers413(t *testing.T) {
	srv := startServer(t, affineConfig, testmodels.Dir(), func(o *Options) { o.MaxBodySize = 4096 })
	big := bytes.Repeat([]byte("1"), 8192)
	code, _, body := do(t, "POST", srv.URL+"/v2/models/affine/infer", nil, big)
	if code != 413 || !bytes.Contains(body, []byte("too large")) {
		t.Fatalf("got %d %s, want 413", code, body)
	}
	// A small gzip body that inflates past the limit is refused too.
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	zw.Write(bytes.Repeat([]byte(" "), 1<<20))
	zw.Close()
	code, _, body = do(t, "POST", srv.URL+"/v2/models/affine/infer", map[string]string{"Content-Encoding": "gzip"}, zbuf.Bytes())
	if code != 413 {
		t.Fatalf("gzip bomb: got %d %s, want 413", code, body)
	}
}

func TestCompressionBothWays(t *testing.T) {
	srv := startServer(t, affineConfig, testmodels.Dir())
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	zw.Write(affineRequest(5))
	zw.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v2/models/affine/infer", &zbuf)
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Accept-Encoding", "gzip") // so Go's client does not inflate for us
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	// Small bodies go uncompressed; /metrics is large text and is gzipped.
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Contains(raw, []byte(`"data":[11,3,5,7]`)) {
		t.Fatalf("small response: encoding %q body %s", resp.Header.Get("Content-Encoding"), raw)
	}
	req, _ = http.NewRequest("GET", srv.URL+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("metrics not compressed: %q", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(zr)
	if !bytes.Contains(text, []byte("imgserve_http_requests_total")) {
		t.Fatal("inflated metrics lack the request counter")
	}
}

func TestModelsListShowsStatusAndBatching(t *testing.T) {
	srv := startServer(t, u2netpConfig, realModelsDir())
	code, _, body := do(t, "GET", srv.URL+"/v1/models", nil, nil)
	var list struct {
		Models []modelInfo `json:"models"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.Models) != 2 {
		t.Fatalf("%d %s %v", code, body, err)
	}
	u, lama := list.Models[0], list.Models[1]
	if u.Status != "ready" || u.Batching == nil || u.Batching.Instances != 2 || u.Inputs[0].Name != "input.1" {
		t.Fatalf("u2netp: %+v", u)
	}
	if lama.Status != "unavailable" || !strings.Contains(lama.Reason, "scripts/fetch-models.sh lama") {
		t.Fatalf("lama: %+v", lama)
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	srv := startServer(t, u2netpConfig, realModelsDir())
	x := make([]float32, 3*320*320)
	input := map[string]any{"name": "input.1", "shape": []int{1, 3, 320, 320}, "datatype": "FP32",
		"parameters": map[string]any{"binary_data_size": len(x) * 4}}
	reqBody, hdr := binaryInfer(t, []map[string]any{input}, [][]byte{float32Bytes(x)}, map[string]any{"binary_data_output": true})

	// Four real u2netp runs on two instances keep the server busy a while.
	const inFlight = 4
	results := make(chan int, inFlight)
	for i := 0; i < inFlight; i++ {
		go func() {
			code, _, _ := do(t, "POST", srv.URL+"/v2/models/u2netp/infer", hdr, reqBody)
			results <- code
		}()
	}
	// Admitted, not merely arrived: a request that has not yet passed the
	// draining check when Shutdown begins is rightly refused.
	waitUntil(t, "requests admitted", func() bool { return len(srv.Server.InFlight()) >= inFlight })
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutdown <- srv.Server.Shutdown(ctx)
	}()
	for !srv.Server.Draining() {
		time.Sleep(time.Millisecond)
	}
	// New work is refused while the old finishes.
	code, h, body := do(t, "POST", srv.URL+"/v2/models/u2netp/infer", hdr, reqBody)
	if code != 503 || !strings.Contains(string(body), "shutting down") || h.Get("Retry-After") == "" {
		t.Fatalf("request while draining: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/v2/health/ready", nil, nil); code != 503 {
		t.Fatalf("ready while draining: %d", code)
	}
	for i := 0; i < inFlight; i++ {
		if code := <-results; code != 200 {
			t.Fatalf("in-flight request finished with %d", code)
		}
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
