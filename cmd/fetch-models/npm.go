package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/imgserve/imgserve/models/catalog"
)

// fetchNPM extracts the item from its npm package tarball into a new file in
// tmpDir and returns its path, unverified.
func (f *Fetcher) fetchNPM(ctx context.Context, it catalog.Item, tmpDir string) (string, error) {
	tgz, err := f.npmTarball(ctx, *it.NPM, tmpDir)
	if err != nil {
		return "", err
	}
	var out string
	if it.NPM.ChunksKey != "" {
		out, err = reassembleChunks(tgz, it.NPM.ChunksKey, tmpDir)
	} else {
		out, err = extractToTemp(tgz, it.NPM.Path, tmpDir)
	}
	if errors.Is(err, errCorruptArchive) {
		os.Remove(tgz)
		err = fmt.Errorf("%w; deleted the cached tarball %s", err, tgz)
	}
	return out, err
}

// npmTarball returns the package tarball from the cache, or fetches it there.
// It asks npm where the registry keeps the tarball and downloads it itself,
// which shows progress (npm pack is silent for minutes on the 180 MB CUDA
// package); when that download is refused or fails (a registry that wants
// npm's credentials, a proxy only npm knows), npm pack fetches it instead.
// npm pack downloads without installing, so no package script runs.
func (f *Fetcher) npmTarball(ctx context.Context, n catalog.NPM, tmpDir string) (string, error) {
	dir := filepath.Join(f.CacheDir, "npm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cached := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(n.Package, "@"), "/", "-")+"-"+n.Version+".tgz")
	if _, err := os.Stat(cached); err == nil {
		if err := checkTarballSHA1(cached, n); err != nil {
			os.Remove(cached)
			f.status("npm %s: cached tarball fails verification (%v); deleted, fetching it again", n.Spec(), err)
		} else {
			f.status("npm %s: tarball cached%s", n.Spec(), sha1Note(n))
			return cached, nil
		}
	}
	if f.NPM == "" {
		return "", fmt.Errorf("%w (npm fallback disabled)", errUnreachable)
	}

	packDir, err := os.MkdirTemp(tmpDir, "npm-pack-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(packDir)
	got, how, err := f.npmDownload(ctx, n, packDir)
	var mismatch *MismatchError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return "", ctx.Err()
	case errors.As(err, &mismatch), errors.Is(err, errUnreachable):
		// npm pack would fetch the same bytes from the same registry.
		return "", err
	default:
		f.status("npm %s: %v; trying npm pack", n.Spec(), err)
		if got, err = f.npmPack(ctx, n, packDir); err != nil {
			return "", err
		}
		how = "npm pack"
	}
	if err := os.Rename(got, cached); err != nil {
		return "", err
	}
	f.status("npm %s: tarball fetched (%s)%s", n.Spec(), how, sha1Note(n))
	return cached, nil
}

// npmDist is the dist object of `npm view <spec> dist --json`.
type npmDist struct {
	Tarball   string `json:"tarball"`
	Shasum    string `json:"shasum"`
	Integrity string `json:"integrity"`
}

// npmDownload fetches the tarball that npm names for the spec into dir,
// verified against the catalog's sha1 and the registry's own checksums. It
// says how it got it, for the status line.
func (f *Fetcher) npmDownload(ctx context.Context, n catalog.NPM, dir string) (path, how string, err error) {
	cmd := exec.CommandContext(ctx, f.NPM, "view", "--json", n.Spec(), "dist")
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		return "", "", npmError(err, stderr.String())
	}
	var dist npmDist
	if err := json.Unmarshal(stdout.Bytes(), &dist); err != nil || !strings.HasPrefix(dist.Tarball, "http") {
		return "", "", fmt.Errorf("npm view %s dist gave no tarball url", n.Spec())
	}
	path, err = f.download(ctx, "npm "+n.Spec(), dist.Tarball, 0, dir)
	if err != nil {
		// The registry npm talks to may be one this process cannot reach
		// directly (a proxy in npm's configuration): npm pack still can.
		return "", "", fmt.Errorf("downloading %s: %v", dist.Tarball, err)
	}
	if err := checkTarballSHA1(path, n); err != nil {
		os.Remove(path)
		return "", "", err
	}
	if err := checkRegistrySums(path, dist); err != nil {
		os.Remove(path)
		return "", "", err
	}
	return path, "downloaded " + dist.Tarball, nil
}

// checkRegistrySums checks a tarball against the sha1 shasum and sha512
// integrity the registry publishes, as npm itself would.
func checkRegistrySums(path string, dist npmDist) error {
	if dist.Shasum != "" {
		got, err := fileSHA1(path)
		if err != nil {
			return err
		}
		if got != dist.Shasum {
			return &MismatchError{"npm tarball shasum (registry)", got, dist.Shasum}
		}
	}
	if want, ok := strings.CutPrefix(dist.Integrity, "sha512-"); ok {
		got, err := fileSHA512Base64(path)
		if err != nil {
			return err
		}
		if got != want {
			return &MismatchError{"npm tarball integrity (registry)", "sha512-" + got, dist.Integrity}
		}
	}
	return nil
}

// npmPack fetches the tarball with npm pack into dir.
func (f *Fetcher) npmPack(ctx context.Context, n catalog.NPM, dir string) (string, error) {
	f.status("npm %s: packing (npm pack, no install scripts)", n.Spec())
	stop := f.heartbeat("npm pack " + n.Spec())
	cmd := exec.CommandContext(ctx, f.NPM, "pack", "--silent", "--ignore-scripts", "--pack-destination", dir, n.Spec())
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	err := cmd.Run()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", npmError(err, stderr.String())
	}
	// npm names the file itself (scope and slash mangled); take the only .tgz.
	found, _ := filepath.Glob(filepath.Join(dir, "*.tgz"))
	if len(found) != 1 {
		return "", fmt.Errorf("npm pack %s produced %d tarballs", n.Spec(), len(found))
	}
	if err := checkTarballSHA1(found[0], n); err != nil {
		return "", err // dir and the bad tarball go away with it
	}
	return found[0], nil
}

func checkTarballSHA1(path string, n catalog.NPM) error {
	if n.TarballSHA1 == "" {
		return nil
	}
	got, err := fileSHA1(path)
	if err != nil {
		return err
	}
	if got != n.TarballSHA1 {
		return &MismatchError{"npm tarball sha1", got, n.TarballSHA1}
	}
	return nil
}

func sha1Note(n catalog.NPM) string {
	if n.TarballSHA1 != "" {
		return ", tarball sha1 ok"
	}
	return ""
}

var npmNetErr = regexp.MustCompile(`E(NOTFOUND|AI_AGAIN|CONNREFUSED|CONNRESET|TIMEDOUT|NETUNREACH)|network`)

// npmError classifies a failed npm pack and keeps the one line of npm's
// output that says why.
func npmError(err error, stderr string) error {
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%w (npm is not installed)", errUnreachable)
	}
	why := err.Error()
	for _, line := range strings.Split(stderr, "\n") {
		if l := strings.TrimSpace(line); strings.Contains(l, "ERR!") || strings.HasPrefix(l, "npm error") {
			why = l
			break
		}
	}
	if npmNetErr.MatchString(stderr) {
		return fmt.Errorf("%w (%s)", errUnreachable, why)
	}
	return fmt.Errorf("npm pack failed: %s", why)
}

// heartbeat prints how long a silent step (npm pack) has been running, at the
// progress interval, until stop is called.
func (f *Fetcher) heartbeat(what string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(f.progressEvery())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f.status("%s: still running (%s)", what, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done); <-finished }
}

// resources is package/dist/resources.json of @imgly/background-removal-data:
// each key ("/models/small") maps to 4 MiB chunks named by their sha256.
type resources map[string]struct {
	Chunks []struct {
		Hash    string  `json:"hash"`
		Offsets []int64 `json:"offsets"`
	} `json:"chunks"`
	Size int64 `json:"size"`
}

const (
	resourcesJSON = "package/dist/resources.json"
	chunkDir      = "package/dist/"
)

var chunkHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// reassembleChunks concatenates the chunks listed under key into a new temp
// file in tmpDir. Each chunk is checked against its sha256 name; the caller
// checks the whole file against the catalog.
func reassembleChunks(tgz, key, tmpDir string) (string, error) {
	raw, err := readMember(tgz, resourcesJSON, 16<<20)
	if err != nil {
		return "", err
	}
	var res resources
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", fmt.Errorf("%s: %w", resourcesJSON, err)
	}
	entry, ok := res[key]
	if !ok || len(entry.Chunks) == 0 {
		return "", fmt.Errorf("%s has no chunks under %q", resourcesJSON, key)
	}
	var next int64
	want := map[string]bool{}
	for i, c := range entry.Chunks {
		if !chunkHashRE.MatchString(c.Hash) {
			return "", fmt.Errorf("%s: chunk %d: bad hash %q", resourcesJSON, i, c.Hash)
		}
		if len(c.Offsets) != 2 || c.Offsets[0] != next || c.Offsets[1] < next {
			return "", fmt.Errorf("%s: chunk %d: offsets %v do not follow on from %d", resourcesJSON, i, c.Offsets, next)
		}
		next = c.Offsets[1]
		want[c.Hash] = true
	}
	if entry.Size != 0 && entry.Size != next {
		return "", fmt.Errorf("%s: chunks of %q add up to %d bytes, size says %d", resourcesJSON, key, next, entry.Size)
	}

	// Chunks sit in the tarball in any order: spill them to files, then join.
	dir, err := os.MkdirTemp(tmpDir, "chunks-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	err = walkTarGz(tgz, func(name string, r io.Reader) (bool, error) {
		h := strings.TrimPrefix(name, chunkDir)
		if h == name || !want[h] {
			return false, nil
		}
		sum := sha256.New()
		p, err := writeTemp(dir, io.TeeReader(r, sum))
		if err != nil {
			return false, err
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != h {
			return false, &MismatchError{"chunk " + h[:12] + " sha256", got, h}
		}
		delete(want, h)
		return len(want) == 0, os.Rename(p, filepath.Join(dir, h))
	})
	if err != nil {
		return "", err
	}
	if len(want) > 0 {
		return "", fmt.Errorf("%d chunks of %q missing from the tarball", len(want), key)
	}

	out, err := os.CreateTemp(tmpDir, "reassembled-*")
	if err != nil {
		return "", err
	}
	for i, c := range entry.Chunks {
		if err = appendChunk(out, filepath.Join(dir, c.Hash), c.Offsets[1]-c.Offsets[0]); err != nil {
			err = fmt.Errorf("chunk %d: %w", i, err)
			break
		}
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", err
	}
	return out.Name(), nil
}

func appendChunk(w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, f)
	if err == nil && n != size {
		err = fmt.Errorf("%d bytes, offsets say %d", n, size)
	}
	return err
}
