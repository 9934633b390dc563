package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"maps"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/internal/pgtest"
	"github.com/imgserve/imgserve/internal/redistest"
	"github.com/imgserve/imgserve/internal/testfiles"
	"github.com/imgserve/imgserve/jobs"
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
	return startServing(t, "models: []\n", t.TempDir(), flags...)
}

// startServing starts the server on the models configuration cfgYAML,
// whose files are in modelsDir, and the given flags, and waits until it
// is ready: every model it serves has loaded. When the test fails, the
// server's log is shown once it is gone.
func startServing(t *testing.T, cfgYAML, modelsDir string, flags ...string) *proc {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfg, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	home := paths.RepoHome()
	args := append([]string{"--addr", addr, "--grpc-addr", "127.0.0.1:0", "--config", cfg, "--ort-lib", paths.ORTLib(home), "--models-dir", modelsDir}, flags...)
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
		if t.Failed() {
			t.Logf("log of the server on %s:\n%s", p.url, p.logs)
		}
	})
	deadline := time.Now().Add(2 * time.Minute) // only a guard against a hang
	for {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("server exited at start: %v (its log follows)", err)
		default:
		}
		if resp, err := http.Get(p.url + "/v2/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s not ready after 2 minutes", p.url)
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

// u2netpServing serves the real u2netp weights with one instance on one
// thread: each process takes one core of a two-core host, and an item
// takes about a quarter of a second, long enough to kill a process while
// it holds some.
const u2netpServing = `
models:
  - name: u2netp
    file: u2netp.onnx
    task: matting
    batching: {max_batch_size: 1, instances: 1}
    intra_op_threads: 1
`

// TestJobsAcrossTwoProcesses: two server processes share one real Redis
// (issue 13, acceptance 2). A remove-background job submitted to one is
// worked on by both, and the other answers its status, events and
// results; killed with SIGKILL mid-job while it holds items, it loses
// none: the survivor takes them over (XAUTOCLAIM, --jobs-claim-after
// later) and finishes the job, every result identical to what the
// single-image endpoint gives for its image.
func TestJobsAcrossTwoProcesses(t *testing.T) {
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	modelsDir := paths.Models(paths.RepoHome())
	if _, err := os.Stat(filepath.Join(modelsDir, "u2netp.onnx")); err != nil {
		t.Fatalf("the real u2netp weights are missing (run scripts/fetch-models.sh): %v", err)
	}
	flags := []string{"--jobs-redis", rs.URL, "--jobs-claim-after", "3s", "--job-workers", "2"}
	a := startServing(t, u2netpServing, modelsDir, flags...)
	b := startServing(t, u2netpServing, modelsDir, flags...)
	for _, p := range []*proc{a, b} {
		mustRequest(t, "GET", p.url+"/v2/models/u2netp/ready", nil, 200)
	}

	// What the single-image endpoint gives for each image.
	const n = 30
	images := jobPhotos(t, n)
	want := map[string][]byte{}
	var files [][3]any
	for i, img := range images {
		name := fmt.Sprintf("img-%02d.png", i)
		body, ct := multipartForm(t, map[string]string{"model": "u2netp"}, [3]any{"image", name, img})
		want[name] = mustPost(t, a.url+"/v1/remove-background", ct, body, 200)
		files = append(files, [3]any{"image", name, img})
	}

	body, ct := multipartForm(t, map[string]string{"task": "remove-background", "model": "u2netp"}, files...)
	var sub struct {
		ID    string `json:"id"`
		Items int    `json:"items"`
	}
	if err := json.Unmarshal(mustPost(t, a.url+"/v1/jobs", ct, body, http.StatusAccepted), &sub); err != nil || sub.Items != n {
		t.Fatalf("POST /v1/jobs: %+v %v", sub, err)
	}
	id := sub.ID

	// The other process answers the job's status, its events as items
	// finish, and the results done so far.
	st := jobStatus(t, b.url, id)
	if st.Items != n || (st.Status != jobs.StateQueued && st.Status != jobs.StateRunning) {
		t.Fatalf("status through the other process: %+v", st)
	}
	followEvents(t, b.url, id, func(_ string, st jobs.Status) bool { return st.Done >= 3 })
	if st := jobStatus(t, a.url, id); st.Finished() {
		t.Fatalf("the events said 3 items were done only once all %d were: they are not streamed as items finish", st.Items)
	}
	served := 0
	for _, it := range jobStatus(t, b.url, id).ItemStatus {
		if it.Status == jobs.StateDone {
			if got := mustRequest(t, "GET", b.url+"/v1/jobs/"+id+"/items/"+it.Name, nil, 200); !bytes.Equal(got, want[it.Name]) {
				t.Fatalf("%s through the other process differs from the single request's", it.Name)
			}
			served++
		}
	}
	if served < 3 {
		t.Fatalf("the other process served %d results of a job whose events said 3 were done", served)
	}

	// Kill it once it has run a few items, while it holds some and the job
	// has more left.
	var ranB, ranA float64
	var heldB int64
	deadline := time.Now().Add(2 * time.Minute) // only a guard against a hang
	for {
		ranB, heldB = jobItemsRun(t, b.url), pendingOf(t, rdb, b)
		st := jobStatus(t, a.url, id)
		left := n - st.Done - st.Failed
		if left < 3 {
			t.Fatalf("the job is nearly done (%d items left) before process B ran 3 items while holding one: it cannot be killed mid-job", left)
		}
		if ranB >= 3 && heldB >= 1 {
			ranA = jobItemsRun(t, a.url)
			if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-b.done
			b.done <- nil
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process B ran %.0f items and holds %d: it never ran 3 while holding one", ranB, heldB)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// What B took and never finished, now that it is gone.
	if heldB = pendingOf(t, rdb, b); heldB < 1 {
		t.Fatal("process B held no item when it died: the test is weaker than meant")
	}

	st = followEvents(t, a.url, id, func(event string, _ jobs.Status) bool { return event == "done" })
	if st.Status != jobs.StateDone || st.Done != n || st.Failed != 0 {
		t.Fatalf("after process B died mid-job: %+v", st)
	}
	st = jobStatus(t, a.url, id)
	output := map[string]string{}
	for _, it := range st.ItemStatus {
		if it.Status != jobs.StateDone {
			t.Fatalf("item %s: %s %s", it.Name, it.Status, it.Error)
		}
		output[cmp.Or(it.Output, it.Name)] = it.Name
	}
	results := mustRequest(t, "GET", a.url+"/v1/jobs/"+id+"/results", nil, 200)
	zr, err := zip.NewReader(bytes.NewReader(results), int64(len(results)))
	if err != nil {
		t.Fatalf("results are not a zip: %v", err)
	}
	if len(zr.File) != n {
		t.Fatalf("%d results, want %d", len(zr.File), n)
	}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[output[f.Name]]; !ok || !bytes.Equal(got, w) {
			t.Fatalf("result %s differs from the single request's", f.Name)
		}
	}

	ranAfter, reclaimed := jobItemsRun(t, a.url), metricSum(t, a.url, "imgserve_job_items_reclaimed_total")
	t.Logf("items run: %.0f by process A (%.0f before the kill), at least %.0f by process B before SIGKILL; B held %d when it died, A took over %.0f",
		ranAfter, ranA, ranB, heldB, reclaimed)
	if ranA < 1 {
		t.Errorf("process A ran no item before the kill: both should work on the job")
	}
	if reclaimed < float64(heldB) {
		t.Errorf("process B died holding %d items, process A took over %.0f", heldB, reclaimed)
	}
	if xp, err := rdb.XPending(context.Background(), jobs.RedisStream, jobs.RedisGroup).Result(); err != nil || xp.Count != 0 {
		t.Errorf("items still pending after the job finished: %+v %v", xp, err)
	}
	a.stop(t)
}

// jobPhotos are n small different crops of a photo, as PNG.
func jobPhotos(t *testing.T, n int) [][]byte {
	src := testfiles.PhotoNRGBA(testfiles.Photo03MP)
	out := make([][]byte, n)
	for i := range out {
		x, y := (i*37)%(src.Rect.Dx()-96), (i*53)%(src.Rect.Dy()-80)
		var buf bytes.Buffer
		if err := png.Encode(&buf, src.SubImage(image.Rect(x, y, x+96, y+80))); err != nil {
			t.Fatal(err)
		}
		out[i] = buf.Bytes()
	}
	return out
}

// multipartForm is a multipart body of fields and files {field, file
// name, data}, and its content type.
func multipartForm(t *testing.T, fields map[string]string, files ...[3]any) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if err := mw.WriteField(k, fields[k]); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		w, err := mw.CreateFormFile(f[0].(string), f[1].(string))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f[2].([]byte))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

func mustPost(t *testing.T, url, contentType string, body []byte, want int) []byte {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s %v; want %d", url, resp.StatusCode, data, err, want)
	}
	return data
}

func jobStatus(t *testing.T, url, id string) jobs.Status {
	t.Helper()
	var st jobs.Status
	if err := json.Unmarshal(mustRequest(t, "GET", url+"/v1/jobs/"+id, nil, 200), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// followEvents follows a job's Server-Sent Events on url until accept
// takes one, checking that progress never goes back, and returns that
// event's status.
func followEvents(t *testing.T, url, id string, accept func(event string, st jobs.Status) bool) jobs.Status {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // only a guard against a hang
	last := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/jobs/"+id+"/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("events on %s: %v", url, err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			resp.Body.Close()
			cancel()
			t.Fatalf("events on %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		event := ""
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				event = e
				continue
			}
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var st jobs.Status
			if err := json.Unmarshal([]byte(data), &st); err != nil || (event != "progress" && event != "done") || st.ID != id {
				t.Fatalf("events on %s: event %q: %s %v", url, event, data, err)
			}
			if st.Done+st.Failed < last {
				t.Fatalf("events on %s: progress went back from %d to %d", url, last, st.Done+st.Failed)
			}
			last = st.Done + st.Failed
			if accept(event, st) {
				resp.Body.Close()
				cancel()
				return st
			}
		}
		resp.Body.Close() // the stream ended with the request deadline: follow again
		cancel()
	}
	t.Fatalf("events on %s: not there within 2 minutes (%d items finished)", url, last)
	return jobs.Status{}
}

// jobItemsRun is how many items of remove-background jobs a process ran
// to the end, by its /metrics.
func jobItemsRun(t *testing.T, url string) float64 {
	return metricSum(t, url, `imgserve_job_items_total{outcome="done",task="remove-background"}`) +
		metricSum(t, url, `imgserve_job_items_total{outcome="failed",task="remove-background"}`)
}

// metricSum adds up the series on url's /metrics named by series, a name
// or a name with its labels; none is 0.
func metricSum(t *testing.T, url, series string) float64 {
	t.Helper()
	sum := 0.0
	for _, line := range strings.Split(string(mustRequest(t, "GET", url+"/metrics", nil, 200)), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || (name != series && !strings.HasPrefix(name, series+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics: %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// pendingOf is how many job items process p holds in Redis: taken and not
// yet finished. Replicas are consumers named host-pid-random.
func pendingOf(t *testing.T, rdb *redis.Client, p *proc) int64 {
	t.Helper()
	xp, err := rdb.XPending(context.Background(), jobs.RedisStream, jobs.RedisGroup).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	pid := strconv.Itoa(p.cmd.Process.Pid)
	for consumer, k := range xp.Consumers {
		if parts := strings.Split(consumer, "-"); len(parts) >= 3 && parts[len(parts)-2] == pid {
			return k
		}
	}
	return 0
}
