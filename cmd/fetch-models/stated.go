package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/imgserve/imgserve/models/catalog"
)

// Items with sha256_from: huggingface have no checksum pinned in the
// catalog, because none could be obtained on the machines that wrote it.
// Hugging Face states every Git LFS file's sha256 (its LFS object id) in
// the X-Linked-Etag header of the file's resolve URL, and its size in
// X-Linked-Size. The fetcher asks for them first, downloads, and refuses a
// file that does not match; it records the sum beside the cached copy, so
// later runs verify the cache without the network. This catches
// corruption and truncation, but trusts the host: every line says so.

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

const statedNote = " (as Hugging Face states it: no checksum is pinned in the catalog)"

func (f *Fetcher) fetchStated(ctx context.Context, it catalog.Item) Result {
	cached := filepath.Join(f.CacheDir, it.Dir(), it.File)
	target := filepath.Join(f.HomeDir, it.Dir(), it.File)
	shown := f.HomeLabel + "/" + it.RelPath()
	record := cached + ".sha256"
	pin := func(sum string, size int64) catalog.Item {
		p := it
		p.SHA256, p.Bytes, p.SHA256From = sum, size, ""
		return p
	}
	annotate := func(r Result) Result {
		r.Line = strings.Replace(r.Line, "sha256 ok", "sha256 ok"+statedNote, 1)
		return r
	}

	// A cached copy with the sum stated when it was downloaded needs no
	// network.
	if sum, size, ok := readRecord(record); ok {
		if note, err := verify(cached, pin(sum, size)); err == nil {
			if err := install(cached, target); err != nil {
				return Result{Status: Failed, Line: fmt.Sprintf("%s: FAILED: installing %s: %v", it.Name, shown, err)}
			}
			return Result{Status: OK, Cached: true, Line: fmt.Sprintf("%s: cached, %s%s -> %s", it.Name, note, statedNote, shown)}
		}
		os.Remove(cached)
		os.Remove(record)
	}

	sum, size, err := f.statedSHA256(ctx, it.Upstream.URL)
	if err != nil {
		if _, serr := os.Stat(target); serr == nil {
			return Result{Status: OK, Line: fmt.Sprintf("%s: present, NOT verified (no checksum is pinned and Hugging Face's could not be read: %v); "+
				"the server checks it by signature at load -> %s", it.Name, err, shown)}
		}
		if errors.Is(err, errUnreachable) {
			return Result{Status: Unavailable, Line: fmt.Sprintf(
				"%s: unavailable: upstream %s %v, no npm fallback; fetch it on a machine with internet and drop %s into %s/",
				it.Name, it.Upstream.URL, err, it.File, f.HomeLabel+"/"+it.Dir())}
		}
		return Result{Status: Failed, Line: fmt.Sprintf("%s: FAILED: %v", it.Name, err)}
	}
	r := f.fetchPinned(ctx, pin(sum, size))
	if r.Status == OK {
		if err := os.WriteFile(record, []byte(sum+" "+strconv.FormatInt(size, 10)+"\n"), 0o644); err != nil {
			f.status("%s: could not record its checksum beside the cache (%v); the next run asks Hugging Face again", it.Name, err)
		}
	}
	return annotate(r)
}

// statedSHA256 reads the sha256 and size Hugging Face states for the file
// at a resolve URL, from the headers of its answer before any redirect.
func (f *Fetcher) statedSHA256(ctx context.Context, rawURL string) (string, int64, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", 0, err
	}
	if why, dead := f.deadHosts[u.Host]; dead {
		return "", 0, fmt.Errorf("%w (%s)", errUnreachable, why)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, rawURL, nil)
	if err != nil {
		return "", 0, err
	}
	c := *f.client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, ctx.Err()
		}
		why := netReason(err)
		f.markDead(u.Host, why)
		return "", 0, fmt.Errorf("%w (%s)", errUnreachable, why)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return "", 0, fmt.Errorf("asking %s for its checksum: answered %s", rawURL, resp.Status)
	}
	sum := strings.ToLower(strings.Trim(strings.TrimPrefix(resp.Header.Get("X-Linked-Etag"), "W/"), `"`))
	if !sha256Hex.MatchString(sum) {
		return "", 0, fmt.Errorf("%s states no sha256 for the file (X-Linked-Etag %q); refusing to install it unverified", rawURL, resp.Header.Get("X-Linked-Etag"))
	}
	size, _ := strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64)
	return sum, max(size, 0), nil
}

// readRecord reads "sha256 size" written beside a cached download.
func readRecord(path string) (string, int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, false
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 || !sha256Hex.MatchString(fields[0]) {
		return "", 0, false
	}
	size, err := strconv.ParseInt(fields[1], 10, 64)
	return fields[0], size, err == nil && size >= 0
}
