// Package pgtest gives tests a real PostgreSQL with pgvector: PGlite
// (PostgreSQL compiled to WASM, with pgvector 0.8) served over the wire
// protocol by @electric-sql/pglite-socket on a free loopback port, and,
// when IMGSERVE_TEST_POSTGRES names one, a real server as well.
//
// PGlite comes from npm at the versions pinned in pglite/package.json and
// pglite/package-lock.json, installed by scripts/fetch-pglite.sh into
// ~/.cache/imgserve (make test runs it; Start runs it too if the install
// is missing). A test that cannot start it fails: it does not skip.
package pgtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	//go:embed pglite/package.json
	packageJSON []byte
	//go:embed pglite/package-lock.json
	packageLock []byte
)

// EnvPostgres names a real PostgreSQL (with pgvector available) to run the
// same tests against, as a connection URL.
const EnvPostgres = "IMGSERVE_TEST_POSTGRES"

// Server is a database to test against.
type Server struct {
	Name string // "pglite" or "postgres"
	URL  string
}

// Servers returns PGlite, started for this test, and the server named by
// IMGSERVE_TEST_POSTGRES if set. Each test gets a fresh database: PGlite
// is started per call, and on a real server a schema of its own is put
// first on the search path and dropped afterwards.
func Servers(t testing.TB) []Server {
	t.Helper()
	out := []Server{{Name: "pglite", URL: StartPGlite(t, 16)}}
	if url := os.Getenv(EnvPostgres); url != "" {
		out = append(out, Server{Name: "postgres", URL: isolated(t, url)})
	}
	return out
}

// installDir is where fetch-pglite.sh installs this lockfile's packages.
func installDir() string {
	sum := sha256.Sum256(append(append([]byte(nil), packageJSON...), packageLock...))
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "imgserve", "pglite-"+hex.EncodeToString(sum[:])[:16])
}

var installOnce sync.Once
var installErr error

// install runs scripts/fetch-pglite.sh unless the install is there.
func install() (string, error) {
	dir := installDir()
	installOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			installErr = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "scripts", "fetch-pglite.sh"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			installErr = fmt.Errorf("scripts/fetch-pglite.sh: %v\n%s", err, out)
		}
	})
	return dir, installErr
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// StartPGlite starts a PGlite server with pgvector on a free loopback port
// for the test, allowing maxConns connections at once, and returns its
// URL. The server stops when the test ends.
func StartPGlite(t testing.TB, maxConns int) string {
	t.Helper()
	dir, err := install()
	if err != nil {
		t.Fatalf("installing PGlite: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("PGlite needs Node.js: %v", err)
	}
	port := freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(node, filepath.Join(dir, "node_modules", "@electric-sql", "pglite-socket", "dist", "scripts", "server.js"),
		"--port="+strconv.Itoa(port), "--host=127.0.0.1", "--max-connections="+strconv.Itoa(maxConns),
		"--extensions=@electric-sql/pglite-pgvector:vector")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting PGlite: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	// Loading the WASM build takes seconds; wait until it answers a query.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			t.Fatalf("PGlite exited: %v\n%s", err, logs.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("PGlite did not answer on port %d: %v\n%s", port, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// isolated creates a schema for the test on a real server and returns a
// URL whose search_path starts with it (pgvector's types stay reachable
// through public).
func isolated(t testing.TB, url string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("%s=%s: %v", EnvPostgres, url, err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("imgserve_test_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), url)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema + ",public"
}
