package main

import (
	"fmt"
	"io"
	"time"
)

// progress reports bytes written so far. On a terminal it redraws one line a
// few times a second; otherwise (CI logs, pipes) it prints a line every
// `every`, so logs show that a long download is alive without flooding them.
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	label string
	total int64 // <= 0: unknown

	n     int64
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, tty bool, every time.Duration, label string, total int64) *progress {
	now := time.Now()
	return &progress{w: w, tty: tty, every: every, label: label, total: total, start: now, last: now}
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	interval := p.every
	if p.tty {
		interval = 200 * time.Millisecond
	}
	if now := time.Now(); now.Sub(p.last) >= interval {
		p.last = now
		p.print()
	}
	return len(b), nil
}

// done ends the terminal line; on a log a final line would only repeat the
// result line that follows.
func (p *progress) done() {
	if p.tty && p.w != nil {
		p.print()
		fmt.Fprintln(p.w)
	}
}

func (p *progress) print() {
	if p.w == nil {
		return
	}
	s := p.label + ": " + mib(p.n)
	if p.total > 0 {
		s += fmt.Sprintf(" / %s (%d%%)", mib(p.total), p.n*100/p.total)
	}
	if secs := time.Since(p.start).Seconds(); secs > 0.5 {
		s += fmt.Sprintf(", %.1f MiB/s", float64(p.n)/secs/(1<<20))
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", s)
	} else {
		fmt.Fprintln(p.w, s)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
