package inference

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// A lone run's threads busy-wait between its parallel sections only while
// the host's CPUs are free (SessionOptions.WideSpin): on a quiet host that
// makes a lone u2netp run faster, but on a host crowded by other processes
// the spinning thread takes a core that a descheduled one needs, and the
// same run was slower (bench/README.md, issue 12). Linux's pressure stall
// information tells the two apart: the share of the last 10 s in which a
// task waited for a CPU ("some avg10" in /proc/pressure/cpu).

// quietPressure is the most CPU pressure (percent) at which lone runs spin.
const quietPressure = 25

// cpuGauge reads the CPU pressure at most once a second.
var cpuGauge = pressureGauge{path: "/proc/pressure/cpu", every: time.Second}

type pressureGauge struct {
	path  string
	every time.Duration

	mu    sync.Mutex
	at    time.Time
	quiet bool
}

// Quiet reports whether the CPU pressure is at most quietPressure; false
// where the kernel does not report it.
func (g *pressureGauge) Quiet() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); now.Sub(g.at) >= g.every {
		g.at = now
		b, err := os.ReadFile(g.path)
		v, ok := someAvg10(b)
		g.quiet = err == nil && ok && v <= quietPressure
	}
	return g.quiet
}

// someAvg10 parses the avg10 of the "some" line of a /proc/pressure file:
//
//	some avg10=1.23 avg60=0.50 avg300=0.10 total=123456
func someAvg10(b []byte) (float64, bool) {
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) < 2 || string(f[0]) != "some" {
			continue
		}
		v, ok := bytes.CutPrefix(f[1], []byte("avg10="))
		if !ok {
			return 0, false
		}
		x, err := strconv.ParseFloat(string(v), 64)
		return x, err == nil
	}
	return 0, false
}
