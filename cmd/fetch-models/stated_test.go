package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imgserve/imgserve/models/catalog"
)

// hfServer imitates Hugging Face's resolve URLs: a HEAD or GET of
// /repo/resolve/main/<file> answers 302 to /cdn/<file> with the file's
// sha256 in X-Linked-Etag (quoted, as Hugging Face sends it) and its size
// in X-Linked-Size; the CDN serves the bytes.
func hfServer(t *testing.T, body []byte, statedSum string) (*httptest.Server, *atomic.Int32) {
	var heads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/repo/resolve/main/"):
			if r.Method == http.MethodHead {
				heads.Add(1)
			}
			if statedSum != "" {
				w.Header().Set("X-Linked-Etag", `"`+statedSum+`"`)
				w.Header().Set("X-Linked-Size", fmt.Sprint(len(body)))
			}
			http.Redirect(w, r, "/cdn/"+strings.TrimPrefix(r.URL.Path, "/repo/resolve/main/"), http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/cdn/"):
			w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &heads
}

func statedCatalog(t *testing.T, url string) string {
	return fmt.Sprintf(`
items:
  - {name: unet, kind: model, file: sd/unet/model.onnx, sha256_from: huggingface, upstream: {url: "%s/repo/resolve/main/unet/model.onnx"}}
`, url)
}

func TestStatedChecksumVerifiedAndRecorded(t *testing.T) {
	srv, heads := hfServer(t, weights, sha256hex(weights))
	cat := parseCatalog(t, statedCatalog(t, srv.URL))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if string(mustRead(t, e.installed("models/sd/unet/model.onnx"))) != string(weights) {
		t.Fatal("installed file differs")
	}
	l := linesAbout(out, "unet")
	if len(l) != 1 || !strings.Contains(l[0], "downloaded") || !strings.Contains(l[0], "sha256 ok (as Hugging Face states it: no checksum is pinned") {
		t.Errorf("result line: %q", l)
	}
	// The second run verifies the cache against the recorded sum, offline.
	srv.Close()
	code, out, _ = e.run(t, cat)
	if l := linesAbout(out, "unet"); code != 0 || len(l) != 1 || !strings.Contains(l[0], "cached, sha256 ok (as Hugging Face") {
		t.Errorf("second run: exit %d, %q", code, l)
	}
	if heads.Load() != 1 {
		t.Errorf("asked for the checksum %d times, want once", heads.Load())
	}
	assertNoLeftovers(t, e)
}

func TestStatedChecksumMismatchFails(t *testing.T) {
	srv, _ := hfServer(t, []byte("tampered"), sha256hex(weights))
	cat := parseCatalog(t, statedCatalog(t, srv.URL))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if l := linesAbout(out, "unet"); code != 1 || len(l) != 1 || !strings.Contains(l[0], "FAILED") {
		t.Errorf("exit %d, %q", code, l)
	}
	assertMissing(t, e.installed("models/sd/unet/model.onnx"))
}

func TestNoStatedChecksumRefused(t *testing.T) {
	srv, _ := hfServer(t, weights, "")
	cat := parseCatalog(t, statedCatalog(t, srv.URL))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if l := linesAbout(out, "unet"); code != 1 || len(l) != 1 || !strings.Contains(l[0], "states no sha256") {
		t.Errorf("exit %d, %q", code, l)
	}
	assertMissing(t, e.installed("models/sd/unet/model.onnx"))
}

func TestStatedChecksumUnreachable(t *testing.T) {
	cat := parseCatalog(t, statedCatalog(t, strings.TrimSuffix(deadURL(t, "/"), "/")))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if l := linesAbout(out, "unet"); code != 0 || len(l) != 1 || !strings.Contains(l[0], "unavailable") {
		t.Errorf("exit %d, %q", code, l)
	}
	// A file dropped by hand stays, said to be unverified.
	target := e.installed("models/sd/unet/model.onnx")
	os.MkdirAll(target[:strings.LastIndex(target, "/")], 0o755)
	os.WriteFile(target, weights, 0o644)
	code, out, _ = e.run(t, cat)
	if l := linesAbout(out, "unet"); code != 0 || len(l) != 1 || !strings.Contains(l[0], "NOT verified") {
		t.Errorf("dropped by hand: exit %d, %q", code, l)
	}
}

func parseCatalogErr(yaml string) (*catalog.Catalog, error) { return catalog.Parse([]byte(yaml)) }

func TestStatedChecksumCatalogRules(t *testing.T) {
	for _, bad := range []string{
		`{name: a, kind: model, file: a.onnx, sha256_from: github, upstream: {url: "https://x/resolve/a"}}`,
		`{name: a, kind: model, file: a.onnx, sha256_from: huggingface, upstream: {url: "https://x/a.onnx"}}`,
		`{name: a, kind: model, file: ../a.onnx, sha256: ` + sha256hex(weights) + `, upstream: {url: "https://x/a"}}`,
		`{name: a, kind: model, file: /abs/a.onnx, sha256: ` + sha256hex(weights) + `, upstream: {url: "https://x/a"}}`,
	} {
		if _, err := parseCatalogErr("items:\n  - " + bad); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
}
