package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgserve/imgserve/internal/redistest"
	"github.com/imgserve/imgserve/internal/testfiles"
	"github.com/imgserve/imgserve/internal/testmodels"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// privacyMarker is planted in uploads; it must never reach a log line.
const privacyMarker = "PRIVATE-7f3a9c-DO-NOT-LOG"

// markedPNG is a valid PNG followed by the marker: decoders stop at IEND,
// so the image still decodes, and any log of the body would show the marker.
func markedPNG(t *testing.T, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 31)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), []byte(privacyMarker)...)
}

// filesUnder lists every file below dir.
func filesUnder(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// noTraces watches where an upload could leave a trace: TMPDIR, set to
// an empty folder for the test, and the working tree.
type noTraces struct {
	tmp, wd string
	before  int
}

func watchTraces(t *testing.T) noTraces {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where any spilled upload would land
	wd, _ := os.Getwd()
	return noTraces{tmp: tmp, wd: wd, before: len(filesUnder(t, wd))}
}

// check fails when what ran left a file in TMPDIR or the tree, or the
// marker in the logs.
func (w noTraces) check(t *testing.T, what, logs string) {
	t.Helper()
	if got := filesUnder(t, w.tmp); len(got) != 0 {
		t.Fatalf("%s left files in TMPDIR: %v", what, got)
	}
	if after := filesUnder(t, w.wd); len(after) != w.before {
		t.Fatalf("%s created files in the working tree: %d before, %d after", what, w.before, len(after))
	}
	if strings.Contains(logs, privacyMarker) {
		t.Fatalf("the server logged content of %s:\n%s", what, logs)
	}
}

func TestNothingTouchesDiskOrLogs(t *testing.T) {
	traces := watchTraces(t)
	srv := startServer(t, mattingConfig, realModelsDir(), func(o *Options) { o.MaxBodySize = 64 << 20 })

	small := markedPNG(t, 64, 48)
	// 20 MB multipart upload: more than the 16 MB fasthttp would keep in
	// memory before spilling a file part to a temporary file.
	big := append(markedPNG(t, 64, 48), bytes.Repeat([]byte{0}, 20<<20)...)
	for _, up := range [][]byte{small, big} {
		body, ct := multipartBody(t, "image", up, map[string]string{"format": "mask", "note": privacyMarker})
		if code, _, resp := do(t, "POST", srv.URL+"/v1/remove-background", map[string]string{"Content-Type": ct}, body); code != 200 {
			t.Fatalf("multipart upload of %d bytes: %d %s", len(body), code, resp)
		}
		body, ct = multipartBody(t, "file", up, map[string]string{"om": "true"})
		if code, _, resp := do(t, "POST", srv.URL+"/api/remove", map[string]string{"Content-Type": ct}, body); code != 200 {
			t.Fatalf("/api/remove: %d %s", code, resp)
		}
	}
	if code, _, _ := do(t, "POST", srv.URL+"/v1/remove-background?bg_color="+privacyMarker, map[string]string{"Content-Type": "image/png"}, small); code != 400 {
		t.Fatalf("bad bg_color got %d", code)
	}
	// Alpha matting, and rembg's extras and the SAM prompt carrying the marker.
	body, ct := multipartBody(t, "file", small, map[string]string{"a": "true", "model": "u2netp"})
	if code, _, resp := do(t, "POST", srv.URL+"/api/remove?extras="+url.QueryEscape(`{"note": "`+privacyMarker+`"}`), map[string]string{"Content-Type": ct}, body); code != 200 {
		t.Fatalf("/api/remove a=true: %d %s", code, resp)
	}
	if code, _, _ := do(t, "POST", srv.URL+"/v1/remove-background?sam_prompt="+privacyMarker, map[string]string{"Content-Type": "image/png"}, small); code != 400 {
		t.Fatalf("bad sam_prompt got %d", code)
	}
	// A KServe request whose tensor bytes spell the marker.
	if code, _, _ := do(t, "POST", srv.URL+"/v2/models/u2netp/infer", nil, []byte(`{"inputs":[{"name":"input.1","shape":[1],"datatype":"FP32","data":["`+privacyMarker+`"]}]}`)); code != 400 {
		t.Fatalf("bad infer got %d", code)
	}

	// The same over gRPC: tensor bytes, a parameter and an output name that
	// carry the marker, in a request that runs and in one that fails.
	c := grpcClient(t, srv.GRPCAddr)
	raw := make([]byte, 3*320*320*4)
	copy(raw, privacyMarker)
	req := &pb.ModelInferRequest{
		ModelName:        "u2netp",
		Parameters:       map[string]*pb.InferParameter{"note": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: privacyMarker}}},
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input.1", Datatype: "FP32", Shape: []int64{1, 3, 320, 320}}},
		RawInputContents: [][]byte{raw},
	}
	if _, err := c.ModelInfer(context.Background(), req); err != nil {
		t.Fatalf("gRPC infer: %v", err)
	}
	req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: privacyMarker}}
	if _, err := c.ModelInfer(context.Background(), req); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad gRPC infer: %v", err)
	}

	logs := srv.Logs.String()
	traces.check(t, "requests", logs)
	if !strings.Contains(logs, "route=/v1/remove-background") || !strings.Contains(logs, "transport=grpc method=ModelInfer") {
		t.Fatalf("expected request log lines (sizes and timings), got:\n%s", logs)
	}
}

// everyFamilyConfig serves one model of each family: rembg's real u2netp
// and the synthetic LaMa, CLIP and caption models.
var everyFamilyConfig = fmt.Sprintf(`
models:
  - {name: u2netp, file: %[1]s, task: matting, intra_op_threads: 1}
  - {name: lama, file: lama_synth.onnx, task: inpaint, intra_op_threads: 1}
  - name: clip-vit-b32
    file: clip_vision_synth.onnx
    task: clip-vision
    outputs: [image_embeds]
    options: {text_model: clip-vit-b32-text}
  - {name: clip-vit-b32-text, file: clip_text_synth.onnx, task: clip-text}
  - name: vit-gpt2
    file: %[2]s
    task: caption-encoder
    options: {decoder: vit-gpt2-decoder}
  - {name: vit-gpt2-decoder, file: %[3]s, task: caption-decoder}
`, filepath.Join(realModelsDir(), "u2netp.onnx"), testmodels.CaptionEncoderSynth, testmodels.CaptionDecoderSynth)

// TestNoOutboundConnections sends a successful request to every family's
// routes and, while they run and after, reads the kernel's socket tables:
// every TCP and UDP socket this process owns must be on loopback. It fails
// when the tables cannot be read rather than pass without looking.
func TestNoOutboundConnections(t *testing.T) {
	srv := startServer(t, everyFamilyConfig, testmodels.Dir())
	small := markedPNG(t, 64, 48)
	jpg := testfiles.Rembg(t, "car-1.jpg")
	b64 := base64.StdEncoding.EncodeToString(small)
	var maskPNG bytes.Buffer
	if err := png.Encode(&maskPNG, boxesMask(64, 48, [][4]int{{8, 8, 16, 12}}, 0)); err != nil {
		t.Fatal(err)
	}
	mask := maskPNG.Bytes()
	form, formHeader := inpaintForm(t, small, mask, nil)
	boxesForm, boxesHeader := inpaintForm(t, small, nil, map[string]string{"boxes": "[[4,4,10,10]]"})
	rembgForm, rembgCT := multipartBody(t, "file", jpg, nil)
	json := map[string]string{"Content-Type": "application/json"}
	requests := []struct {
		method, path string
		header       map[string]string
		body         []byte
	}{
		{"GET", "/v2/health/ready", nil, nil},
		{"GET", "/v1/models", nil, nil},
		{"POST", "/v1/remove-background", map[string]string{"Content-Type": "image/jpeg"}, jpg},
		{"POST", "/api/remove", map[string]string{"Content-Type": rembgCT}, rembgForm},
		{"POST", "/v2/models/u2netp/infer", json, []byte(`{"inputs":[{"name":"input.1","shape":[1,3,320,320],"datatype":"FP32","data":[` +
			strings.TrimSuffix(strings.Repeat("0.5,", 3*320*320), ",") + `]}]}`)},
		{"POST", "/v1/inpaint", formHeader, form},
		{"POST", "/api/v1/inpaint", json, []byte(`{"image":"` + b64 + `","mask":"` + base64.StdEncoding.EncodeToString(mask) + `"}`)},
		{"POST", "/v1/remove-watermark", boxesHeader, boxesForm},
		{"POST", "/v1/embeddings", json, []byte(`{"model":"clip-vit-b32","input":["a red car",{"image":"` + b64 + `"}]}`)},
		{"POST", "/v1/tokenize", json, []byte(`{"model":"clip-vit-b32","input":"a red car"}`)},
		{"PUT", "/v1/collections/privacy/items/car", map[string]string{"Content-Type": "image/jpeg"}, jpg},
		{"POST", "/v1/collections/privacy/search", json, []byte(`{"text":"a red car","k":1}`)},
		{"POST", "/v1/caption", map[string]string{"Content-Type": "image/small"}, small},
		{"GET", "/metrics", nil, nil},
	}

	stopWatching := watchSocketsLoopback()
	for _, r := range requests {
		if code, _, resp := do(t, r.method, srv.URL+r.path, r.header, r.body); code != 200 {
			t.Errorf("%s %s: %d %.200s", r.method, r.path, code, resp)
		}
	}
	if _, err := grpcClient(t, srv.GRPCAddr).ModelInfer(context.Background(), &pb.ModelInferRequest{
		ModelName:        "u2netp",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input.1", Datatype: "FP32", Shape: []int64{1, 3, 320, 320}}},
		RawInputContents: [][]byte{make([]byte, 3*320*320*4)},
	}); err != nil {
		t.Errorf("gRPC infer: %v", err)
	}
	if err := stopWatching(); err != nil {
		t.Fatal(err)
	}
	if err := checkOwnSocketsLoopback(); err != nil {
		t.Fatal(err)
	}
}

// watchSocketsLoopback samples the socket tables until the returned stop
// is called, which reports the first socket found off loopback.
func watchSocketsLoopback() (stop func() error) {
	done := make(chan struct{})
	watched := make(chan error, 1)
	go func() {
		for {
			if err := checkOwnSocketsLoopback(); err != nil {
				watched <- err
				return
			}
			select {
			case <-done:
				watched <- nil
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() error {
		close(done)
		return <-watched
	}
}

// socketTables are the kernel's tables of this network namespace.
var socketTables = []string{"/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"}

// checkOwnSocketsLoopback finds this process's sockets (/proc/self/fd) in
// the kernel's TCP and UDP tables and reports any whose local or remote
// address is not loopback or unset.
func checkOwnSocketsLoopback() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("cannot list this process's descriptors: %w", err)
	}
	own := map[string]bool{}
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:[") {
			own[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	tables := map[string]string{}
	for _, name := range socketTables {
		data, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("cannot inspect the socket table: %w", err)
		}
		tables[name] = string(data)
	}
	return ownSocketsLoopback(tables, own)
}

// ownSocketsLoopback checks the rows of tables (name to /proc/net text)
// whose inode is in own. Finding none of own is an error too: then the
// check saw nothing.
func ownSocketsLoopback(tables map[string]string, own map[string]bool) error {
	seen := 0
	for name, text := range tables {
		lines := strings.Split(strings.TrimSpace(text), "\n")
		for _, line := range lines[1:] { // the first line is the header
			fields := strings.Fields(line)
			if len(fields) < 10 || !own[fields[9]] { // field 9 is the inode
				continue
			}
			seen++
			for _, addr := range fields[1:3] { // local and remote
				if host := addr[:strings.IndexByte(addr, ':')]; !isLoopbackOrUnset(host) {
					return fmt.Errorf("%s: this process has a socket %s -> %s", name, fields[1], fields[2])
				}
			}
		}
	}
	if seen == 0 {
		return fmt.Errorf("none of this process's %d sockets is in the socket tables", len(own))
	}
	return nil
}

// The check itself finds a socket off loopback, and ignores other
// processes' sockets.
func TestOwnSocketsLoopbackCheck(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	const loopback = "   0: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 20 4 30 10 -1\n"
	const outbound = "   1: 020200C0:D2A6 010200C0:0050 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 20 4 30 10 -1\n"
	tables := map[string]string{"/proc/net/tcp": header + loopback + outbound}
	if err := ownSocketsLoopback(tables, map[string]bool{"1001": true}); err != nil {
		t.Errorf("loopback only: %v", err)
	}
	if err := ownSocketsLoopback(tables, map[string]bool{"1001": true, "1002": true}); err == nil || !strings.Contains(err.Error(), "010200C0:0050") {
		t.Errorf("a connection to 192.0.2.1:80 was not reported: %v", err)
	}
	if err := ownSocketsLoopback(tables, map[string]bool{"9999": true}); err == nil {
		t.Error("a check that saw none of the process's sockets passed")
	}
}

// isLoopbackOrUnset reads /proc/net's hex addresses: 127.x.x.x (stored
// little-endian, so it ends in 7F), ::1, v4-mapped 127.x, or all zeros.
func isLoopbackOrUnset(hex string) bool {
	switch {
	case strings.Trim(hex, "0") == "":
		return true
	case len(hex) == 8:
		return strings.HasSuffix(hex, "7F")
	case hex == "00000000000000000000000001000000":
		return true
	case len(hex) == 32 && strings.HasPrefix(hex, "0000000000000000FFFF0000"):
		return strings.HasSuffix(hex, "7F")
	}
	return false
}

// Jobs keep the same promises, in process and over Redis: no file in
// TMPDIR or the tree, no content in the logs (the marker is in the
// images, their file names and a parameter), and no socket but loopback
// ones (the configured Redis is on loopback here) while jobs run.
func TestJobsTouchNoDiskLogNoContentAndStayLocal(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			traces := watchTraces(t)
			opts := []func(*Options){}
			if store == "redis" {
				opts = append(opts, withJobsRedis(t, redistest.Start(t).URL, time.Minute))
			}
			srv := startServer(t, everyFamilyConfig, testmodels.Dir(), opts...)

			stopWatching := watchSocketsLoopback()
			name := func(i int) string { return fmt.Sprintf("%s-%d.png", privacyMarker, i) }
			var files [][3]any
			archive := map[string][]byte{}
			for i := range 4 {
				files = append(files, [3]any{"image", name(i), markedPNG(t, 64, 48)})
				archive[name(i)] = markedPNG(t, 64, 48)
			}
			files = append(files, [3]any{"image", privacyMarker + "-bad.png", []byte("GIF89a" + privacyMarker)})
			body, ct := form(t, map[string]string{"task": "remove-background", "model": "u2netp", "note": privacyMarker}, files...)
			// A job whose upload is refused, naming the file in its error.
			if code, _, _ := do(t, "POST", srv.URL+"/v1/jobs", map[string]string{"Content-Type": ct}, body); code/100 != 4 {
				t.Fatalf("a job with a broken image: %d", code)
			}
			body, ct = form(t, map[string]string{"task": "remove-background", "model": "u2netp", "note": privacyMarker}, files[:4]...)
			ids := []string{
				submitJob(t, srv.URL, body, ct, ""),
				submitJob(t, srv.URL, zipOf(t, archive), "application/zip", "?task=caption&note="+privacyMarker),
			}
			for _, id := range ids {
				if st := awaitJob(t, srv.URL, id); st.Done != 4 {
					t.Fatalf("job: %+v", st)
				}
				if len(jobResultsOf(t, srv.URL, id)) != 4 {
					t.Fatal("results missing")
				}
				if code, _, _ := do(t, "GET", srv.URL+"/v1/jobs/"+id+"/items/"+name(1), nil, nil); code != 200 {
					t.Fatalf("item: %d", code)
				}
			}
			do(t, "DELETE", srv.URL+"/v1/jobs/"+ids[0], nil, nil)
			if err := stopWatching(); err != nil {
				t.Fatal(err)
			}
			logs := srv.Logs.String()
			traces.check(t, "jobs", logs)
			if !strings.Contains(logs, "job created") || !strings.Contains(logs, "job finished") || !strings.Contains(logs, "job deleted") {
				t.Fatalf("expected job log lines (ids, counts, timings), got:\n%s", logs)
			}
		})
	}
}
