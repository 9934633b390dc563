package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgserve/imgserve/models/catalog"
)

func sha256hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func sha1hex(b []byte) string   { s := sha1.Sum(b); return hex.EncodeToString(s[:]) }
func md5hex(b []byte) string    { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// server serves fixed bodies on 127.0.0.1 and counts requests per path.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

func newServer(t *testing.T, files map[string][]byte) *server {
	s := &server{files: files, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		body, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// deadURL is an http URL on 127.0.0.1 where nothing listens.
func deadURL(t *testing.T, path string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + path
}

// tgz builds a gzipped tarball of the given members, in the given order.
func tgz(t *testing.T, members ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i := 0; i < len(members); i += 2 {
		name, body := members[i].(string), members[i+1].([]byte)
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// fakeNPM writes an npm stand-in that "packs" the given tarballs (spec ->
// bytes) and fails like an offline npm for anything else. Its view command
// fails (not like a network error), so the fetcher falls back to npm pack.
// It logs each command and spec it was asked for, so tests can tell whether
// npm ran at all.
func fakeNPM(t *testing.T, tarballs map[string][]byte) (cmd, logPath string) {
	return fakeNPMRegistry(t, tarballs, nil)
}

// fakeNPMRegistry is fakeNPM whose view command, for the specs in dist,
// prints that dist object as `npm view --json SPEC dist` does.
func fakeNPMRegistry(t *testing.T, tarballs map[string][]byte, dist map[string]npmDist) (cmd, logPath string) {
	dir := t.TempDir()
	logPath = filepath.Join(dir, "npm.log")
	var packs, views strings.Builder
	i := 0
	for spec, body := range tarballs {
		p := filepath.Join(dir, fmt.Sprintf("pkg%d.tgz", i))
		i++
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&packs, "  %q) cp %q \"$dest/packed.tgz\" ;;\n", spec, p)
	}
	for spec, d := range dist {
		js, _ := json.Marshal(d)
		fmt.Fprintf(&views, "  %q) echo '%s' ;;\n", spec, js)
	}
	viewDefault := `echo "npm error code ENOTFOUND" >&2; echo "npm error network request failed" >&2; exit 1`
	if dist == nil {
		viewDefault = `echo "npm error code EUSAGE" >&2; exit 1`
	}
	script := fmt.Sprintf(`#!/bin/sh
log=%q
if [ "$1" = view ]; then
	# argv: view --json SPEC dist
	[ "$2" = --json ] && [ "$4" = dist ] || { echo "unexpected args: $*" >&2; exit 64; }
	echo "view $3" >> "$log"
	case "$3" in
%s	*) %s ;;
	esac
	exit 0
fi
# argv: pack --silent --ignore-scripts --pack-destination DIR SPEC
[ "$1" = pack ] && [ "$4" = --pack-destination ] || { echo "unexpected args: $*" >&2; exit 64; }
dest="$5"; spec="$6"
echo "pack $spec" >> "$log"
case "$spec" in
%s  *) echo "npm error code ENOTFOUND" >&2; echo "npm error network request failed" >&2; exit 1 ;;
esac
`, logPath, views.String(), viewDefault, packs.String())
	cmd = filepath.Join(dir, "npm")
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, logPath
}

// distFor is the dist object a registry at base publishes for a tarball.
func distFor(base, name string, ball []byte) npmDist {
	sum := sha512.Sum512(ball)
	return npmDist{Tarball: base + "/" + name, Shasum: sha1hex(ball), Integrity: "sha512-" + base64.StdEncoding.EncodeToString(sum[:])}
}

// npmCalls counts the npm commands run (prefix "" for all, "pack", "view").
func npmCalls(t *testing.T, logPath, prefix string) int {
	b, err := os.ReadFile(logPath)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" && strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func parseCatalog(t *testing.T, yaml string) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	return c
}

// env is a test environment: a home (the install folder) and a cache.
type env struct {
	home, cache, npm string
}

func newEnv(t *testing.T, npm string) env {
	return env{home: filepath.Join(t.TempDir(), ".imgserve"), cache: t.TempDir(), npm: npm}
}

// run runs the command as main would, with this environment; it returns the
// exit status, stdout and stderr.
func (e env) run(t *testing.T, cat *catalog.Catalog, args ...string) (int, string, string) {
	t.Helper()
	vars := map[string]string{"IMGSERVE_HOME": e.home, "IMGSERVE_CACHE": e.cache, "HOME": t.TempDir()}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, cat, args, func(k string) string { return vars[k] }, &out, &errOut, func(f *Fetcher) {
		f.NPM = e.npm
		f.ProgressEvery = time.Millisecond
	})
	return code, out.String(), errOut.String()
}

func (e env) installed(rel string) string { return filepath.Join(e.home, rel) }

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s should not exist (err=%v)", path, err)
	}
}

// assertNoLeftovers checks that no temp file survived in the cache's tmp
// folder or next to installed files.
func assertNoLeftovers(t *testing.T, e env) {
	t.Helper()
	for _, dir := range []string{filepath.Join(e.cache, "tmp"), filepath.Join(e.home, "models"), filepath.Join(e.home, "lib")} {
		entries, _ := os.ReadDir(dir)
		for _, de := range entries {
			if dir == filepath.Join(e.cache, "tmp") || strings.Contains(de.Name(), ".tmp-") {
				t.Errorf("leftover %s", filepath.Join(dir, de.Name()))
			}
		}
	}
}

// linesAbout returns stdout lines starting with "name:".
func linesAbout(out, name string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, name+":") {
			ls = append(ls, l)
		}
	}
	return ls
}
