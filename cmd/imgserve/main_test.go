package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/redistest"
)

func TestHelpListsFlags(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, flag := range []string{"-addr", "-grpc-addr", "127.0.0.1:8081", "-models-dir", "-ort-lib", "-ort-cuda-lib", "-config", "-device", "auto", "--gpu", "127.0.0.1:8080", "fetch-models.sh", "-playground", "/openapi.json"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
}

// TestPlaygroundFlag: the playground is on unless --playground=false.
func TestPlaygroundFlag(t *testing.T) {
	for args, want := range map[string]bool{"": true, "--playground=false": false, "--playground": true} {
		o, err := parseFlags(strings.Fields(args), io.Discard)
		if err != nil || o.playground != want {
			t.Errorf("%q: playground %v, %v; want %v", args, o.playground, err, want)
		}
	}
}

func TestBadStartsFailClearly(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"--device", "gpu"}, 1, "want cpu, cuda, cuda:N or auto"},
		{[]string{"--config", "/nonexistent.yaml"}, 1, "no such file"},
		{[]string{"--ort-lib", "/nonexistent/libonnxruntime.so"}, 1, "scripts/fetch-models.sh onnxruntime"},
		{[]string{"--index-snapshot", "x.snap", "--index-postgres", "postgres://localhost/x"}, 2, "exclude each other"},
		{[]string{"--index-max-items", "-1"}, 2, "must not be negative"},
		{[]string{"--index-compact-mib", "0"}, 2, "at least 1"},
		{[]string{"--job-ttl", "2h"}, 2, "--job-ttl 2h0m0s is over 1h"},
		{[]string{"--job-ttl", "0s"}, 2, "--job-ttl must be positive"},
		{[]string{"--jobs-redis", "http://localhost"}, 1, "want redis://host:port/db"},
		{[]string{"--jobs-claim-after", "0s"}, 2, "--jobs-claim-after must be positive"},
		{[]string{"--jobs-redis", "redis://127.0.0.1:1/0", "--job-ttl", "1m", "--jobs-claim-after", "31s"}, 2, "is over half of --job-ttl"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if code := run(c.args, &out); code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, output %q; want %d containing %q", c.args, code, out.String(), c.code, c.want)
		}
	}
}

// At --drain-timeout the process exits, whatever is still in flight, and
// logs what it cut off.
func TestDrainIsAHardLimit(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "models.yaml")
	os.WriteFile(cfg, []byte("models: []\n"), 0o600)
	cmd := exec.Command(os.Args[0], "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--config", cfg, "--models-dir", dir,
		"--ort-lib", paths.ORTLib(paths.RepoHome()), "--drain-timeout", "300ms", "--body-timeout", "10m")
	cmd.Env = append(os.Environ(), "IMGSERVE_TEST_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited closes when the process has exited and waitErr holds why.
	exited := make(chan struct{})
	var waitErr error
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	var logs syncBuffer
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if _, rest, ok := strings.Cut(sc.Text(), "msg=\"imgserve listening\" addr="); ok {
				addr <- strings.Fields(rest)[0]
			}
		}
	}()
	go func() {
		<-scanned
		waitErr = cmd.Wait()
		close(exited)
	}()
	var a string
	select {
	case a = <-addr:
	case <-exited:
		t.Fatalf("the server stopped: %v\n%s", waitErr, logs.String())
	}

	// An upload that stops halfway stays in flight until its body timeout,
	// ten minutes away.
	conn, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(append([]byte("POST /v1/remove-background HTTP/1.1\r\nHost: x\r\nX-Request-Id: half-upload\r\nContent-Length: 100000\r\n\r\n"), make([]byte, 20000)...))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "\nimgserve_admission_in_flight 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload was never admitted")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	// The wait bounds a broken drain (which would last the body timeout).
	select {
	case <-exited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("still running long after --drain-timeout\n%s", logs.String())
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1 after cutting a request off\n%s", waitErr, logs.String())
	}
	for _, want := range []string{`msg="drain timeout cut off a request" id=half-upload route=/v1/remove-background`, "cut_off=1"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
}

// syncBuffer is a buffer one goroutine writes while another may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteString(x string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(x)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A Redis that writes to disk is refused at start-up, saying how to fix
// it, before any model loads.
func TestPersistingRedisIsRefused(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes")
	var out bytes.Buffer
	if code := run([]string{"--jobs-redis", srv.URL}, &out); code != 1 ||
		!strings.Contains(out.String(), "writes to disk") || !strings.Contains(out.String(), "appendonly no") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
}
