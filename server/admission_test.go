package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/server/access"
	"github.com/imgserve/imgserve/server/admission"
)

// Routes that exist only in this package's tests: one that holds its
// request until the client goes or the test lets it finish, one that
// panics.
var (
	held    = make(chan context.Context, 16)
	release = make(chan struct{}, 16)
	ended   = make(chan error, 16)
)

func init() {
	addFeature(
		Feature{Method: "POST", Pattern: "/test/hold", Handle: func(s *Server, ctx *fasthttp.RequestCtx, _ routeParams) {
			rctx := requestContext(ctx)
			held <- rctx
			select {
			case <-rctx.Done():
				ended <- rctx.Err()
				writeError(ctx, rctx.Err())
			case <-release:
				ended <- nil
				writeJSON(ctx, 200, map[string]bool{"released": true})
			}
		}},
		Feature{Method: "GET", Pattern: "/test/panic", Handle: func(*Server, *fasthttp.RequestCtx, routeParams) {
			panic("test panic")
		}},
	)
}

// pngPromise is a PNG that declares w x h pixels and then ends: its header
// reads fine, decoding it fails (422). A request that gets any other
// answer was decided before decoding.
func pngPromise(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.WriteString("IHDR")
	b.Write(ihdr)
	crc := crc32.NewIEEE()
	crc.Write([]byte("IHDR"))
	crc.Write(ihdr)
	binary.Write(&b, binary.BigEndian, crc.Sum32())
	return b.Bytes()
}

// stalledUpload opens a request whose body stops after sent bytes of
// declared, so that it stays admitted and holds its reservation; closing
// the connection ends it.
func stalledUpload(t *testing.T, url, path string, declared, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	head := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Length: " + strconv.Itoa(declared) + "\r\n\r\n"
	if _, err := conn.Write(append([]byte(head), make([]byte, sent)...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

const u2netpOnly = `
models:
  - name: u2netp
    file: u2netp.onnx
    task: matting
    batching: {max_batch_size: 1, instances: 1}
`

// The memory budget is reserved from an image's header before it is
// decoded: an image that could never fit is 413, one that does not fit
// now is 429 with Retry-After, and neither is decoded (the images here
// end after their header, so decoding them would answer 422).
func TestAdmissionReservesBeforeDecoding(t *testing.T) {
	const budget = 8 << 20
	srv := startServer(t, u2netpOnly, realModelsDir(), func(o *Options) {
		o.Admission = admission.New(admission.Limits{MemoryBudget: budget, MaxInFlight: 8})
	})
	post := func(img []byte) (int, http.Header, string) {
		code, h, body := do(t, "POST", srv.URL+"/v1/remove-background", map[string]string{"Content-Type": "image/png"}, img)
		return code, h, string(body)
	}
	// 2000x2000: 16 MB decoded, 48 MB of working memory: never fits.
	if code, _, body := post(pngPromise(2000, 2000)); code != 413 || !strings.Contains(body, "too_costly") {
		t.Fatalf("an image larger than the budget: %d %s", code, body)
	}
	// 500x500 fits alone (3 MB) but not beside an upload holding 6 MiB.
	small := pngPromise(500, 500)
	stalledUpload(t, srv.URL, "/v1/remove-background", 6<<20, 5<<20)
	waitUntil(t, "the upload to reserve its body", func() bool { return srv.Server.Admission().Stats().Reserved >= 6<<20 })
	code, h, body := post(small)
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, "busy") {
		t.Fatalf("over budget: %d %v %s", code, h, body)
	}
	if metrics := metricsText(t, srv.URL); !strings.Contains(metrics, `imgserve_admission_refused_total{reason="over_budget"} 1`) {
		t.Fatal("the refusal is not counted")
	}
	// Health probes are not admitted, so they answer whatever the load.
	if code, _, _ := do(t, "GET", srv.URL+"/v2/health/live", nil, nil); code != 200 {
		t.Fatalf("live under load: %d", code)
	}
}

func TestInFlightLimit(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) {
		o.Admission = admission.New(admission.Limits{MaxInFlight: 1})
	})
	conn := stalledUpload(t, srv.URL, "/v2/models/affine/infer", 100000, 20000)
	waitUntil(t, "the upload to be admitted", func() bool { return srv.Server.Admission().Stats().InFlight == 1 })
	code, h, body := do(t, "GET", srv.URL+"/v2/models/affine", nil, nil)
	if code != 429 || h.Get("Retry-After") != "1" {
		t.Fatalf("second request with one in flight allowed: %d %v %s", code, h, body)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/metrics", nil, nil); code != 200 {
		t.Fatalf("metrics under load: %d", code)
	}
	conn.Close()
	waitUntil(t, "the upload to end", func() bool { return srv.Server.Admission().Stats().InFlight == 0 })
	if code, _, _ := do(t, "GET", srv.URL+"/v2/models/affine", nil, nil); code != 200 {
		t.Fatalf("after the upload ended: %d", code)
	}
}

// A body larger than the limit is refused from its Content-Length, before
// it is read; a chunked one as soon as it passes the limit.
func TestBodyLimit(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) { o.MaxBodySize = 1 << 20 })
	conn := stalledUpload(t, srv.URL, "/v2/models/affine/infer", 64<<20, 1)
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 413 {
		t.Fatalf("declared 64 MiB: %v %v", resp, err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v2/models/affine/infer", struct{ *bytes.Reader }{bytes.NewReader(make([]byte, 2<<20))})
	req.ContentLength = -1 // chunked
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked 2 MiB: %d", resp.StatusCode)
	}
}

// A client that goes away cancels its request's context; one that stays,
// or sends its next request early, does not.
func TestClientDisconnectCancelsTheRequest(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir())
	addr := strings.TrimPrefix(srv.URL, "http://")
	request := "POST /test/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte(request))
	<-held
	conn.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("gone client: the request ended with %v, want canceled", err)
	}

	// Pipelined: the second request arrives while the first is served. The
	// first is not cancelled and both are answered, in order.
	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(request))
	<-held
	conn.Write([]byte(request))
	release <- struct{}{}
	if err := <-ended; err != nil {
		t.Fatalf("pipelining client: first request ended with %v", err)
	}
	<-held
	release <- struct{}{}
	if err := <-ended; err != nil {
		t.Fatalf("pipelining client: second request ended with %v", err)
	}
	r := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	for i := range 2 {
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("pipelined answer %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
}

// Over TLS a client that drops the connection cancels its request too.
func TestClientDisconnectOverTLS(t *testing.T) {
	certFile, keyPath, roots := selfSigned(t)
	cfg, err := access.TLSConfig(certFile, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) { o.TLS = cfg })
	conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("POST /test/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
	<-held
	conn.NetConn().Close() // abruptly, as a crashed client or a dropped network
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the request ended with %v, want canceled", err)
	}
}

func TestPanicsAreRecoveredAndCounted(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir())
	for range 2 {
		if code, _, body := do(t, "GET", srv.URL+"/test/panic", nil, nil); code != 500 || strings.Contains(string(body), "test panic") {
			t.Fatalf("panic: %d %s", code, body)
		}
	}
	if v := metricValue(t, []byte(metricsText(t, srv.URL)), `imgserve_panics_total{where="http.handler"}`); v < 2 {
		t.Fatalf("panics counted: %v", v)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/v2/health/live", nil, nil); code != 200 {
		t.Fatal("the server did not survive")
	}
}

func TestRefusalsSayWhenToRetry(t *testing.T) {
	for _, c := range []struct {
		err   error
		code  int
		after string
	}{
		{&inference.RetryError{Err: inference.ErrOverloaded, After: 2100 * time.Millisecond}, 429, "3"},
		{&inference.RetryError{Err: inference.ErrQueueFull, After: 300 * time.Millisecond}, 429, "1"},
		{errDraining, 503, "1"},
	} {
		var ctx fasthttp.RequestCtx
		writeError(&ctx, c.err)
		if ctx.Response.StatusCode() != c.code || string(ctx.Response.Header.Peek("Retry-After")) != c.after {
			t.Errorf("%v: %d Retry-After %q, want %d %q", c.err, ctx.Response.StatusCode(),
				ctx.Response.Header.Peek("Retry-After"), c.code, c.after)
		}
	}
}

func metricsText(t *testing.T, url string) string {
	t.Helper()
	code, _, body := do(t, "GET", url+"/metrics", nil, nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	return string(body)
}
