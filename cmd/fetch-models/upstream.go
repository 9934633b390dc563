package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/imgserve/imgserve/models/catalog"
)

// errUnreachable marks a source that could not be contacted at all, as
// opposed to one that answered wrongly: only the former is an acceptable
// reason for a missing item on a machine without internet.
var errUnreachable = errors.New("unreachable")

var errStalled = errors.New("no data received for too long")

// newHTTPClient fails fast on hosts that are blocked or down (short dial and
// handshake timeouts) but puts no limit on a whole download, which can take
// minutes; stalls are caught by Fetcher.StallTimeout instead.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ForceAttemptHTTP2:     true,
	}}
}

// fetchUpstream downloads the item's upstream file (or the archive holding
// it) into a new file in tmpDir and returns its path, unverified.
func (f *Fetcher) fetchUpstream(ctx context.Context, it catalog.Item, tmpDir string) (string, error) {
	up := it.Upstream
	if up.Path == "" {
		return f.download(ctx, it.Name, up.URL, it.Bytes, tmpDir)
	}
	archive, err := f.upstreamArchive(ctx, it.Name, up.URL, tmpDir)
	if err != nil {
		return "", err
	}
	return extractToTemp(archive, up.Path, tmpDir)
}

// upstreamArchive downloads an archive once per run: the CUDA build's three
// libraries come out of one release archive of several hundred MB. Close
// deletes the archives.
func (f *Fetcher) upstreamArchive(ctx context.Context, label, rawURL, tmpDir string) (string, error) {
	if p, ok := f.archives[rawURL]; ok {
		return p, nil
	}
	p, err := f.download(ctx, label, rawURL, 0, tmpDir)
	if err != nil {
		return "", err
	}
	if f.archives == nil {
		f.archives = map[string]string{}
	}
	f.archives[rawURL] = p
	return p, nil
}

// Close deletes what the run downloaded only to extract from.
func (f *Fetcher) Close() {
	for _, p := range f.archives {
		os.Remove(p)
	}
	f.archives = nil
}

// download GETs rawURL into a new temp file in dir, showing progress.
// size is the expected size, used for progress when the server sends none.
func (f *Fetcher) download(ctx context.Context, label, rawURL string, size int64, dir string) (path string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	// A host that was unreachable for one item is unreachable for the next:
	// don't make the user wait for another timeout.
	if why, dead := f.deadHosts[u.Host]; dead {
		return "", fmt.Errorf("%w (%s)", errUnreachable, why)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := f.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", context.Cause(ctx)
		}
		why := netReason(err)
		f.markDead(u.Host, why)
		return "", fmt.Errorf("%w (%s)", errUnreachable, why)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("answered %s", resp.Status)
	}
	if resp.ContentLength > 0 {
		size = resp.ContentLength
	}

	out, err := os.CreateTemp(dir, "download-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out.Name())
		}
	}()

	stall := time.AfterFunc(f.stallTimeout(), func() { cancel(errStalled) })
	defer stall.Stop()
	p := newProgress(f.Progress, f.TTY, f.progressEvery(), label, size)
	body := &resetReader{r: resp.Body, onData: func() { stall.Reset(f.stallTimeout()) }}
	_, err = io.Copy(io.MultiWriter(out, p), body)
	p.done()
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return "", fmt.Errorf("download interrupted: %w", err)
	}
	return out.Name(), nil
}

func (f *Fetcher) markDead(host, why string) {
	if f.deadHosts == nil {
		f.deadHosts = map[string]string{}
	}
	f.deadHosts[host] = why
}

// netReason shortens a transport error to what a user needs, e.g.
// "lookup github.com: no such host" instead of the full URL error chain.
func netReason(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "lookup " + dns.Name + ": " + dns.Err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

type resetReader struct {
	r      io.Reader
	onData func()
}

func (r *resetReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.onData()
	}
	return n, err
}
