package server

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/jobs"
)

// jobImage is a distinct small test image: a gradient and a disc whose
// place and colour depend on i, so every item's result differs.
func jobImage(t testing.TB, i, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	cx, cy, r := (i*7)%w, (i*5)%h, 6+i%9
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8(i * 37), 255}
			if (x-cx)*(x-cx)+(y-cy)*(y-cy) < r*r {
				c = color.NRGBA{uint8(255 - i*13), 40, uint8(i * 29), 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jobMask marks a rectangle that depends on i.
func jobMask(t testing.TB, i, w, h int) []byte {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := (i * 3) % (h / 2); y < (i*3)%(h/2)+h/3; y++ {
		for x := (i * 5) % (w / 2); x < (i*5)%(w/2)+w/4; x++ {
			m.SetGray(x, y, color.Gray{255})
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, m)
	return buf.Bytes()
}

// jobCase is one image of a job with its per-image inputs.
type jobCase struct {
	name  string
	image []byte
	mask  []byte
	boxes string
}

// form builds a multipart body: fields, then files as (field, name, data).
func form(t testing.TB, fields map[string]string, files ...[3]any) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		mw.WriteField(k, fields[k])
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, f[0], f[1]))
		h.Set("Content-Type", "application/octet-stream")
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f[2].([]byte))
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// zipOf archives files by name.
func zipOf(t testing.TB, files map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[n])
	}
	zw.Close()
	return buf.Bytes()
}

// submitJob posts a job and returns its id.
func submitJob(t testing.TB, url string, body []byte, ct string, query string) string {
	t.Helper()
	code, h, resp := do(t, "POST", url+"/v1/jobs"+query, map[string]string{"Content-Type": ct}, body)
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/jobs: %d %s", code, resp)
	}
	var r struct {
		ID        string    `json:"id"`
		Items     int       `json:"items"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || len(r.ID) != 32 || h.Get("Location") != "/v1/jobs/"+r.ID || r.ExpiresAt.IsZero() {
		t.Fatalf("bad 202 reply: %s (Location %q)", resp, h.Get("Location"))
	}
	return r.ID
}

// awaitJob follows a job's events until it is done and returns its status.
func awaitJob(t testing.TB, url, id string) jobs.Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/v1/jobs/" + id + "/events")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			resp.Body.Close()
			t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			if e, ok := strings.CutPrefix(line, "event: "); ok {
				event = e
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok && event == "done" {
				resp.Body.Close()
				var st jobs.Status
				if err := json.Unmarshal([]byte(d), &st); err != nil {
					t.Fatal(err)
				}
				return st
			}
		}
		resp.Body.Close() // the stream ended with the request deadline: follow again
	}
	t.Fatalf("job %s did not finish", id)
	return jobs.Status{}
}

// jobResultsOf reads /results: a zip's entries by name, or JSON lines by
// their "name".
func jobResultsOf(t testing.TB, url, id string) map[string][]byte {
	t.Helper()
	code, h, body := do(t, "GET", url+"/v1/jobs/"+id+"/results", nil, nil)
	if code != 200 {
		t.Fatalf("results: %d %s", code, body)
	}
	out := map[string][]byte{}
	if h.Get("Content-Type") == "application/x-ndjson" {
		for _, line := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(line, &obj); err != nil {
				t.Fatalf("bad JSON line %q", line)
			}
			var name string
			json.Unmarshal(obj["name"], &name)
			delete(obj, "name")
			out[name], _ = json.Marshal(obj)
		}
		return out
	}
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("results are not a zip: %v", err)
	}
	for _, f := range zr.File {
		rc, _ := f.Open()
		out[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	return out
}

// jobTask is a task with its parameters and how the single-image route is
// called for one case.
type jobTask struct {
	task   string
	params map[string]string
	// single calls the single-image route and returns what the job's
	// result for this image must equal, under the result's name.
	single func(t *testing.T, srv *testServer, c jobCase) (string, []byte)
}

// cutouts are /v1/remove-background's answers for the jobs' test images.
var (
	cutoutsMu sync.Mutex
	cutouts   = map[string][]byte{}
)

// withoutCount drops the PUT reply's collection count, which depends on
// how many items went in before.
func withoutCount(t *testing.T, b []byte) []byte {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Fatalf("bad JSON %q", b)
	}
	delete(obj, "count")
	out, _ := json.Marshal(obj)
	return out
}

func TestJobResultsEqualSingleRequests(t *testing.T) {
	store := index.NewStore()
	srv := startServer(t, everyFamilyConfig, testmodels.Dir(), withIndex(store))
	checkJobsEqualSingle(t, store, srv, srv)
	if m := srv.Server.JobMemory(); m.InUse() != 0 || m.Len() != 0 {
		t.Fatalf("after every job was deleted the store holds %d jobs, %d bytes", m.Len(), m.InUse())
	}
}

// checkJobsEqualSingle runs a 50-image job of every task, through
// multipart and through a zip, and checks each result against the
// single-image route's. Jobs are submitted to one server and followed,
// fetched and deleted through the other (the same one in process; two
// replicas over Redis). It returns the single routes' results by task.
func checkJobsEqualSingle(t *testing.T, store *index.Store, srv, other *testServer) map[string]map[string][]byte {
	const n = 50
	wants := map[string]map[string][]byte{}
	cases := make([]jobCase, n)
	for i := range cases {
		cases[i] = jobCase{name: fmt.Sprintf("img-%02d.png", i), image: jobImage(t, i, 64, 48), mask: jobMask(t, i, 64, 48)}
		if i%2 == 1 { // watermark: half by mask, half by boxes
			cases[i].boxes = fmt.Sprintf("[[%d,%d,20,10]]", i%40, i%30)
		}
	}
	for _, c := range []string{"single", "viajob"} {
		if code, _, b := do(t, "PUT", srv.URL+"/v1/collections/"+c, nil, []byte(`{"dimension":512}`)); code/100 != 2 {
			t.Fatalf("creating collection: %d %s", code, b)
		}
	}
	post := func(t *testing.T, route string, fields map[string]string, c jobCase, mask bool) []byte {
		files := [][3]any{{"image", c.name, c.image}}
		if mask {
			files = append(files, [3]any{"mask", "mask.png", c.mask})
		}
		body, ct := form(t, fields, files...)
		code, _, resp := do(t, "POST", srv.URL+route, map[string]string{"Content-Type": ct}, body)
		if code != 200 {
			t.Fatalf("%s: %d %s", route, code, resp)
		}
		return resp
	}
	stem := func(name string) string { return strings.TrimSuffix(name, path.Ext(name)) }
	tasks := []jobTask{
		{"remove-background", map[string]string{"model": "u2netp"}, func(t *testing.T, srv *testServer, c jobCase) (string, []byte) {
			// u2netp is the slow one: its answers are computed once for
			// every server of the test binary (they load the same model).
			name := stem(c.name) + ".png"
			cutoutsMu.Lock()
			defer cutoutsMu.Unlock()
			if cutouts[name] == nil {
				cutouts[name] = post(t, "/v1/remove-background", map[string]string{"model": "u2netp"}, c, false)
			}
			return name, cutouts[name]
		}},
		{"remove-watermark", nil, func(t *testing.T, srv *testServer, c jobCase) (string, []byte) {
			if c.boxes != "" {
				return stem(c.name) + ".png", post(t, "/v1/remove-watermark", map[string]string{"boxes": c.boxes}, c, false)
			}
			return stem(c.name) + ".png", post(t, "/v1/remove-watermark", nil, c, true)
		}},
		{"inpaint", map[string]string{"format": "jpeg"}, func(t *testing.T, srv *testServer, c jobCase) (string, []byte) {
			return stem(c.name) + ".jpg", post(t, "/v1/inpaint", map[string]string{"format": "jpeg"}, c, true)
		}},
		{"caption", map[string]string{"max_new_tokens": "8"}, func(t *testing.T, srv *testServer, c jobCase) (string, []byte) {
			var obj map[string]json.RawMessage
			json.Unmarshal(post(t, "/v1/caption", map[string]string{"max_new_tokens": "8"}, c, false), &obj)
			b, _ := json.Marshal(obj)
			return c.name, b
		}},
		{"embed", map[string]string{"collection": "viajob"}, func(t *testing.T, srv *testServer, c jobCase) (string, []byte) {
			body, ct := form(t, nil, [3]any{"image", c.name, c.image})
			code, _, resp := do(t, "PUT", srv.URL+"/v1/collections/single/items/"+stem(c.name), map[string]string{"Content-Type": ct}, body)
			if code != 200 {
				t.Fatalf("PUT item: %d %s", code, resp)
			}
			return c.name, bytes.Replace(withoutCount(t, resp), []byte(`"single"`), []byte(`"viajob"`), 1)
		}},
	}
	for _, tk := range tasks {
		t.Run(tk.task, func(t *testing.T) {
			want := map[string][]byte{}
			wants[tk.task] = want
			for _, c := range cases {
				name, b := tk.single(t, srv, c)
				want[name] = b
			}
			fields := map[string]string{"task": tk.task}
			for k, v := range tk.params {
				fields[k] = v
			}
			perBoxes := map[string]json.RawMessage{}
			var files [][3]any
			archive := map[string][]byte{}
			for _, c := range cases {
				files = append(files, [3]any{"image", c.name, c.image})
				archive["photos/"+c.name] = c.image
				withMask := tk.task == "inpaint" || (tk.task == "remove-watermark" && c.boxes == "")
				if withMask {
					files = append(files, [3]any{"mask", c.name, c.mask})
					archive["masks/"+c.name] = c.mask
				}
				if tk.task == "remove-watermark" && c.boxes != "" {
					perBoxes[c.name] = json.RawMessage(c.boxes)
				}
			}
			if len(perBoxes) > 0 {
				b, _ := json.Marshal(perBoxes)
				fields["boxes"] = string(b)
			}
			body, ct := form(t, fields, files...)
			query := "?"
			for k, v := range fields {
				query += k + "=" + url.QueryEscape(v) + "&"
			}
			for _, via := range []struct {
				name      string
				body      []byte
				ct, query string
			}{
				{"multipart", body, ct, ""},
				{"zip", zipOf(t, archive), "application/zip", query},
			} {
				id := submitJob(t, srv.URL, via.body, via.ct, via.query)
				st := awaitJob(t, other.URL, id)
				if st.Status != jobs.StateDone || st.Done != n || st.Failed != 0 {
					t.Fatalf("%s job: %+v", via.name, st)
				}
				got := jobResultsOf(t, other.URL, id)
				if tk.task == "embed" {
					for name, b := range got {
						got[name] = withoutCount(t, b)
					}
				}
				if len(got) != n {
					t.Fatalf("%s job: %d results, want %d", via.name, len(got), n)
				}
				for name, w := range want {
					if !bytes.Equal(got[name], w) {
						t.Fatalf("%s job: result %s differs from the single request's (%d vs %d bytes)", via.name, name, len(got[name]), len(w))
					}
				}
				// One item by its input's name, byte for byte.
				code, h, one := do(t, "GET", srv.URL+"/v1/jobs/"+id+"/items/"+cases[7].name, nil, nil)
				if code != 200 || h.Get("Content-Type") == "" {
					t.Fatalf("item: %d", code)
				}
				if tk.task != "embed" && tk.task != "caption" && !bytes.Equal(one, want[st.ItemStatus[7].Output]) {
					t.Fatalf("%s job: GET items/%s differs", via.name, cases[7].name)
				}
				if tk.task == "embed" {
					a, _ := store.Get("single")
					b, _ := store.Get("viajob")
					for _, c := range cases {
						va, _, err1 := a.Get(stem(c.name))
						vb, _, err2 := b.Get(stem(c.name))
						if err1 != nil || err2 != nil || !slices.Equal(va, vb) {
							t.Fatalf("%s job: the vector of %s differs from the single request's (%v %v)", via.name, c.name, err1, err2)
						}
					}
				}
				if code, _, b := do(t, "DELETE", other.URL+"/v1/jobs/"+id, nil, nil); code != 200 {
					t.Fatalf("DELETE: %d %s", code, b)
				}
				if code, _, _ := do(t, "GET", srv.URL+"/v1/jobs/"+id, nil, nil); code != 404 {
					t.Fatalf("status after DELETE: %d, want 404", code)
				}
			}
		})
	}
	return wants
}
