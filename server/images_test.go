package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"mime/multipart"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/server/admission"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// imagesConfig serves the synthetic Stable Diffusion models
// (internal/testmodels/README.md) as "sd". The UNet batches up to 8 rows
// and waits up to a minute for company, so concurrent requests share a
// batch deterministically; "sd-solo" runs alone for everything else.
var imagesConfig = fmt.Sprintf(`
models:
  - name: sd
    file: %[1]s
    task: diffusion-unet
    intra_op_threads: 1
    batching: {max_batch_size: 2, max_queue_delay: 1m}
    options: {text_encoder: sd-text, vae_decoder: sd-vae-dec, vae_encoder: sd-vae-enc, safety_checker: sd-safety}
  - name: sd-solo
    file: %[1]s
    task: diffusion-unet
    intra_op_threads: 1
    batching: {max_batch_size: 8, max_queue_delay: 1ms}
    options: {text_encoder: sd-text, vae_decoder: sd-vae-dec, vae_encoder: sd-vae-enc, safety_checker: sd-safety, max_steps: "8"}
  - name: sd-text
    file: %[2]s
    task: diffusion-text-encoder
    intra_op_threads: 1
    batching: {max_batch_size: 4, max_queue_delay: 1ms}
  - name: sd-vae-dec
    file: %[3]s
    task: diffusion-vae-decoder
    intra_op_threads: 1
    batching: {max_batch_size: 8, max_queue_delay: 1ms}
  - {name: sd-vae-enc, file: %[4]s, task: diffusion-vae-encoder, intra_op_threads: 1}
  - {name: sd-safety, file: %[5]s, task: diffusion-safety-checker, intra_op_threads: 1}
`, testmodels.SDUNetSynth, testmodels.SDTextEncoderSynth, testmodels.SDVAEDecoderSynth, testmodels.SDVAEEncoderSynth, testmodels.SDSafetyCheckerSynth)

type imagesReply struct {
	Created int64 `json:"created"`
	Data    []struct {
		B64JSON string `json:"b64_json"`
		Index   int    `json:"index"`
		Seed    uint32 `json:"seed"`
	} `json:"data"`
	Withheld []struct {
		Index int    `json:"index"`
		Seed  uint32 `json:"seed"`
		Code  string `json:"code"`
	} `json:"withheld"`
	Model        string `json:"model"`
	Size         string `json:"size"`
	OutputFormat string `json:"output_format"`
	Steps        int    `json:"steps"`
}

func postJSON(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	code, _, resp := do(t, "POST", url, map[string]string{"Content-Type": "application/json"}, b)
	return code, resp
}

func generateOK(t *testing.T, srv *testServer, body map[string]any) imagesReply {
	t.Helper()
	code, resp := postJSON(t, srv.URL+"/v1/images/generations", body)
	if code != http.StatusOK {
		t.Fatalf("%v: %d %s", body, code, resp)
	}
	var r imagesReply
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// decodeB64 decodes a returned image, PNG or JPEG.
func decodeB64(t *testing.T, s string) image.Image {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// cornerRed is what the synthetic safety checker flags above 0.5: the mean
// red of the top-left 8x8 block, in [0, 1].
func cornerRed(img image.Image) float64 {
	var sum float64
	for y := range 8 {
		for x := range 8 {
			r, _, _, _ := img.At(x, y).RGBA()
			sum += float64(r>>8) / 255
		}
	}
	return sum / 64
}

// metric reads one sample of the server's Prometheus text.
func metric(t *testing.T, srv *testServer, name string, labels string) float64 {
	t.Helper()
	_, _, body := do(t, "GET", srv.URL+"/metrics", nil, nil)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+"{"+labels+"}") + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestImagesGenerations(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir())
	for _, c := range []struct {
		size string
		w, h int
	}{{"512x512", 512, 512}, {"768x512", 768, 512}, {"", 512, 512}, {"auto", 512, 512}} {
		r := generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a cat", "size": c.size, "seed": 3, "response_format": "b64_json"})
		if len(r.Data) != 1 || r.Model != "sd-solo" || r.OutputFormat != "png" || r.Steps != 1 || r.Data[0].Seed != 3 {
			t.Fatalf("size %q: %+v", c.size, r)
		}
		img := decodeB64(t, r.Data[0].B64JSON)
		if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h || r.Size != fmt.Sprintf("%dx%d", c.w, c.h) {
			t.Errorf("size %q: got %v, reported %s", c.size, b, r.Size)
		}
	}
	// JPEG output.
	r := generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a cat", "output_format": "jpeg", "output_compression": 80})
	data, _ := base64.StdEncoding.DecodeString(r.Data[0].B64JSON)
	if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil || r.OutputFormat != "jpeg" {
		t.Errorf("jpeg output: %v, %s", err, r.OutputFormat)
	}
}

func TestImagesSeeds(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir())
	body := map[string]any{"model": "sd-solo", "prompt": "a green cat", "seed": 1234, "n": 2, "steps": 2}
	a, b := generateOK(t, srv, body), generateOK(t, srv, body)
	body["seed"] = 1235
	c := generateOK(t, srv, body)
	for i := range 2 {
		if a.Data[i].B64JSON != b.Data[i].B64JSON {
			t.Errorf("image %d: the same seed gave different bytes", i)
		}
	}
	if a.Data[0].B64JSON == c.Data[0].B64JSON {
		t.Error("a different seed gave the same image")
	}
	if a.Data[1].B64JSON != c.Data[0].B64JSON || a.Data[1].Seed != 1235 {
		t.Error("image 1 of seed 1234 should be image 0 of seed 1235")
	}
	// No seed: one is drawn and reported.
	d := generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a green cat", "n": 2})
	if d.Data[1].Seed != d.Data[0].Seed+1 {
		t.Errorf("drawn seeds %d, %d", d.Data[0].Seed, d.Data[1].Seed)
	}
}

func TestImagesBatchOfN(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir())
	execs := func() (float64, float64) {
		return metric(t, srv, "imgserve_inference_exec_total", `model="sd-solo"`),
			metric(t, srv, "imgserve_inference_batch_size_sum", `model="sd-solo"`)
	}
	e0, s0 := execs()
	generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a cat", "n": 4, "size": "256x256"})
	e1, s1 := execs()
	if e1-e0 != 1 || s1-s0 != 4 {
		t.Errorf("n=4, one step: %v UNet runs of %v rows in all, want 1 of 4", e1-e0, s1-s0)
	}
	if b := metric(t, srv, "imgserve_inference_batch_size_bucket", `model="sd-solo",le="3"`); b != metric(t, srv, "imgserve_inference_batch_size_bucket", `model="sd-solo",le="4"`)-1 {
		t.Errorf("the batch-size histogram does not show one batch of 4")
	}
	// With guidance the negative prompt's rows join: one run of 8.
	generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a cat", "n": 4, "size": "256x256", "guidance_scale": 4, "negative_prompt": "blurry"})
	e2, s2 := execs()
	if e2-e1 != 1 || s2-s1 != 8 {
		t.Errorf("n=4 with guidance: %v UNet runs of %v rows, want 1 of 8", e2-e1, s2-s1)
	}
}

func TestImagesConcurrentRequestsShareABatch(t *testing.T) {
	// "sd" batches 2 rows and waits a minute for the second: two
	// concurrent requests of one size and step meet in one UNet run.
	srv := startServer(t, imagesConfig, testmodels.Dir())
	e0 := metric(t, srv, "imgserve_inference_exec_total", `model="sd"`)
	var wg sync.WaitGroup
	replies := make([]imagesReply, 2)
	for i := range 2 {
		wg.Go(func() {
			code, resp := postJSON(t, srv.URL+"/v1/images/generations", map[string]any{"model": "sd", "prompt": "a cat", "seed": 10 + i, "size": "256x256"})
			if code != http.StatusOK || json.Unmarshal(resp, &replies[i]) != nil || len(replies[i].Data) != 1 {
				t.Errorf("request %d: %d %s", i, code, resp)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if e := metric(t, srv, "imgserve_inference_exec_total", `model="sd"`) - e0; e != 1 {
		t.Errorf("two concurrent requests took %v UNet runs, want 1", e)
	}
	// Batched or alone, the images are the same.
	for i, r := range replies {
		alone := generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a cat", "seed": 10 + i, "size": "256x256"})
		if alone.Data[0].B64JSON != r.Data[0].B64JSON {
			t.Errorf("request %d: batched image differs from the image made alone", i)
		}
	}
}

// editForm builds a multipart edit request.
func editForm(t *testing.T, img, mask []byte, fields map[string]string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for name, data := range map[string][]byte{"image": img, "mask": mask} {
		if data == nil {
			continue
		}
		fw, err := mw.CreateFormFile(name, name+".png")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func pngBytes(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{byte(20 + 120*x/w), byte(30 + 150*y/h), 100, 255})
		}
	}
	return img
}

func TestImagesEdits(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir())
	src := gradient(320, 256)
	ct, body := editForm(t, pngBytes(t, src), nil, map[string]string{"model": "sd-solo", "prompt": "a cat", "strength": "0.5", "steps": "2", "seed": "5"})
	code, _, resp := do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": ct}, body)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, resp)
	}
	var r imagesReply
	json.Unmarshal(resp, &r)
	if r.Steps != 1 || r.Size != "320x256" {
		t.Errorf("strength 0.5 of 2 steps: %d steps at %s", r.Steps, r.Size)
	}

	// With a mask (OpenAI's: transparent = edit), pixels outside it come
	// back unchanged.
	mask := image.NewNRGBA(src.Rect)
	for y := range 256 {
		for x := range 320 {
			a := byte(255)
			if x >= 100 && x < 200 && y >= 50 && y < 150 {
				a = 0
			}
			mask.SetNRGBA(x, y, color.NRGBA{0, 0, 0, a})
		}
	}
	ct, body = editForm(t, pngBytes(t, src), pngBytes(t, mask), map[string]string{"model": "sd-solo", "prompt": "a cat", "seed": "5"})
	code, _, resp = do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": ct}, body)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, resp)
	}
	json.Unmarshal(resp, &r)
	out := decodeB64(t, r.Data[0].B64JSON).(*image.NRGBA)
	changed := 0
	for y := range 256 {
		for x := range 320 {
			o, s := out.NRGBAAt(x, y), src.NRGBAAt(x, y)
			inside := x >= 100 && x < 200 && y >= 50 && y < 150
			if !inside && o != s {
				t.Fatalf("(%d,%d) outside the mask changed: %v -> %v", x, y, s, o)
			}
			if inside && o != s {
				changed++
			}
		}
	}
	if changed < 5000 {
		t.Errorf("only %d of 10000 masked pixels changed", changed)
	}
}

// sseEvents reads a Server-Sent Events body into (event, data) pairs.
func sseEvents(t *testing.T, body []byte) (events []string, data []map[string]any, done bool) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 64<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case line == "data: [DONE]":
			done = true
		case strings.HasPrefix(line, "data: "):
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m); err != nil {
				t.Fatalf("bad event data %q: %v", line, err)
			}
			if m["type"] != event && event != "error" {
				t.Errorf("event %s carries type %v", event, m["type"])
			}
			events, data = append(events, event), append(data, m)
		}
	}
	return events, data, done
}

func TestImagesStream(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir())
	code, h, body := do(t, "POST", srv.URL+"/v1/images/generations", map[string]string{"Content-Type": "application/json"},
		[]byte(`{"model": "sd-solo", "prompt": "a cat", "n": 2, "steps": 3, "stream": true, "seed": 8}`))
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %s", code, h.Get("Content-Type"))
	}
	events, data, done := sseEvents(t, body)
	want := []string{"image_generation.progress", "image_generation.progress", "image_generation.progress",
		"image_generation.completed", "image_generation.completed"}
	if !slices.Equal(events, want) || !done {
		t.Fatalf("events %v (done %v), want %v", events, done, want)
	}
	for i := range 3 {
		if data[i]["step"] != float64(i+1) || data[i]["steps"] != float64(3) || data[i]["b64_json"] != nil {
			t.Errorf("progress %d: %v", i, data[i])
		}
	}
	plain := generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a cat", "n": 2, "steps": 3, "seed": 8})
	for i := range 2 {
		if data[3+i]["b64_json"] != plain.Data[i].B64JSON || data[3+i]["index"] != float64(i) {
			t.Errorf("streamed image %d differs from the JSON route's", i)
		}
	}
	// A bad request is refused before the stream starts, as JSON.
	code, _, body = do(t, "POST", srv.URL+"/v1/images/generations", map[string]string{"Content-Type": "application/json"},
		[]byte(`{"model": "sd-solo", "prompt": "a cat", "steps": 99, "stream": true}`))
	if code != 400 || !strings.Contains(string(body), "steps must be") {
		t.Errorf("bad streamed request: %d %s", code, body)
	}
}

// Image generation passes the one admission path: a request reserves the
// memory of the images it will make before any model runs, so one that
// could never fit is refused with 413 (a stream too, before it starts),
// and its UNet's load is checked before its uploads are decoded.
func TestImagesReserveFromTheMemoryBudget(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir(), func(o *Options) {
		o.Admission = admission.New(admission.Limits{MemoryBudget: 8 << 20})
	})
	unetRuns := func() float64 {
		return metric(t, srv, "imgserve_inference_request_success_total", `model="sd-solo"`)
	}
	for _, stream := range []bool{false, true} {
		// Four 512x512 images hold some 32 MiB at their peak.
		code, body := postJSON(t, srv.URL+"/v1/images/generations", map[string]any{
			"model": "sd-solo", "prompt": "a cat", "n": 4, "size": "512x512", "stream": stream})
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "too_costly") {
			t.Errorf("stream %v: %d %.300s, want 413 too_costly", stream, code, body)
		}
	}
	if n := unetRuns(); n != 0 {
		t.Fatalf("the UNet ran %v times for refused requests", n)
	}
	if st := srv.Server.Admission().Stats(); st.Reserved != 0 || st.RefusedTooCostly != 2 {
		t.Fatalf("admission after the refusals: %+v", st)
	}
	generateOK(t, srv, map[string]any{"model": "sd-solo", "prompt": "a cat", "size": "64x64"})
	if n := unetRuns(); n != 1 {
		t.Fatalf("UNet runs for one 64x64 image: %v", n)
	}
}

// TestImagesFlaggedNeverLeave: with the synthetic safety checker, flagged
// images come out of no route in no format. "red red red red" makes every
// image flagged, "red red" some of them (internal/testmodels/README.md).
func TestImagesFlaggedNeverLeave(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir())
	gen := srv.URL + "/v1/images/generations"
	edits := srv.URL + "/v1/images/edits"
	jsonCT := map[string]string{"Content-Type": "application/json"}

	// Every image flagged: JSON routes answer 400 content_filtered with no
	// image; streams say withheld for each.
	for _, format := range []string{"png", "jpeg"} {
		code, resp := postJSON(t, gen, map[string]any{"model": "sd-solo", "prompt": "red red red red", "n": 3, "output_format": format})
		if code != 400 || !strings.Contains(string(resp), `"content_filtered"`) || strings.Contains(string(resp), "b64_json") {
			t.Errorf("%s, all flagged: %d %s", format, code, resp)
		}
		src := gradient(128, 128)
		for _, mask := range [][]byte{nil, pngBytes(t, image.NewNRGBA(src.Rect))} {
			ct, body := editForm(t, pngBytes(t, src), mask, map[string]string{"model": "sd-solo", "prompt": "red red red red", "output_format": format})
			code, _, resp := do(t, "POST", edits, map[string]string{"Content-Type": ct}, body)
			if code != 400 || strings.Contains(string(resp), "b64_json") {
				t.Errorf("edit (mask %v), all flagged, %s: %d %s", mask != nil, format, code, resp)
			}
		}
	}
	_, _, body := do(t, "POST", gen, jsonCT, []byte(`{"model": "sd-solo", "prompt": "red red red red", "n": 2, "stream": true}`))
	events, data, _ := sseEvents(t, body)
	if !slices.Equal(events, []string{"image_generation.progress", "image_generation.withheld", "image_generation.withheld"}) ||
		bytes.Contains(body, []byte("b64_json")) {
		t.Errorf("stream, all flagged: %v", events)
	}
	for _, d := range data[1:] {
		if d["code"] != "content_filtered" {
			t.Errorf("withheld event %v", d)
		}
	}
	ct, ebody := editForm(t, pngBytes(t, gradient(128, 128)), nil, map[string]string{"model": "sd-solo", "prompt": "red red red red", "stream": "true"})
	_, _, body = do(t, "POST", edits, map[string]string{"Content-Type": ct}, ebody)
	if events, _, _ := sseEvents(t, body); !slices.Equal(events, []string{"image_edit.progress", "image_edit.withheld"}) || bytes.Contains(body, []byte("b64_json")) {
		t.Errorf("edit stream, all flagged: %v", events)
	}

	// Some flagged: the JSON route and the stream withhold the same images,
	// and every image that comes back passes the check.
	req := map[string]any{"model": "sd-solo", "prompt": "red red", "n": 8, "seed": 100, "size": "128x128"}
	for _, format := range []string{"png", "jpeg"} {
		req["output_format"] = format
		r := generateOK(t, srv, req)
		if len(r.Withheld) == 0 || len(r.Data) == 0 || len(r.Withheld)+len(r.Data) != 8 {
			t.Fatalf("%s: %d returned, %d withheld; want some of each", format, len(r.Data), len(r.Withheld))
		}
		for _, d := range r.Data {
			// PNG is exact; JPEG moves the corner by a little.
			if red := cornerRed(decodeB64(t, d.B64JSON)); red > 0.5+map[string]float64{"png": 0, "jpeg": 0.03}[format] {
				t.Errorf("%s image %d returned with corner red %.3f", format, d.Index, red)
			}
		}
		req["stream"] = true
		b, _ := json.Marshal(req)
		_, _, body := do(t, "POST", gen, jsonCT, b)
		delete(req, "stream")
		events, data, _ := sseEvents(t, body)
		var streamed []int
		for i, e := range events {
			if e == "image_generation.withheld" {
				streamed = append(streamed, int(data[i]["index"].(float64)))
			}
		}
		var withheld []int
		for _, w := range r.Withheld {
			withheld = append(withheld, w.Index)
		}
		if !slices.Equal(streamed, withheld) {
			t.Errorf("%s: the stream withheld %v, the JSON route %v", format, streamed, withheld)
		}
	}

	// An upload the check flags is refused, whatever the prompt.
	bad := gradient(128, 128)
	for y := range 8 {
		for x := range 8 {
			bad.SetNRGBA(x, y, color.NRGBA{250, 0, 0, 255})
		}
	}
	ct, ebody = editForm(t, pngBytes(t, bad), nil, map[string]string{"model": "sd-solo", "prompt": "a cat"})
	code, _, resp := do(t, "POST", edits, map[string]string{"Content-Type": ct}, ebody)
	if code != 400 || !strings.Contains(string(resp), "content_policy_violation") {
		t.Errorf("flagged upload: %d %s", code, resp)
	}

	// KServe v2, over HTTP or gRPC, does not hand out the pipeline's raw
	// tensors.
	c := grpcClient(t, srv.GRPCAddr)
	for _, m := range []string{"sd-vae-dec", "sd", "sd-text", "sd-safety"} {
		code, _, resp := do(t, "POST", srv.URL+"/v2/models/"+m+"/infer", jsonCT,
			[]byte(`{"inputs":[{"name":"latent_sample","shape":[1,4,1,1],"datatype":"FP32","data":[0,0,0,0]}]}`))
		if code != http.StatusForbidden {
			t.Errorf("KServe infer on %s: %d %s", m, code, resp)
		}
		_, err := c.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: m,
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "latent_sample", Datatype: "FP32", Shape: []int64{1, 4, 1, 1},
				Contents: &pb.InferTensorContents{Fp32Contents: []float32{0, 0, 0, 0}}}}})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("gRPC ModelInfer on %s: %v", m, err)
		}
	}
}

func TestImagesPromptBlocklistAndErrors(t *testing.T) {
	srv := startServer(t, imagesConfig, testmodels.Dir())
	gen := srv.URL + "/v1/images/generations"
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"prompt": "a NUDE portrait"}`, 400, "content_policy_violation"},
		{`{"prompt": "a cat", "response_format": "url"}`, 400, "never stored"},
		{`{"prompt": "a cat", "size": "500x500"}`, 400, "multiples of 64"},
		{`{"prompt": "a cat", "size": "4096x4096"}`, 400, "size"},
		{`{"prompt": "a cat", "n": 0}`, 400, "n must be"},
		{`{"prompt": "a cat", "n": 99}`, 400, "n must be"},
		{`{"prompt": "a cat", "strength": 0.5}`, 400, "edits only"},
		{`{"prompt": "a cat", "output_format": "webp"}`, 400, "png or jpeg"},
		{`{"prompt": "a cat", "seed": -1}`, 400, "seed"},
		{`{"prompt": "a cat", "seed": 4294967296}`, 400, "seed"},
		{`{"prompt": "a cat", "negative_prompt": "dogs"}`, 400, "guidance_scale"},
		{`{"prompt": "a cat", "partial_images": 2}`, 400, "partial_images"},
		{`{"prompt": "a cat", "promt": "typo"}`, 400, "unknown parameter"},
		{`{"prompt": ""}`, 400, "prompt is empty"},
		{`{"prompt": "a cat", "model": "nope"}`, 404, "not_found"},
		{`{"prompt": "a cat", "model": "sd-text"}`, 404, "not_found"},
		{`{"prompt": ["a", "cat"]}`, 400, "prompt"},
		{`not json`, 400, "malformed JSON"},
	} {
		code, _, resp := do(t, "POST", gen, map[string]string{"Content-Type": "application/json"}, []byte(c.body))
		if code != c.code || !strings.Contains(string(resp), c.want) {
			t.Errorf("%s: %d %s, want %d with %q", c.body, code, resp, c.code, c.want)
		}
	}
	// Edits: multipart only, with an image.
	code, _, resp := do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": "application/json"}, []byte(`{"prompt": "x"}`))
	if code != http.StatusUnsupportedMediaType {
		t.Errorf("JSON edit: %d %s", code, resp)
	}
	ct, body := editForm(t, nil, nil, map[string]string{"prompt": "a cat"})
	if code, _, resp := do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": ct}, body); code != 400 || !strings.Contains(string(resp), "image") {
		t.Errorf("edit without an image: %d %s", code, resp)
	}
	ct, body = editForm(t, pngBytes(t, gradient(64, 64)), pngBytes(t, gradient(32, 32)), map[string]string{"prompt": "a cat"})
	if code, _, resp := do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": ct}, body); code != 400 || !strings.Contains(string(resp), "same size") {
		t.Errorf("mask of another size: %d %s", code, resp)
	}
	ct, body = editForm(t, []byte("not an image"), nil, map[string]string{"prompt": "a cat"})
	if code, _, _ := do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": ct}, body); code != http.StatusUnsupportedMediaType && code != http.StatusUnprocessableEntity {
		t.Errorf("undecodable upload: %d", code)
	}
}

// TestImagesPrivacy: prompts, negative prompts, uploads and their masks
// reach no log line and no file, on every path of both routes, errors
// included.
func TestImagesPrivacy(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	srv := startServer(t, imagesConfig, testmodels.Dir())
	gen := srv.URL + "/v1/images/generations"
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, body := range []string{
		`{"model": "sd-solo", "prompt": "a cat ` + privacyMarker + `", "guidance_scale": 3, "negative_prompt": "` + privacyMarker + `", "n": 2}`,
		`{"model": "sd-solo", "prompt": "red red red red ` + privacyMarker + `"}`,
		`{"model": "sd-solo", "prompt": "nude ` + privacyMarker + `"}`,
		`{"model": "sd-solo", "prompt": "a cat ` + privacyMarker + `", "stream": true}`,
		`{"model": "sd-solo", "prompt": "a cat", "size": "` + privacyMarker + `"}`,
	} {
		do(t, "POST", gen, jsonCT, []byte(body))
	}
	up := markedPNG(t, 64, 64)
	for _, fields := range []map[string]string{
		{"model": "sd-solo", "prompt": "a cat " + privacyMarker},
		{"model": "sd-solo", "prompt": "a cat " + privacyMarker, "stream": "true"},
		{"model": "sd-solo", "prompt": "a cat", "note": privacyMarker},
	} {
		ct, body := editForm(t, up, up, fields)
		do(t, "POST", srv.URL+"/v1/images/edits", map[string]string{"Content-Type": ct}, body)
	}
	if logs := srv.Logs.String(); strings.Contains(logs, privacyMarker) || strings.Contains(logs, "a cat") {
		t.Errorf("request content reached the log:\n%s", logs)
	}
	if got := filesUnder(t, tmp); len(got) != 0 {
		t.Errorf("requests left files in TMPDIR: %v", got)
	}
}
