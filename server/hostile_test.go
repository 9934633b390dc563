package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/server/admission"
)

// hostileConfig serves a sequence model (the CLIP text tower's signature,
// [B, T] INT64 with T dynamic), a generic one with a dynamic width, and
// LaMa.
const hostileConfig = `
models:
  - name: clip-vit-b32-text
    file: clip_text_synth.onnx
    task: clip-text
    outputs: [text_embeds]
    batching: {max_batch_size: 8, max_queue_delay: 1ms}
  - name: affine-dyn
    file: affine_dyn.onnx
    batching: {max_batch_size: 4}
  - name: lama
    file: lama_synth.onnx
    task: inpaint
  - name: clip-vit-b32
    file: clip_vision_synth.onnx
    task: clip-vision
    outputs: [image_embeds]
    options: {text_model: clip-vit-b32-text}
    batching: {max_batch_size: 8, max_queue_delay: 1ms}
`

// kserveJSON is an infer request whose data is given as raw JSON.
func kserveJSON(name, dtype string, shape []int64, data string) []byte {
	s, _ := json.Marshal(shape)
	return []byte(fmt.Sprintf(`{"inputs":[{"name":%q,"shape":%s,"datatype":%q,"data":%s}]}`, name, s, dtype, data))
}

// jsonOnes is a JSON array of n ones.
func jsonOnes(n int) string {
	var b strings.Builder
	b.Grow(2*n + 2)
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('1')
	}
	b.WriteByte(']')
	return b.String()
}

// The shapes that crashed or bloated the server before (issue 10): each
// gets a 400 at once, and the server's memory reservations are back to
// zero after.
func TestKServeHostileShapes(t *testing.T) {
	srv := startServer(t, hostileConfig, testmodels.Dir())
	text := srv.URL + "/v2/models/clip-vit-b32-text/infer"
	dyn := srv.URL + "/v2/models/affine-dyn/infer"
	for _, c := range []struct {
		name, url string
		body      []byte
		want      string
	}{
		{"[8,1000000] of 16 MB", text, kserveJSON("input_ids", "INT64", []int64{8, 1000000}, jsonOnes(8000000)), "exceeds the model's 77"},
		{"[1,1000000]", text, kserveJSON("input_ids", "INT64", []int64{1, 1000000}, jsonOnes(1000000)), "exceeds the model's 77"},
		{"[8,2^28] in 96 bytes", text, kserveJSON("input_ids", "INT64", []int64{8, 1 << 28}, "[1]"), "exceeds the model's 77"},
		{"[2,2^63-1]", dyn, kserveJSON("x", "FP32", []int64{2, 1<<63 - 1}, "[1]"), "larger than the model's input limit"},
		{"[4,2^62]", dyn, kserveJSON("x", "FP32", []int64{4, 1 << 62}, "[1]"), "larger than the model's input limit"},
		{"[1,2^24] declared, 1 given", dyn, kserveJSON("x", "FP32", []int64{1, 1 << 24}, "[1]"), "larger than the model's input limit"},
		{"[1,2^20] declared, 1 given", dyn, kserveJSON("x", "FP32", []int64{1, 1 << 20}, "[1]"), "data has 1 elements"},
		{"batch 9 of 8", text, kserveJSON("input_ids", "INT64", []int64{9, 4}, jsonOnes(36)), "batch dimension 9"},
		{"negative", dyn, kserveJSON("x", "FP32", []int64{1, -3}, "[1]"), "negative dimension"},
		{"control character in id", dyn, []byte(`{"id":"a\u0000b","inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1]}]}`), "control character"},
	} {
		code, _, body := do(t, "POST", c.url, map[string]string{"Content-Type": "application/json"}, c.body)
		if code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %.300s; want 400 saying %q", c.name, code, body, c.want)
		}
	}
	if st := srv.Server.Admission().Stats(); st.Reserved != 0 || st.InFlight != 0 {
		t.Fatalf("after the requests: %+v", st)
	}
	// Within the bounds the same routes serve.
	if code, _, body := do(t, "POST", text, nil, kserveJSON("input_ids", "INT64", []int64{2, 77}, jsonOnes(154))); code != 400 || !strings.Contains(string(body), "missing input") {
		t.Fatalf("[2,77] without its mask: %d %s", code, body)
	}
	if code, _, body := do(t, "POST", dyn, nil, kserveJSON("x", "FP32", []int64{2, 3}, jsonOnes(6))); code != 200 {
		t.Fatalf("[2,3]: %d %s", code, body)
	}
	var models struct {
		Models []modelInfo `json:"models"`
	}
	if err := json.Unmarshal(mustGet(t, srv.URL+"/v1/models"), &models); err != nil {
		t.Fatal(err)
	}
	for _, m := range models.Models {
		if m.Batching != nil && (m.Batching.MaxInputBytes < 32<<20 || m.Batching.MaxQueueWaitMs != 0) {
			t.Errorf("%s: batching %+v", m.Name, m.Batching)
		}
	}
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	code, _, body := do(t, "GET", url, nil, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

// Metric labels come from the configuration: naming 300 models that do
// not exist makes one series, not 300.
func TestUnknownModelsMakeOneSeries(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir())
	for i := range 300 {
		do(t, "POST", fmt.Sprintf("%s/v2/models/nope-%d/infer", srv.URL, i), nil, []byte(`{}`))
	}
	metrics := metricsText(t, srv.URL)
	if strings.Contains(metrics, "nope-") {
		t.Fatal("a model name from a URL became a label")
	}
	if v := metricValue(t, []byte(metrics), `imgserve_inference_request_failure_total{model="_unknown",reason="not_found"}`); v != 300 {
		t.Fatalf("unknown-model failures: %v", v)
	}
	if strings.Contains(srv.Logs.String(), "model=nope-") {
		t.Fatal("a model name from a URL reached the log")
	}
}

func TestControlCharactersInIDs(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir())
	vec := map[string]any{"vector": []float32{1, 0, 0}}
	for _, id := range []string{"a%00b", "a%0Ab", "tab%09"} {
		code, _, body := do(t, "PUT", srv.URL+"/v1/collections/c/items/"+id, jsonHeader, mustJSON(t, vec))
		if code != 400 || !strings.Contains(string(body), "control character") {
			t.Errorf("id %s: %d %s", id, code, body)
		}
	}
	if code, _, body := do(t, "PUT", srv.URL+"/v1/collections/c/items/ok-id", jsonHeader, mustJSON(t, vec)); code != 200 {
		t.Fatalf("a plain id: %d %s", code, body)
	}
	// A request id with a control character is replaced, not echoed.
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Request-Id: evil\x01id\r\n\r\n"))
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 4096)
	n, _ := conn.Read(buf)
	if bytes.Contains(buf[:n], []byte("evil")) {
		t.Fatalf("echoed a request id with a control character: %q", buf[:n])
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Work per request is bounded before it is done: boxes, a mask's size
// (read from its header), texts.
func TestWorkLimits(t *testing.T) {
	srv := startServer(t, hostileConfig, testmodels.Dir())
	img := encodePNG(t, image.NewNRGBA(image.Rect(0, 0, 64, 48)))

	boxes := make([][4]int, 257)
	for i := range boxes {
		boxes[i] = [4]int{0, 0, 1, 1}
	}
	body, ct := multipartBody(t, "image", img, map[string]string{"boxes": string(mustJSON(t, boxes))})
	code, _, resp := do(t, "POST", srv.URL+"/v1/remove-watermark", map[string]string{"Content-Type": ct}, body)
	if code != 400 || !strings.Contains(string(resp), "257 boxes; the limit is 256") {
		t.Errorf("257 boxes: %d %s", code, resp)
	}

	// 5000 boxes on a 40 MP PNG: refused before the image is decoded (it
	// ends after its header, so a decode would have answered 422).
	boxes = make([][4]int, 5000)
	for i := range boxes {
		boxes[i] = [4]int{0, 0, 8000, 5000}
	}
	body, ct = multipartBody(t, "image", pngPromise(8000, 5000), map[string]string{"boxes": string(mustJSON(t, boxes))})
	code, _, resp = do(t, "POST", srv.URL+"/v1/remove-watermark", map[string]string{"Content-Type": ct}, body)
	if code != 400 || !strings.Contains(string(resp), "5000 boxes; the limit is 256") {
		t.Errorf("5000 boxes on 40 MP: %d %s", code, resp)
	}

	// A mask of the wrong size is refused from its header: this one ends
	// there, so a decode would have answered 422.
	inpaintBody := mustJSON(t, map[string]string{"image": b64(img), "mask": b64(pngPromise(32, 32))})
	code, _, resp = do(t, "POST", srv.URL+"/v1/inpaint", jsonHeader, inpaintBody)
	if code != 400 || !strings.Contains(string(resp), "the mask is 32x32 but the image is 64x48") {
		t.Errorf("mask of another size: %d %s", code, resp)
	}

	long := strings.Repeat("word ", 4000)
	code, _, resp = do(t, "POST", srv.URL+"/v1/embeddings", jsonHeader, mustJSON(t, map[string]any{"model": "clip-vit-b32", "input": long}))
	if code != 400 || !strings.Contains(string(resp), "bytes; the limit is") {
		t.Errorf("a 20 KB text: %d %.200s", code, resp)
	}
}

// An image whose embedding has no direction gets the zero vector, not 500.
func TestEmbeddingsAreNever500ForAnImage(t *testing.T) {
	srv := startServer(t, hostileConfig, testmodels.Dir())
	for _, img := range []image.Image{image.NewNRGBA(image.Rect(0, 0, 8, 8)), image.NewGray(image.Rect(0, 0, 300, 1))} {
		code, _, resp := do(t, "POST", srv.URL+"/v1/embeddings?model=clip-vit-b32", map[string]string{"Content-Type": "image/png"}, encodePNG(t, img))
		if code != 200 {
			t.Errorf("%T: %d %s", img, code, resp)
		}
	}
}

func b64(b []byte) string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b)
}

// losslessWebP is a valid lossless WebP of w x h opaque black pixels in
// 30 bytes: every prefix code has a single symbol, so no pixel costs a
// bit (the WebP lossless bitstream specification, section 3).
func losslessWebP(w, h int) []byte {
	var bits []bool
	put := func(v uint32, n int) {
		for i := range n {
			bits = append(bits, v>>i&1 == 1)
		}
	}
	put(uint32(w-1), 14)
	put(uint32(h-1), 14)
	put(0, 1) // alpha_is_used
	put(0, 3) // version
	put(0, 1) // no transform
	put(0, 1) // no colour cache
	put(0, 1) // no meta prefix codes
	// The five prefix codes: green, red, blue, alpha, distance.
	for code := range 5 {
		put(1, 1) // a simple code
		put(0, 1) // of one symbol
		if code == 3 {
			put(1, 1) // an 8-bit symbol: alpha 255
			put(255, 8)
		} else {
			put(0, 1) // a 1-bit symbol: 0
			put(0, 1)
		}
	}
	data := []byte{0x2f} // the VP8L signature
	for i := 0; i < len(bits); i += 8 {
		var b byte
		for j := 0; j < 8 && i+j < len(bits); j++ {
			if bits[i+j] {
				b |= 1 << j
			}
		}
		data = append(data, b)
	}
	chunk := binary.LittleEndian.AppendUint32([]byte("VP8L"), uint32(len(data)))
	chunk = append(chunk, data...)
	if len(data)%2 == 1 {
		chunk = append(chunk, 0) // RIFF chunks are padded to even sizes
	}
	out := binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(4+len(chunk)))
	return append(append(out, "WEBP"...), chunk...)
}

// A 30-byte WebP that decodes to 40 MP: eight at once are refused from
// the header when one could never fit the memory budget (413, nothing
// decoded), and when one fits, it is decoded and answered while the
// others get 429 at once instead of decoding beside it. (Under the race
// detector, which decodes 40 MP in minutes, the second half uses 2.5 MP.)
func TestTinyWebPDecodingToManyPixels(t *testing.T) {
	const images = 8
	webp := losslessWebP(8000, 5000)
	if len(webp) != 30 {
		t.Fatalf("the WebP has %d bytes", len(webp))
	}
	post := func(srv *testServer, img []byte) (int, http.Header, string) {
		code, h, body := do(t, "POST", srv.URL+"/v1/embeddings?model=clip-vit-b32", map[string]string{"Content-Type": "image/webp"}, img)
		return code, h, string(body)
	}
	concurrently := func(srv *testServer, img []byte, check func(code int, h http.Header, body string)) {
		var wg sync.WaitGroup
		for range images - 1 {
			wg.Go(func() { check(post(srv, img)) })
		}
		wg.Wait()
	}
	cost := func(w, h int64) int64 { return int64(float64(4*w*h) * resizeCopies) }

	small := startServer(t, hostileConfig, testmodels.Dir(), func(o *Options) {
		o.Admission = admission.New(admission.Limits{MemoryBudget: cost(8000, 5000) - 1})
	})
	concurrently(small, webp, func(code int, _ http.Header, body string) {
		if code != 413 || !strings.Contains(body, "too_costly") {
			t.Errorf("40 MP over a budget it cannot fit: %d %.300s", code, body)
		}
	})
	if st := small.Server.Admission().Stats(); st.RefusedTooCostly != images-1 {
		t.Fatalf("refusals: %+v", st)
	}

	w, h := int64(8000), int64(5000)
	if raceEnabled {
		w, h = 2000, 1250
		webp = losslessWebP(int(w), int(h))
	}
	srv := startServer(t, hostileConfig, testmodels.Dir(), func(o *Options) {
		o.Admission = admission.New(admission.Limits{MemoryBudget: cost(w, h) * 3 / 2})
	})
	first := make(chan int, 1)
	go func() {
		code, _, body := post(srv, webp)
		if code != 200 {
			t.Errorf("the admitted image: %d %.300s", code, body)
		}
		first <- code
	}()
	waitUntil(t, "the first image to reserve its memory", func() bool { return srv.Server.Admission().Stats().Reserved >= cost(w, h) })
	concurrently(srv, webp, func(code int, hdr http.Header, body string) {
		if code != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(body, "busy") {
			t.Errorf("beside an image being decoded: %d %v %.300s", code, hdr, body)
		}
	})
	<-first
	if st := srv.Server.Admission().Stats(); st.Reserved != 0 || st.RefusedOverBudget != images-1 {
		t.Fatalf("admission after the requests: %+v", st)
	}
}

// sdWaitingForCompany is imagesConfig with a UNet queue of one request,
// which waits ten minutes for a second to batch with.
var sdWaitingForCompany = strings.Replace(imagesConfig, "batching: {max_batch_size: 2, max_queue_delay: 1m}",
	"batching: {max_batch_size: 2, max_queue_delay: 10m, max_queue_size: 1}", 1)

// A model whose queue is full refuses an upload before decoding it: the
// image here ends after its header, so a decode would have answered 422.
func TestFullQueueRefusesBeforeDecoding(t *testing.T) {
	if sdWaitingForCompany == imagesConfig {
		t.Fatal("the configuration did not change")
	}
	srv := startServer(t, sdWaitingForCompany, testmodels.Dir())
	m, _ := srv.Registry.Get("sd")
	sched := m.State().Scheduler
	// A generation that waits in the UNet's queue for company it will not
	// get.
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	gen := `{"model": "sd", "prompt": "a cat"}`
	fmt.Fprintf(conn, "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(gen), gen)
	waitUntil(t, "a full queue", func() bool { return sched.Pending() == 1 })

	edit := func() (int, http.Header, string) {
		ct, body := editForm(t, pngPromise(512, 512), nil, map[string]string{"model": "sd", "prompt": "a dog"})
		code, h, resp := do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": ct}, body)
		return code, h, string(resp)
	}
	if code, h, body := edit(); code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, "queue_full") {
		t.Fatalf("with a full queue: %d %v %s", code, h, body)
	}
	conn.Close() // its client gone, the waiting request leaves the queue
	waitUntil(t, "the queue to empty", func() bool { return sched.Pending() == 0 })
	if code, _, body := edit(); code != 422 {
		t.Fatalf("with room in the queue the image is decoded (and found truncated): %d %s", code, body)
	}
}
