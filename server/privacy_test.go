package server

import (
	"bufio"
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// privacyMarker is planted in uploads; it must never reach a log line.
const privacyMarker = "PRIVATE-7f3a9c-DO-NOT-LOG"

// markedPNG is a valid PNG followed by the marker: decoders stop at IEND,
// so the image still decodes, and any log of the body would show the marker.
func markedPNG(t *testing.T, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 31)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), []byte(privacyMarker)...)
}

// filesUnder lists every file below dir.
func filesUnder(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestNothingTouchesDiskOrLogs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where any spilled upload would land
	wd, _ := os.Getwd()
	before := filesUnder(t, wd)
	srv := startServer(t, mattingConfig, realModelsDir(), func(o *Options) { o.MaxBodySize = 64 << 20 })

	small := markedPNG(t, 64, 48)
	// 20 MB multipart upload: more than the 16 MB fasthttp would keep in
	// memory before spilling a file part to a temporary file.
	big := append(markedPNG(t, 64, 48), bytes.Repeat([]byte{0}, 20<<20)...)
	for _, up := range [][]byte{small, big} {
		body, ct := multipartBody(t, "image", up, map[string]string{"format": "mask", "note": privacyMarker})
		if code, _, resp := do(t, "POST", srv.URL+"/v1/remove-background", map[string]string{"Content-Type": ct}, body); code != 200 {
			t.Fatalf("multipart upload of %d bytes: %d %s", len(body), code, resp)
		}
		body, ct = multipartBody(t, "file", up, map[string]string{"om": "true"})
		if code, _, resp := do(t, "POST", srv.URL+"/api/remove", map[string]string{"Content-Type": ct}, body); code != 200 {
			t.Fatalf("/api/remove: %d %s", code, resp)
		}
	}
	if code, _, _ := do(t, "POST", srv.URL+"/v1/remove-background?bg_color="+privacyMarker, map[string]string{"Content-Type": "image/png"}, small); code != 400 {
		t.Fatalf("bad bg_color got %d", code)
	}
	// A KServe request whose tensor bytes spell the marker.
	if code, _, _ := do(t, "POST", srv.URL+"/v2/models/u2netp/infer", nil, []byte(`{"inputs":[{"name":"input.1","shape":[1],"datatype":"FP32","data":["`+privacyMarker+`"]}]}`)); code != 400 {
		t.Fatalf("bad infer got %d", code)
	}

	if got := filesUnder(t, tmp); len(got) != 0 {
		t.Fatalf("requests left files in TMPDIR: %v", got)
	}
	if after := filesUnder(t, wd); len(after) != len(before) {
		t.Fatalf("requests created files in the working tree: %d before, %d after", len(before), len(after))
	}
	logs := srv.Logs.String()
	if strings.Contains(logs, privacyMarker) {
		t.Fatalf("the server logged request content:\n%s", logs)
	}
	if !strings.Contains(logs, "route=/v1/remove-background") {
		t.Fatalf("expected request log lines (sizes and timings), got:\n%s", logs)
	}
}

// TestNoOutboundConnections checks the kernel's socket table after traffic:
// every TCP socket of this process's network namespace is on loopback.
func TestNoOutboundConnections(t *testing.T) {
	srv := startServer(t, mattingConfig, realModelsDir())
	img := markedPNG(t, 32, 32)
	for _, path := range []string{"/v1/remove-background", "/api/remove?url=http://192.0.2.1/x.jpg", "/v1/models", "/metrics"} {
		do(t, "POST", srv.URL+path, map[string]string{"Content-Type": "image/png"}, img)
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			remote := fields[2]
			host := remote[:strings.IndexByte(remote, ':')]
			if !isLoopbackOrUnset(host) {
				f.Close()
				t.Fatalf("%s has a connection to %s", table, remote)
			}
		}
		f.Close()
	}
}

// isLoopbackOrUnset reads /proc/net's hex addresses: 127.x.x.x (stored
// little-endian, so it ends in 7F), ::1, v4-mapped 127.x, or all zeros.
func isLoopbackOrUnset(hex string) bool {
	switch {
	case strings.Trim(hex, "0") == "":
		return true
	case len(hex) == 8:
		return strings.HasSuffix(hex, "7F")
	case hex == "00000000000000000000000001000000":
		return true
	case len(hex) == 32 && strings.HasPrefix(hex, "0000000000000000FFFF0000"):
		return strings.HasSuffix(hex, "7F")
	}
	return false
}
