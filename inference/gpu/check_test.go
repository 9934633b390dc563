package gpu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/internal/paths"
)

// buildProvider compiles a shared library that links against a library
// of the given soname, as the CUDA provider links against libcudart.so.13,
// and returns its path. The linked library exists only in a folder the
// dynamic linker does not search.
func buildProvider(t *testing.T, dir, needs string) string {
	t.Helper()
	stubDir := t.TempDir()
	stub := filepath.Join(stubDir, needs)
	src := filepath.Join(stubDir, "x.c")
	if err := os.WriteFile(src, []byte("int imgserve_probe_test(void) { return 1; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, out)
		}
	}
	run("-shared", "-fPIC", "-o", stub, "-Wl,-soname,"+needs, src)
	provider := filepath.Join(dir, CUDAProvider)
	run("-shared", "-fPIC", "-o", provider, src, "-Wl,--no-as-needed", stub)
	return provider
}

func TestNeededReadsTheProvider(t *testing.T) {
	dir := t.TempDir()
	provider := buildProvider(t, dir, "libimgserve-test-cudart.so.13")
	got, err := Needed(provider)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{"libimgserve-test-cudart.so.13"}, providerLoads...)
	if !slices.Equal(got, want) {
		t.Errorf("Needed = %v, want %v", got, want)
	}

	// Without the provider file: what ONNX Runtime 1.29.0's provider needs.
	got, err = Needed(filepath.Join(t.TempDir(), CUDAProvider))
	if err != nil || !slices.Contains(got, "libcudart.so.13") || !slices.Contains(got, "libcublasLt.so.13") || !slices.Contains(got, "libcudnn.so.9") {
		t.Errorf("Needed without the file = %v, %v", got, err)
	}

	// A file that is not a library is an error, not a silent guess.
	junk := filepath.Join(dir, "junk.so")
	os.WriteFile(junk, []byte("not ELF"), 0o644)
	if _, err := Needed(junk); err == nil || !strings.Contains(err.Error(), "not a shared library") {
		t.Errorf("Needed(junk) = %v", err)
	}
}

// The real provider, when it was fetched (scripts/fetch-models.sh --gpu),
// needs what providerLinks records.
func TestRecordedLinksMatchTheRealProvider(t *testing.T) {
	path := filepath.Join(filepath.Dir(paths.ORTCUDALib(paths.RepoHome())), CUDAProvider)
	if _, err := os.Stat(path); err != nil {
		t.Logf("%s not fetched (it is 230 MB and make test does not fetch it); checking the recorded list only", path)
		if len(providerLinks) == 0 || !slices.Contains(providerLinks, "libcudart.so.13") {
			t.Errorf("providerLinks = %v", providerLinks)
		}
		return
	}
	got, err := Needed(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(providerLinks), providerLoads...); !slices.Equal(got, want) {
		t.Errorf("the real provider needs %v; providerLinks records %v", got, providerLinks)
	}
}

func TestFindLibrary(t *testing.T) {
	path, err := findLibrary("libm.so.6")
	if err != nil || !strings.Contains(path, "libm") {
		t.Errorf("libm.so.6: %q, %v", path, err)
	}
	if _, err := findLibrary("libimgserve-absent.so.7"); err == nil || !strings.Contains(err.Error(), "libimgserve-absent.so.7") {
		t.Errorf("absent library: %v", err)
	}
}

// Check names every missing piece, each with how to get it: the CUDA
// build's files, each library the provider links against, each library it
// loads, and the driver or GPU.
func TestCheckNamesEveryMissingPiece(t *testing.T) {
	dir := t.TempDir()
	r := Check(Options{Dir: dir, FetchCommand: "scripts/fetch-models.sh --gpu", Also: []string{"libimgserve-absent.so.7", "libm.so.6"}})
	err := r.Err()
	if err == nil {
		t.Fatal("Check of an empty folder found no problem")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{
		"the CUDA build of ONNX Runtime is not in " + dir,
		"missing libonnxruntime.so, libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so",
		"fetch it with: scripts/fetch-models.sh --gpu",
		"libimgserve-absent.so.7 is missing: install it",
		"LD_LIBRARY_PATH",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q", want)
		}
	}
	if r.Libraries["libm.so.6"] == "" {
		t.Errorf("libm.so.6 not reported as found: %v", r.Libraries)
	}
	// Every library the provider needs is either found or named with an
	// install hint; nothing is silently skipped.
	needed, _ := Needed(filepath.Join(dir, CUDAProvider))
	for _, lib := range needed {
		if lib == "libcuda.so.1" {
			continue
		}
		var named bool
		for _, p := range r.Problems {
			var m *Missing
			named = named || (errors.As(p, &m) && m.Library == lib && m.Install != "" && m.Install != "install it")
		}
		if _, found := r.Libraries[lib]; found == named {
			t.Errorf("%s: found=%v, named as missing=%v", lib, found, named)
		}
	}
}

// Whichever host this runs on, the driver check answers: a GPU described,
// or the missing driver named with how to install it.
func TestDescribeDevice(t *testing.T) {
	d, err := describe(0)
	var m *Missing
	switch {
	case errors.As(err, &m):
		if m.Library != "libcuda.so.1" || !strings.Contains(m.Error(), "NVIDIA driver") {
			t.Errorf("no driver: %v", err)
		}
		t.Logf("no NVIDIA driver on this host: %v", err)
	case err != nil:
		if !strings.Contains(err.Error(), "NVIDIA driver") {
			t.Errorf("driver error does not say what failed: %v", err)
		}
		t.Logf("NVIDIA driver present, no usable GPU: %v", err)
	default:
		if d.Name == "" || d.TotalMemory == 0 || d.ComputeCapability == "0.0" || d.DriverCUDA == "" {
			t.Errorf("GPU described incompletely: %+v", d)
		}
		t.Logf("GPU: %v", d)
		if _, err := describe(1 << 20); err == nil || !strings.Contains(err.Error(), "GPU(s)") {
			t.Errorf("a device ordinal past the last GPU: %v", err)
		}
	}
}

func TestInstallHints(t *testing.T) {
	for lib, want := range map[string]string{
		"libcudart.so.13":     "cuda-cudart-13-0",
		"libcublasLt.so.13":   "libcublas-13-0",
		"libcublas.so.13":     "libcublas-13-0",
		"libcurand.so.10":     "libcurand-13-0",
		"libcufft.so.12":      "libcufft-13-0",
		"libcudnn.so.9":       "libcudnn9-cuda-13",
		"libcudnn_cnn.so.9":   "libcudnn9-cuda-13",
		"libcuda.so.1":        "NVIDIA driver",
		"libsomethingelse.so": "install it",
	} {
		if got := installHint(lib); !strings.Contains(got, want) {
			t.Errorf("%s: hint %q lacks %q", lib, got, want)
		}
	}
}
