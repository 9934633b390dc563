// Package gpu checks, before ONNX Runtime loads its CUDA provider, that the
// host has everything the provider needs: the CUDA build's own files, the
// NVIDIA driver, a GPU, and the CUDA and cuDNN libraries. ONNX Runtime names
// only the first library it fails to load, in a long message; this names
// every missing one and how to install it, and describes the GPU.
package gpu

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The CUDA build's files, in one folder: the core loads the two provider
// libraries from its own folder.
const (
	CoreLibrary   = "libonnxruntime.so"
	SharedLibrary = "libonnxruntime_providers_shared.so"
	CUDAProvider  = "libonnxruntime_providers_cuda.so"
)

// minDriverVersion is CUDA 13.0 in the driver's numbering: the provider is
// built against CUDA 13, which needs driver 580 or newer.
const minDriverVersion = 13000

// providerLinks is what ONNX Runtime 1.29.0's CUDA provider links against
// (its DT_NEEDED entries, less the C and C++ runtimes), for when the
// provider file itself is not there to be read.
var providerLinks = []string{"libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13", "libcuda.so.1"}

// providerLoads is what the provider loads itself when it starts (dlopen,
// so not in DT_NEEDED; found by reading the 1.29.0 provider's code): cuDNN
// 9, whose main library loads the sub-libraries listed after it, and cuFFT,
// which LaMa's Fourier convolutions need.
var providerLoads = []string{
	"libcudnn.so.9", "libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9",
	"libcudnn_engines_precompiled.so.9", "libcudnn_heuristic.so.9",
	"libcufft.so.12",
}

// systemLibraries come with every Linux host and need no check.
var systemLibraries = []string{
	"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
	"libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", SharedLibrary,
}

const driverHint = "install the NVIDIA driver, 580 or newer (CUDA 13); it provides libcuda.so.1"

// installHints say which package provides a library; the package names are
// those of NVIDIA's CUDA repository for Debian and Ubuntu.
var installHints = []struct{ prefix, hint string }{
	{"libcudart.", "install the CUDA 13 runtime (apt-get install cuda-cudart-13-0, or the CUDA 13 toolkit)"},
	{"libcublas", "install cuBLAS for CUDA 13 (apt-get install libcublas-13-0)"},
	{"libcurand.", "install cuRAND for CUDA 13 (apt-get install libcurand-13-0)"},
	{"libcufft.", "install cuFFT for CUDA 13 (apt-get install libcufft-13-0)"},
	{"libcudnn", "install cuDNN 9 for CUDA 13 (apt-get install libcudnn9-cuda-13)"},
	{"libnvrtc.", "install NVRTC for CUDA 13 (apt-get install cuda-nvrtc-13-0)"},
	{"libcuda.so", driverHint},
}

func installHint(lib string) string {
	for _, h := range installHints {
		if strings.HasPrefix(lib, h.prefix) {
			return h.hint
		}
	}
	return "install it"
}

// Missing is a library that the dynamic linker cannot find.
type Missing struct {
	Library string
	Why     string // the linker's message
	Install string
}

func (m *Missing) Error() string {
	return fmt.Sprintf("%s is missing%s: %s", m.Library, m.detail(), m.Install)
}

// detail is the linker's message when it says more than "not found", such
// as a library for another architecture.
func (m *Missing) detail() string {
	if m.Why == "" || strings.Contains(m.Why, "cannot open shared object file") {
		return ""
	}
	return " (" + m.Why + ")"
}

// Options say what to check.
type Options struct {
	// Dir is the CUDA build's folder (lib/cuda under the home folder).
	Dir string
	// Ordinal is the CUDA device wanted (cuda:N).
	Ordinal int
	// FetchCommand is how to get the CUDA build's files, for the message
	// when they are missing.
	FetchCommand string
	// Also are more libraries to require, beyond what the provider needs.
	Also []string
}

// Report is what Check found. The host can run the CUDA provider when it
// has no problems.
type Report struct {
	Device    Device            // the GPU, when the driver found it
	Libraries map[string]string // each library found, and where
	Problems  []error           // each thing missing, one per library or file
}

// Err is nil when nothing is missing, else one error naming every problem,
// one line each; missing libraries that one package provides share a line.
func (r Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	var lines []string
	group := map[string]int{} // install hint -> line of its libraries
	var libs [][]string
	missing := false
	for _, p := range r.Problems {
		var m *Missing
		if !errors.As(p, &m) {
			lines = append(lines, p.Error())
			libs = append(libs, nil)
			continue
		}
		missing = true
		if i, ok := group[m.Install]; ok && m.detail() == "" {
			libs[i] = append(libs[i], m.Library)
			continue
		}
		group[m.Install] = len(lines)
		lines = append(lines, m.Install)
		libs = append(libs, []string{m.Library + m.detail()})
	}
	for i := range lines {
		switch n := len(libs[i]); {
		case n == 1:
			lines[i] = libs[i][0] + " is missing: " + lines[i]
		case n > 1:
			lines[i] = strings.Join(libs[i], ", ") + " are missing: " + lines[i]
		}
		lines[i] = "  - " + lines[i]
	}
	if missing {
		lines = append(lines, "  (a library installed outside the linker's search path needs its folder in LD_LIBRARY_PATH)")
	}
	return fmt.Errorf("the CUDA execution provider cannot run here:\n%s", strings.Join(lines, "\n"))
}

// Check looks for everything the CUDA provider needs, without loading ONNX
// Runtime, and reports all that is missing rather than the first.
func Check(o Options) Report {
	r := Report{Libraries: map[string]string{}}
	var absent []string
	for _, f := range []string{CoreLibrary, SharedLibrary, CUDAProvider} {
		if _, err := os.Stat(filepath.Join(o.Dir, f)); err != nil {
			absent = append(absent, f)
		}
	}
	if len(absent) > 0 {
		r.Problems = append(r.Problems, fmt.Errorf("the CUDA build of ONNX Runtime is not in %s (missing %s); fetch it with: %s",
			o.Dir, strings.Join(absent, ", "), o.FetchCommand))
	}

	needed, err := Needed(filepath.Join(o.Dir, CUDAProvider))
	if err != nil {
		r.Problems = append(r.Problems, err)
	}
	for _, lib := range append(needed, o.Also...) {
		if lib == "libcuda.so.1" {
			continue // the driver check below names it
		}
		path, err := findLibrary(lib)
		if err != nil {
			r.Problems = append(r.Problems, &Missing{Library: lib, Why: err.Error(), Install: installHint(lib)})
			continue
		}
		r.Libraries[lib] = path
	}

	d, err := describe(o.Ordinal)
	switch {
	case err != nil:
		r.Problems = append(r.Problems, err)
	case d.driverVersion < minDriverVersion:
		r.Problems = append(r.Problems, fmt.Errorf("the NVIDIA driver supports CUDA %s, but this build of ONNX Runtime needs CUDA 13: %s", d.DriverCUDA, driverHint))
		r.Device = d
	default:
		r.Device = d
	}
	return r
}

// Needed lists the libraries the CUDA provider at path needs besides the
// C and C++ runtimes: those it links against, read from the file when it is
// there (else as ONNX Runtime 1.29.0's provider has them), and those it
// loads when it starts.
func Needed(path string) ([]string, error) {
	links := providerLinks
	f, err := elf.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%s is not a shared library: %w", path, err)
	default:
		defer f.Close()
		imported, err := f.ImportedLibraries()
		if err != nil {
			return nil, fmt.Errorf("reading the libraries %s needs: %w", path, err)
		}
		links = slices.DeleteFunc(imported, func(l string) bool { return slices.Contains(systemLibraries, l) })
	}
	var out []string
	for _, l := range append(slices.Clone(links), providerLoads...) {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out, nil
}
