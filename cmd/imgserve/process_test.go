package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/pgtest"
)

// These tests run the server as a real process (this test binary,
// re-executed with IMGSERVE_TEST_RUN_MAIN=1, runs main: see TestMain in
// device_test.go), so that they can kill it with SIGKILL and run two of
// them on one database.

const envMain = "IMGSERVE_TEST_RUN_MAIN"

type proc struct {
	url  string
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan error
}

// startProc starts the server with no models (the collection API needs
// none when items are vectors) and the given flags, and waits until it
// answers.
func startProc(t *testing.T, flags ...string) *proc {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfg, []byte("models: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	home := paths.RepoHome()
	args := append([]string{"--addr", addr, "--grpc-addr", "127.0.0.1:0", "--config", cfg, "--ort-lib", paths.ORTLib(home), "--models-dir", t.TempDir()}, flags...)
	p := &proc{url: "http://" + addr, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), envMain+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	for {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("server exited at start: %v\n%s", err, p.logs)
		default:
		}
		if resp, err := http.Get(p.url + "/v2/health/live"); err == nil {
			resp.Body.Close()
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("server exited with %v\n%s", err, p.logs)
	}
	p.done <- nil
}

func request(method, url string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func mustRequest(t *testing.T, method, url string, body any, want int) []byte {
	t.Helper()
	code, data, err := request(method, url, body)
	if err != nil || code != want {
		t.Fatalf("%s %s: %d %s %v; want %d", method, url, code, data, err, want)
	}
	return data
}

type hit struct {
	ID       string          `json:"id"`
	Score    float64         `json:"score"`
	Metadata json.RawMessage `json:"metadata"`
}

func searchIDs(t *testing.T, url string, vec []float32, k int) []hit {
	t.Helper()
	var r struct{ Results []hit }
	if err := json.Unmarshal(mustRequest(t, "POST", url, map[string]any{"vector": vec, "k": k, "exact": true}, 200), &r); err != nil {
		t.Fatal(err)
	}
	return r.Results
}

func randVec(rng *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestKillDuringUpserts: with --index-snapshot, writers upsert and delete
// as fast as they can while the log is compacted again and again (a tiny
// --index-compact-mib); the process is killed with SIGKILL mid-stream; a
// new process on the same files must hold every write that was
// acknowledged before the kill (the issue asks for those older than one
// second; every acknowledged one is checked).
func TestKillDuringUpserts(t *testing.T) {
	dir := t.TempDir()
	snap := filepath.Join(dir, "index.snap")
	flags := []string{"--index-snapshot", snap, "--index-compact-mib", "1"}
	p := startProc(t, flags...)
	const dim = 256 // about 1 KiB per logged upsert
	mustRequest(t, "PUT", p.url+"/v1/collections/graph", map[string]any{"dimension": dim, "m": 8, "ef_construction": 32}, 201)
	mustRequest(t, "PUT", p.url+"/v1/collections/quant", map[string]any{"dimension": dim, "storage": "int8"}, 201)

	// For each item, the last acknowledged write and the one in flight (a
	// write the server may have applied without answering before it died).
	type write struct {
		vec    []float32 // nil: a delete
		known  bool
		flight *[]float32
	}
	var mu sync.Mutex
	state := map[string]*write{}
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				col := []string{"graph", "quant"}[rng.IntN(2)]
				id := fmt.Sprintf("w%d-%d", w, rng.IntN(400)) // each writer owns its ids
				key := col + "/" + id
				var vec []float32
				if rng.IntN(5) != 0 {
					vec = randVec(rng, dim)
				}
				mu.Lock()
				if state[key] == nil {
					state[key] = &write{}
				}
				state[key].flight = &vec
				mu.Unlock()
				var code int
				var err error
				if vec == nil {
					code, _, err = request("DELETE", p.url+"/v1/collections/"+col+"/items/"+id, nil)
				} else {
					code, _, err = request("PUT", p.url+"/v1/collections/"+col+"/items/"+id, map[string]any{"vector": vec, "metadata": map[string]int{"i": i}})
				}
				if err != nil {
					return // the server died mid-request: unacknowledged
				}
				if code != 200 && !(code == 404 && vec == nil) {
					t.Errorf("%s: status %d", key, code)
					return
				}
				mu.Lock()
				state[key] = &write{vec: vec, known: true}
				mu.Unlock()
				acked.Add(1)
			}
		})
	}
	// Kill once several compactions' worth of writes went through.
	for acked.Load() < 15000 {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock() // freeze the record of acknowledgements at the kill
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	final := make(map[string]write, len(state))
	for k, v := range state {
		final[k] = *v
	}
	total := acked.Load()
	mu.Unlock()
	close(stop)
	wg.Wait()
	if n := strings.Count(p.logs.String(), "index compacted"); n < 2 {
		t.Errorf("%d compactions before the kill; the test is weaker than meant:\n%s", n, p.logs)
	}

	q := startProc(t, flags...)
	// holds reports whether the restarted server holds id with vector v.
	holds := func(col, id string, v []float32) bool {
		code, data, err := request("POST", q.url+"/v1/collections/"+col+"/search", map[string]any{"vector": v, "k": 1, "exact": true})
		if err != nil || code != 200 {
			t.Fatalf("search %s/%s: %d %s %v", col, id, code, data, err)
		}
		var r struct{ Results []hit }
		_ = json.Unmarshal(data, &r)
		return len(r.Results) > 0 && r.Results[0].ID == id && r.Results[0].Score > 0.999
	}
	checked := 0
	for key, w := range final {
		col, id, _ := strings.Cut(key, "/")
		if !w.known {
			continue // never acknowledged
		}
		flightOK := w.flight != nil && *w.flight != nil && holds(col, id, *w.flight)
		// A delete in flight may have been applied: then the item is gone,
		// which DELETE's 404 shows (and a 200 shows it held something else).
		flightDeleted := func() bool {
			if w.flight == nil || *w.flight != nil {
				return false
			}
			code, _, _ := request("DELETE", q.url+"/v1/collections/"+col+"/items/"+id, nil)
			return code == 404
		}
		switch {
		case w.vec != nil && !holds(col, id, w.vec) && !flightOK && !flightDeleted():
			t.Errorf("%s: acknowledged before the kill, missing or changed after restart", key)
		case w.vec == nil && w.flight == nil:
			if code, _, _ := request("DELETE", q.url+"/v1/collections/"+col+"/items/"+id, nil); code != 404 {
				t.Errorf("%s: deleted before the kill, back after restart", key)
			}
		}
		checked++
	}
	t.Logf("%d writes acknowledged before SIGKILL; %d items checked after restart", total, checked)
	q.stop(t)
}

func ifNil(v []float32, dim int) []float32 {
	if v != nil {
		return v
	}
	v = make([]float32, dim)
	v[0] = 1
	return v
}

// TestTwoProcessesOneDatabase: two servers on one PostgreSQL (PGlite with
// pgvector, and IMGSERVE_TEST_POSTGRES when set) see each other's writes.
func TestTwoProcessesOneDatabase(t *testing.T) {
	for _, db := range pgtest.Servers(t) {
		t.Run(db.Name, func(t *testing.T) {
			a := startProc(t, "--index-postgres", db.URL)
			b := startProc(t, "--index-postgres", db.URL)
			rng := rand.New(rand.NewPCG(3, 4))
			const dim = 32
			vecs := map[string][]float32{}
			for i := range 20 {
				id := fmt.Sprintf("item-%d", i)
				vecs[id] = randVec(rng, dim)
				srv := []*proc{a, b}[i%2]
				mustRequest(t, "PUT", srv.url+"/v1/collections/shared/items/"+id, map[string]any{"vector": vecs[id], "metadata": map[string]int{"i": i}}, 200)
			}
			for id, v := range vecs {
				for _, srv := range []*proc{a, b} {
					if hits := searchIDs(t, srv.url+"/v1/collections/shared/search", v, 1); len(hits) != 1 || hits[0].ID != id {
						t.Fatalf("%s: search for %s found %v", srv.url, id, hits)
					}
				}
			}
			mustRequest(t, "DELETE", b.url+"/v1/collections/shared/items/item-3", nil, 200)
			mustRequest(t, "DELETE", a.url+"/v1/collections/shared/items/item-3", nil, 404)
			var info struct{ Count int }
			_ = json.Unmarshal(mustRequest(t, "GET", a.url+"/v1/collections/shared", nil, 200), &info)
			if info.Count != 19 {
				t.Fatalf("count after a delete through the other server: %d", info.Count)
			}
			// A collection dropped and recreated by one is seen by the other,
			// whose cached table is then gone.
			mustRequest(t, "DELETE", a.url+"/v1/collections/shared", nil, 200)
			mustRequest(t, "PUT", a.url+"/v1/collections/shared/items/x", map[string]any{"vector": vecs["item-0"]}, 200)
			if hits := searchIDs(t, b.url+"/v1/collections/shared/search", vecs["item-0"], 5); len(hits) != 1 || hits[0].ID != "x" {
				t.Fatalf("after drop and recreate: %v", hits)
			}
			mustRequest(t, "PUT", b.url+"/v1/collections/shared/items/y", map[string]any{"vector": vecs["item-1"]}, 200)
			_ = json.Unmarshal(mustRequest(t, "GET", a.url+"/v1/collections/shared", nil, 200), &info)
			if info.Count != 2 {
				t.Fatalf("count after writes through both: %d", info.Count)
			}
			a.stop(t)
			b.stop(t)
		})
	}
}

// TestIndexOpenFailures: a database that cannot be reached or a snapshot
// in a missing folder stops the server at start with a clear message.
func TestIndexOpenFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfg, []byte("models: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	home := paths.RepoHome()
	for _, c := range []struct {
		flags []string
		says  string
	}{
		{[]string{"--index-postgres", "postgres://postgres@" + closed + "/x?connect_timeout=5"}, "pgstore"},
		{[]string{"--index-snapshot", "/nonexistent/dir/index.snap"}, "no such file or directory"},
	} {
		args := append([]string{"--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--config", cfg, "--ort-lib", paths.ORTLib(home)}, c.flags...)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), envMain+"=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), c.says) {
			t.Errorf("%v: %v\n%s\nwant exit 1 saying %q", c.flags, err, out, c.says)
		}
	}
}
