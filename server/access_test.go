package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/server/access"
	"github.com/imgserve/imgserve/server/admission"
)

const plainAffineConfig = "models:\n  - {name: affine, file: affine_f32.onnx}\n"

// keyFile writes the hashes of keys as --api-keys reads them.
func keyFile(t *testing.T, keys ...string) *access.Keys {
	t.Helper()
	var b strings.Builder
	b.WriteString("# test keys\n\n")
	for i, k := range keys {
		h := sha256.Sum256([]byte(k))
		b.WriteString(hex.EncodeToString(h[:]) + " client-" + string(rune('a'+i)) + "\n")
	}
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := access.LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAPIKeys(t *testing.T) {
	keys := keyFile(t, "s3cret-one", "s3cret-two")
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) { o.Keys = keys })
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	for _, c := range []struct {
		method, path string
		header       map[string]string
		want         int
	}{
		{"GET", "/v1/models", nil, 401},
		{"GET", "/v1/models", bearer("wrong"), 401},
		{"GET", "/v1/models", map[string]string{"Authorization": "Basic czNjcmV0LW9uZQ=="}, 401},
		{"GET", "/v1/models", bearer("s3cret-one"), 200},
		{"GET", "/v1/models", map[string]string{"Authorization": "bearer s3cret-two"}, 200},
		// x-api-key is for the rembg and IOPaint routes only.
		{"GET", "/v1/models", map[string]string{"X-Api-Key": "s3cret-one"}, 401},
		{"POST", "/api/remove", map[string]string{"X-Api-Key": "wrong"}, 401},
		{"POST", "/api/remove", map[string]string{"X-Api-Key": "s3cret-one"}, 400}, // in, and no file
		{"POST", "/api/v1/inpaint", map[string]string{"X-Api-Key": "s3cret-two"}, 400},
		{"POST", "/v2/models/affine/infer", nil, 401},
		{"GET", "/v2/models/affine", bearer("s3cret-two"), 200},
		// Health probes stay open; /metrics needs a key unless opened.
		{"GET", "/v2/health/live", nil, 200},
		{"GET", "/v2/health/ready", nil, 200},
		{"GET", "/metrics", nil, 401},
		{"GET", "/metrics", bearer("s3cret-one"), 200},
		// An unknown route is 404 whoever asks.
		{"GET", "/nope", nil, 404},
	} {
		code, h, body := do(t, c.method, srv.URL+c.path, c.header, nil)
		if code != c.want {
			t.Errorf("%s %s %v: %d %s, want %d", c.method, c.path, c.header, code, body, c.want)
		}
		if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer", c.method, c.path)
		}
	}
	if strings.Contains(srv.Logs.String(), "s3cret") {
		t.Fatal("a key reached the logs")
	}

	open := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) { o.Keys = keys; o.MetricsOpen = true })
	if code, _, _ := do(t, "GET", open.URL+"/metrics", nil, nil); code != 200 {
		t.Fatalf("--metrics-open: /metrics answered %d", code)
	}
}

func TestKeyFileIsChecked(t *testing.T) {
	for _, bad := range []string{"", "# only a comment\n", "not-hex\n", "abcd\n"} {
		if _, err := access.ParseKeys([]byte(bad)); err == nil {
			t.Errorf("key file %q accepted", bad)
		}
	}
	h := sha256.Sum256([]byte("k"))
	k, err := access.ParseKeys([]byte("sha256:" + hex.EncodeToString(h[:]) + "  ops team\n"))
	if err != nil {
		t.Fatal(err)
	}
	if label, ok := k.Check("k"); !ok || label != "ops team" {
		t.Fatalf("Check: %q %v", label, ok)
	}
	if _, ok := k.Check(""); ok {
		t.Fatal("the empty key passed")
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imgserve test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

func TestTLSWithKeys(t *testing.T) {
	certFile, keyPath, roots := selfSigned(t)
	cfg, err := access.TLSConfig(certFile, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := keyFile(t, "tls-key")
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) { o.TLS = cfg; o.Keys = keys })
	url := strings.Replace(srv.URL, "http://", "https://", 1)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	get := func(path, key string) (int, string) {
		req, _ := http.NewRequest("GET", url+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("not served over TLS 1.2+: %+v", resp.TLS)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/v2/health/ready", ""); code != 200 {
		t.Fatalf("ready over TLS: %d %s", code, body)
	}
	if code, _ := get("/v2/models/affine", ""); code != 401 {
		t.Fatalf("no key over TLS: %d", code)
	}
	if code, body := get("/v2/models/affine", "tls-key"); code != 200 {
		t.Fatalf("key over TLS: %d %s", code, body)
	}
	// Plain HTTP on the TLS port gets no answer from the application.
	if resp, err := http.Get(srv.URL + "/v2/health/ready"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP was served on the TLS port: %s", b)
		}
	}
	// A client that does not trust the certificate is refused.
	if _, err := http.Get(url + "/v2/health/ready"); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
}

func TestCORS(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) {
		o.CORSOrigins = []string{"https://app.example.com", "https://other.example/"}
	})
	preflight := func(origin, method, headers string) (int, http.Header) {
		h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			h["Access-Control-Request-Headers"] = headers
		}
		code, hdr, _ := do(t, "OPTIONS", srv.URL+"/v2/models/affine/infer", h, nil)
		return code, hdr
	}
	code, h := preflight("https://app.example.com", "POST", "authorization, content-type, x-evil")
	if code != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		h.Get("Access-Control-Allow-Methods") != "POST" ||
		h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" ||
		h.Get("Access-Control-Max-Age") == "" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
		t.Fatalf("allowed preflight: %d %v", code, h)
	}
	if code, h := preflight("https://other.example", "POST", ""); code != 204 || h.Get("Access-Control-Allow-Origin") != "https://other.example" {
		t.Fatalf("second origin (configured with a trailing slash): %d %v", code, h)
	}
	if code, h := preflight("https://evil.example", "POST", ""); code != 403 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin: %d %v", code, h)
	}
	if code, _, _ := do(t, "OPTIONS", srv.URL+"/nope", map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}, nil); code != 404 {
		t.Fatalf("preflight for no route: %d", code)
	}
	// The actual request: the allowed origin may read the answer and its
	// Retry-After and X-Request-Id; another origin gets no grant; a
	// same-origin request (no Origin) gets no CORS headers at all.
	_, h, _ = do(t, "GET", srv.URL+"/v1/models", map[string]string{"Origin": "https://app.example.com"}, nil)
	if h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("actual request: %v", h)
	}
	_, h, _ = do(t, "GET", srv.URL+"/v1/models", map[string]string{"Origin": "https://evil.example"}, nil)
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin granted: %v", h)
	}
	_, h, _ = do(t, "GET", srv.URL+"/v1/models", nil, nil)
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("same-origin request got CORS headers: %v", h)
	}
	// Preflights need no key even when keys are on; the real call does.
	keyed := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) {
		o.CORSOrigins = []string{"*"}
		o.Keys = keyFile(t, "k")
	})
	code, h, _ = do(t, "OPTIONS", keyed.URL+"/v1/models", map[string]string{"Origin": "https://any.example", "Access-Control-Request-Method": "GET"}, nil)
	if code != 204 || h.Get("Access-Control-Allow-Origin") != "https://any.example" || h.Get("Access-Control-Allow-Methods") != "GET, HEAD" {
		t.Fatalf("preflight with keys on: %d %v", code, h)
	}
	if code, _, _ := do(t, "GET", keyed.URL+"/v1/models", map[string]string{"Origin": "https://any.example"}, nil); code != 401 {
		t.Fatalf("cross-origin call without key: %d", code)
	}
}

// A client that opens a connection and dribbles its headers is cut off
// after HeaderTimeout instead of holding a connection for ever.
func TestSlowHeadersAreClosed(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) { o.HeaderTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// Never finish the headers; the server must close the connection. The
	// deadline here only keeps a broken server from hanging the test.
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	_, err = io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a connection with unfinished headers open")
	}
}

// A body that stops arriving gets 408 after BodyTimeout, and its admission
// is returned.
func TestSlowBodyGets408(t *testing.T) {
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) { o.BodyTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := "POST /v2/models/affine/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
	if _, err := conn.Write(append([]byte(head), bytes.Repeat([]byte("{"), 20000)...)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 408 {
		t.Fatalf("stalled body: %d", resp.StatusCode)
	}
	waitUntil(t, "the stalled request to leave", func() bool { return srv.Server.Admission().Stats().InFlight == 0 })
	if st := srv.Server.Admission().Stats(); st.Reserved != 0 {
		t.Fatalf("%d bytes still reserved", st.Reserved)
	}
}

// The front door for other transports (the gRPC service) applies the same
// keys, admission and draining as HTTP.
func TestAdmitForOtherTransports(t *testing.T) {
	keys := keyFile(t, "grpc-key")
	srv := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) {
		o.Keys = keys
		o.Admission = admission.New(admission.Limits{MaxInFlight: 1, MemoryBudget: 1 << 20})
	})
	s := srv.Server
	for _, auth := range []string{"", "Bearer nope", "grpc-key"} {
		_, _, err := s.Admit(context.Background(), auth, "1", "/inference.GRPCInferenceService/ModelInfer")
		if st := ErrorStatus(err); st.HTTP != 401 {
			t.Errorf("authorization %q: %+v", auth, st)
		}
	}
	ctx, done, err := s.Admit(context.Background(), "Bearer grpc-key", "2", "/inference.GRPCInferenceService/ModelInfer")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ctx.Deadline(); !ok {
		t.Fatal("no deadline")
	}
	if err := admission.Reserve(ctx, 2<<20); ErrorStatus(err).HTTP != 413 {
		t.Fatalf("reserving more than the budget: %v", err)
	}
	if err := admission.Reserve(ctx, 512<<10); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Admit(context.Background(), "Bearer grpc-key", "3", "/x")
	if st := ErrorStatus(err); st.HTTP != 429 || st.RetryAfter < time.Second {
		t.Fatalf("second request with one in flight: %+v", st)
	}
	if got := s.InFlight(); len(got) != 1 || got[0].ID != "2" || got[0].Reserved != 512<<10 {
		t.Fatalf("in flight: %+v", got)
	}
	done()
	if st := s.Admission().Stats(); st.InFlight != 0 || st.Reserved != 0 {
		t.Fatalf("after done: %+v", st)
	}
}
