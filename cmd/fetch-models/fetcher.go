package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imgserve/imgserve/models/catalog"
)

// Fetcher installs catalog items into HomeDir, keeping verified copies in
// CacheDir so that later runs and other clones download nothing.
// Everything it touches is injectable, for tests.
type Fetcher struct {
	Client    *http.Client // nil: newHTTPClient()
	NPM       string       // npm command; "" disables the npm fallback
	CacheDir  string       // e.g. ~/.cache/imgserve
	HomeDir   string       // install folder, e.g. <repo>/.imgserve
	HomeLabel string       // how messages name HomeDir, e.g. ".imgserve"

	Out           io.Writer     // result lines, one per item
	Progress      io.Writer     // progress and status lines (stderr); nil: none
	TTY           bool          // Progress is a terminal: redraw one line
	ProgressEvery time.Duration // interval of progress lines when !TTY; 0: 10s
	StallTimeout  time.Duration // abort a download receiving nothing this long; 0: 60s

	deadHosts map[string]string
	archives  map[string]string // upstream url -> archive downloaded this run
}

// Status is the outcome for one item.
type Status int

const (
	OK          Status = iota
	Unavailable        // no source could be reached, and there was no npm fallback
	Failed             // a checksum mismatch, a broken source, or a local error
)

// Result is the outcome for one item; Line is what was printed for it.
type Result struct {
	Name   string
	Status Status
	Cached bool
	Line   string
}

// source is one place an item can come from, tried in order.
type source struct {
	name  string // for messages: "upstream https://..." or "npm pkg@ver"
	fetch func(ctx context.Context, it catalog.Item, tmpDir string) (string, error)
}

// Fetch installs one item and prints its result line.
func (f *Fetcher) Fetch(ctx context.Context, it catalog.Item) Result {
	r := f.fetch(ctx, it)
	r.Name = it.Name
	fmt.Fprintln(f.Out, r.Line)
	return r
}

func (f *Fetcher) fetch(ctx context.Context, it catalog.Item) Result {
	if it.SHA256 == "" && it.SHA256From != "" {
		return f.fetchStated(ctx, it)
	}
	return f.fetchPinned(ctx, it)
}

// fetchPinned fetches an item whose checksums are known.
func (f *Fetcher) fetchPinned(ctx context.Context, it catalog.Item) Result {
	target := filepath.Join(f.HomeDir, it.Dir(), it.File)
	cached := filepath.Join(f.CacheDir, it.Dir(), it.File)
	shown := f.HomeLabel + "/" + it.RelPath()
	fail := func(format string, a ...any) Result {
		return Result{Status: Failed, Line: it.Name + ": FAILED: " + fmt.Sprintf(format, a...)}
	}

	// 1. The cache: re-verified every time, since files outlive catalog edits.
	if _, err := os.Stat(cached); err == nil {
		note, err := verify(cached, it)
		if err == nil {
			if err := install(cached, target); err != nil {
				return fail("installing %s: %v", shown, err)
			}
			return Result{Status: OK, Cached: true, Line: fmt.Sprintf("%s: cached, %s -> %s", it.Name, note, shown)}
		}
		os.Remove(cached)
		f.status("%s: cached copy fails verification (%v); deleted it, fetching again", it.Name, err)
	}

	// 2. A file already in place, e.g. dropped there by hand: keep it if it
	// verifies (and seed the cache from it), otherwise it must not be served.
	if _, err := os.Stat(target); err == nil {
		note, err := verify(target, it)
		if err == nil {
			if err := os.MkdirAll(filepath.Dir(cached), 0o755); err == nil && !it.Manual {
				_ = install(target, cached) // best effort: only saves a later download
			}
			return Result{Status: OK, Line: fmt.Sprintf("%s: present, %s -> %s", it.Name, note, shown)}
		}
		if err := os.Remove(target); err != nil {
			return fail("%s fails verification and cannot be removed: %v", shown, err)
		}
		f.status("%s: %s fails verification (%v); removed it", it.Name, shown, err)
	}

	// A file nobody publishes a checksum for is the user's to fetch.
	if it.Manual {
		return Result{Status: Unavailable, Line: fmt.Sprintf(
			"%s: not downloaded: its upstream publishes no checksum, so nothing could verify a download; "+
				"get it from %s yourself and put it at %s", it.Name, it.Upstream.URL, shown)}
	}

	// 3. The sources, upstream first.
	tmpDir := filepath.Join(f.CacheDir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return fail("%v", err)
	}
	var sources []source
	if it.Upstream != nil {
		sources = append(sources, source{"upstream " + it.Upstream.URL, f.fetchUpstream})
	}
	if it.NPM != nil {
		sources = append(sources, source{"npm " + it.NPM.Spec(), f.fetchNPM})
	}
	var reasons []string
	allUnreachable := true
	for i, src := range sources {
		if i > 0 {
			f.status("%s: %s; trying %s", it.Name, reasons[len(reasons)-1], src.name)
		}
		path, err := src.fetch(ctx, it, tmpDir)
		var note string
		if err == nil {
			note, err = verify(path, it)
			if err != nil {
				os.Remove(path) // never keep what failed verification
				err = fmt.Errorf("%w; deleted the download", err)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return fail("interrupted")
			}
			if !errors.Is(err, errUnreachable) {
				allUnreachable = false
			}
			sep := ": "
			if errors.Is(err, errUnreachable) {
				sep = " " // reads "upstream https://... unreachable (why)"
			}
			reasons = append(reasons, src.name+sep+err.Error())
			continue
		}
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
			os.Remove(path)
			return fail("%v", err)
		}
		if err := os.Chmod(path, 0o644); err != nil { // CreateTemp made it 0600
			os.Remove(path)
			return fail("%v", err)
		}
		if err := os.Rename(path, cached); err != nil {
			os.Remove(path)
			return fail("caching: %v", err)
		}
		if err := install(cached, target); err != nil {
			return fail("installing %s: %v", shown, err)
		}
		from := src.name
		if i > 0 {
			from += " (" + strings.Join(reasons, "; ") + ")"
		}
		return Result{Status: OK, Line: fmt.Sprintf("%s: downloaded from %s, %s -> %s", it.Name, from, note, shown)}
	}

	// Nothing worked. Missing items are fine only where the sole source is
	// an upstream this machine cannot reach; a missing npm fallback, or any
	// source that answered wrongly, is a real failure.
	why := strings.Join(reasons, "; ")
	if allUnreachable && it.NPM == nil {
		return Result{Status: Unavailable, Line: fmt.Sprintf(
			"%s: unavailable: %s, no npm fallback; fetch it on a machine with internet and drop %s into %s/",
			it.Name, why, it.File, f.HomeLabel+"/"+it.Dir())}
	}
	return fail("%s", why)
}

// status prints a progress-stream line (stderr), not part of the results.
func (f *Fetcher) status(format string, a ...any) {
	if f.Progress != nil {
		if f.TTY {
			fmt.Fprint(f.Progress, "\r\033[K")
		}
		fmt.Fprintf(f.Progress, format+"\n", a...)
	}
}

func (f *Fetcher) client() *http.Client {
	if f.Client == nil {
		f.Client = newHTTPClient()
	}
	return f.Client
}

func (f *Fetcher) progressEvery() time.Duration {
	if f.ProgressEvery > 0 {
		return f.ProgressEvery
	}
	return 10 * time.Second
}

func (f *Fetcher) stallTimeout() time.Duration {
	if f.StallTimeout > 0 {
		return f.StallTimeout
	}
	return time.Minute
}
