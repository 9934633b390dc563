// Package redistest starts a real redis-server (Debian's redis-server
// package) for a test, on a free loopback port, with persistence off and
// its working directory in the test's temporary folder. Without the
// binary a test skips, except under CI=true, where it fails: CI installs
// the package (.ci/run) and must run these tests.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Binary is where Debian installs redis-server; PATH is searched too.
const Binary = "/usr/bin/redis-server"

// Server is a running redis-server.
type Server struct {
	Addr string
	URL  string // redis://addr/0
	cmd  *exec.Cmd
}

// Start starts redis-server with persistence off (--save "" --appendonly
// no), and extra arguments after, until the test ends.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := Binary
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("redis-server"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("redis-server is not installed: CI=true needs it (apt-get install redis-server; .ci/run does)")
			}
			t.Skip("redis-server is not installed (apt-get install redis-server)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "yes", "--loglevel", "warning"}, extra...)
	cmd := exec.Command(bin, args...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // drain its output so it never blocks on a full pipe
		sc := bufio.NewScanner(out)
		for sc.Scan() {
		}
	}()
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	s.URL = "redis://" + s.Addr + "/0"
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return s
			}
		}
		if i > 200 {
			t.Fatalf("redis-server did not start on %s", s.Addr)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
