package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/internal/fakeclock"
	"github.com/imgserve/imgserve/internal/redistest"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/jobs"
)

// withJobsRedis gives a server its own connection to a shared Redis, as
// a replica of its own would have.
func withJobsRedis(t *testing.T, url string, claimAfter time.Duration) func(*Options) {
	r, err := jobs.OpenRedis(context.Background(), url, jobs.RedisOptions{TTL: DefaultJobTTL, Budget: DefaultJobMemory, ClaimAfter: claimAfter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return func(o *Options) { o.Jobs.Backend = r }
}

// Two servers, each with its own listener, share one real Redis (and one
// index, as replicas share PostgreSQL): a job submitted to one gives the
// single routes' results through the other, both work on its items, and
// when one dies mid-job the other finishes it with no item lost.
func TestJobsAcrossRedisReplicas(t *testing.T) {
	rs := redistest.Start(t)
	store := index.NewStore()
	// A live replica renews its items every second: one left unrenewed
	// for 3 s belongs to a dead replica.
	const claimAfter = 3 * time.Second
	a := startServer(t, everyFamilyConfig, testmodels.Dir(), withIndex(store), withJobsRedis(t, rs.URL, claimAfter))
	b := startServer(t, everyFamilyConfig, testmodels.Dir(), withIndex(store), withJobsRedis(t, rs.URL, claimAfter))
	wants := checkJobsEqualSingle(t, store, a, b)
	ranA, ranB := a.Server.jobs.ItemsRun(), b.Server.jobs.ItemsRun()
	t.Logf("items run: %d by one replica, %d by the other", ranA, ranB)
	if ranA < 50 || ranB < 50 {
		t.Fatalf("items run: %d and %d; both replicas should have worked on the jobs", ranA, ranB)
	}
	if ranA+ranB != 500 {
		t.Fatalf("items run: %d and %d, %d in all for 500 items: a live replica's item was taken over", ranA, ranB, ranA+ranB)
	}
	// Each replica's /metrics counts the items it ran, all done, none
	// taken over.
	for _, s := range []*testServer{a, b} {
		var done, other float64
		for _, line := range strings.Split(metricsText(t, s.URL), "\n") {
			name, v, _ := strings.Cut(line, " ")
			f, _ := strconv.ParseFloat(v, 64)
			switch {
			case strings.HasPrefix(name, `imgserve_job_items_total{outcome="done",`):
				done += f
			case strings.HasPrefix(name, "imgserve_job_items_total{"), strings.HasPrefix(name, "imgserve_job_items_reclaimed_total{"):
				other += f
			}
		}
		if ran := s.Server.jobs.ItemsRun(); done != float64(ran) || other != 0 {
			t.Fatalf("/metrics: %v items done and %v failed or taken over; the replica ran %d", done, other, ran)
		}
	}

	// Kill one replica mid-job.
	const n = 30
	var files [][3]any
	for i := range n {
		files = append(files, [3]any{"image", fmt.Sprintf("img-%02d.png", i), jobImage(t, i, 64, 48)})
	}
	body, ct := form(t, map[string]string{"task": "remove-background", "model": "u2netp"}, files...)
	id := submitJob(t, a.URL, body, ct, "")
	before := b.Server.jobs.ItemsRun()
	for b.Server.jobs.ItemsRun() < before+3 {
		time.Sleep(5 * time.Millisecond)
	}
	cut, cancel := context.WithCancel(context.Background())
	cancel()
	b.Server.Shutdown(cut) // at once: the items it holds are never finished
	st := awaitJob(t, a.URL, id)
	if st.Status != jobs.StateDone || st.Done != n || st.Failed != 0 {
		t.Fatalf("after a replica died mid-job: %+v", st)
	}
	got := jobResultsOf(t, a.URL, id)
	if len(got) != n {
		t.Fatalf("after a replica died: %d results, want %d", len(got), n)
	}
	for name, g := range got {
		if w := wants["remove-background"][name]; !bytes.Equal(g, w) {
			t.Fatalf("after a replica died: result %s differs from the single request's", name)
		}
	}
	t.Logf("the surviving replica ran %d of the job's items", a.Server.jobs.ItemsRun()-ranA)
}

// With a fake clock: a finished job answers until its TTL, then 404, and
// the memory it held is returned. (The Redis store's keys carry the same
// TTL as EXPIREs; jobs' own tests watch Redis erase them.)
func TestJobGoneAfterTTL(t *testing.T) {
	clk := fakeclock.New()
	srv := startServer(t, everyFamilyConfig, testmodels.Dir(), func(o *Options) { o.Jobs.Clock = clk })
	body, ct := form(t, map[string]string{"task": "caption"},
		[3]any{"image", "a.png", jobImage(t, 1, 64, 48)}, [3]any{"image", "b.png", jobImage(t, 2, 64, 48)})
	id := submitJob(t, srv.URL, body, ct, "")
	st := awaitJob(t, srv.URL, id)
	if st.Done != 2 || !st.ExpiresAt.Equal(st.FinishedAt.Add(DefaultJobTTL)) {
		t.Fatalf("finished: %+v", st)
	}
	if srv.Server.JobMemory().InUse() == 0 {
		t.Fatal("a finished job's results hold no memory?")
	}
	clk.Advance(DefaultJobTTL - time.Second)
	if code, _, _ := do(t, "GET", srv.URL+"/v1/jobs/"+id+"/items/a.png", nil, nil); code != 200 {
		t.Fatalf("before TTL: %d", code)
	}
	clk.Advance(time.Second)
	for _, p := range []string{"", "/results", "/events", "/items/a.png"} {
		if code, _, _ := do(t, "GET", srv.URL+"/v1/jobs/"+id+p, nil, nil); code != http.StatusNotFound {
			t.Fatalf("GET %s after TTL: %d, want 404", p, code)
		}
	}
	if m := srv.Server.JobMemory(); m.InUse() != 0 || m.Len() != 0 {
		t.Fatalf("after TTL the store holds %d jobs, %d bytes", m.Len(), m.InUse())
	}
}

// Bombs, huge archives, mismatched names and over-budget jobs get a clear
// 4xx before any item is queued (so before any inference).
func TestJobInputRefusedBeforeWork(t *testing.T) {
	srv := startServer(t, everyFamilyConfig, testmodels.Dir(), func(o *Options) {
		o.Jobs.Memory = 6 << 20
		o.Jobs.Limits = jobs.Limits{MaxItems: 1000, MaxBytes: 64 << 20, MaxRatio: 100}
		o.MaxBodySize = 32 << 20
	})
	img := jobImage(t, 3, 64, 48)
	many := map[string][]byte{}
	for i := range 10000 {
		many[fmt.Sprintf("%05d.png", i)] = img[:8]
	}
	bomb := zipOf(t, map[string][]byte{"a.png": make([]byte, 100<<20)}) // 100 MiB of zeros in some 100 KiB
	var bigFiles [][3]any
	big := jobImage(t, 5, 1000, 1000)
	for i := range 3 { // 3 x 1000x1000: 12 MB of expected results, over the 6 MiB budget
		bigFiles = append(bigFiles, [3]any{"image", fmt.Sprintf("%d.png", i), big})
	}
	bigBody, bigCT := form(t, map[string]string{"task": "remove-background"}, bigFiles...)
	mismatched, mmCT := form(t, map[string]string{"task": "inpaint"},
		[3]any{"image", "cat.png", img}, [3]any{"mask", "cat.png", img}, [3]any{"mask", "dog.png", img})
	noMask, nmCT := form(t, map[string]string{"task": "inpaint"}, [3]any{"image", "cat.png", img})
	notImage, niCT := form(t, map[string]string{"task": "caption"}, [3]any{"image", "cat.png", []byte("no image at all")})
	badTask, btCT := form(t, map[string]string{"task": "paint"}, [3]any{"image", "cat.png", img})
	for _, c := range []struct {
		name string
		ct   string
		body []byte
		code int
		want string
	}{
		{"zip bomb", "application/zip", bomb, 413, "uncompressed"},
		{"10,000 entries", "application/zip", zipOf(t, many), 413, "more than 2000 files"},
		{"mismatched mask", mmCT, mismatched, 400, `mask "dog.png" matches no image`},
		{"missing mask", nmCT, noMask, 400, `image "cat.png" has no mask`},
		{"not an image", niCT, notImage, 415, `image "cat.png"`},
		{"unknown task", btCT, badTask, 400, "task must be one of"},
		{"over the whole budget", bigCT, bigBody, 413, "more than the whole jobs memory budget"},
		{"not a zip", "application/zip", []byte("PK nothing"), 400, "malformed zip"},
	} {
		code, _, resp := do(t, "POST", srv.URL+"/v1/jobs?task=caption", map[string]string{"Content-Type": c.ct}, c.body)
		if code != c.code || !strings.Contains(errorMessage(resp), c.want) {
			t.Errorf("%s: %d %s; want %d with %q", c.name, code, resp, c.code, c.want)
		}
	}
	if m := srv.Server.JobMemory(); m.Len() != 0 || m.InUse() != 0 {
		t.Fatalf("a refused job was stored: %d jobs, %d bytes", m.Len(), m.InUse())
	}
	// One job that fits, then another that fits only once it expires: 429
	// with Retry-After.
	two, twoCT := form(t, map[string]string{"task": "remove-background", "model": "u2netp"}, bigFiles[:1]...)
	submitJob(t, srv.URL, two, twoCT, "")
	code, h, resp := do(t, "POST", srv.URL+"/v1/jobs", map[string]string{"Content-Type": twoCT}, two)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(string(resp), "retry when earlier jobs have expired") {
		t.Fatalf("over the free budget: %d %q %s", code, h.Get("Retry-After"), resp)
	}
}
