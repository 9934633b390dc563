package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/testruntime"
	"github.com/imgserve/imgserve/models"
)

var testRuntime *inference.Runtime

// TestMain loads the real ONNX Runtime once and fails the run if a
// goroutine outlives the tests.
func TestMain(m *testing.M) {
	testruntime.Run(m, "server", func(rt *inference.Runtime) { testRuntime = rt },
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

// realModelsDir is where fetch-models.sh put the real weights.
func realModelsDir() string { return paths.Models(paths.RepoHome()) }

// testServer is a server on real loopback sockets, HTTP and gRPC.
type testServer struct {
	URL      string
	GRPCAddr string
	Server   *Server
	Registry *models.Registry
	Logs     *lockedWriter // everything the server logged
}

// startServer loads the given config from modelsDir, waits until every model
// has loaded, and serves on 127.0.0.1 until the test ends.
func startServer(t *testing.T, cfgYAML string, modelsDir string, tweak ...func(*Options)) *testServer {
	t.Helper()
	cfg, err := models.ParseConfig(strings.NewReader(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	var metrics *Metrics
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir: modelsDir,
		Runtime:   testRuntime,
		Observer:  func(m string) inference.Observer { return metrics.Observer(m) },
		Logger:    log,
	})
	metrics = NewMetrics(reg)
	opts := Options{Registry: reg, Metrics: metrics, Logger: log, Version: "test"}
	for _, f := range tweak {
		f(&opts)
	}
	srv := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	go func() { served <- srv.ServeGRPC(gln) }()
	reg.Load()
	for _, m := range reg.Models() {
		if st := m.State(); st.Status == models.StatusFailed {
			t.Fatalf("model %s failed to load: %s", m.Config.Name, st.Reason)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if !srv.Draining() {
			srv.Shutdown(ctx)
		}
		<-served
		<-served
		reg.Close()
	})
	return &testServer{URL: "http://" + ln.Addr().String(), GRPCAddr: gln.Addr().String(), Server: srv, Registry: reg, Logs: logs}
}

// lockedWriter serialises log writes from concurrent handlers.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// String returns what was logged so far.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// do sends one request and returns the status, headers and body.
func do(t testing.TB, method, url string, header map[string]string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}
