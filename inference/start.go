package inference

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/imgserve/imgserve/inference/gpu"
)

// Libraries are the two builds of ONNX Runtime a host may have.
type Libraries struct {
	// CPU is the CPU build, used for --device cpu.
	CPU string
	// CUDA is the CUDA build's core library; its provider libraries sit
	// beside it. It runs the CPU provider too.
	CUDA string
	// FetchCUDA is the command that fetches the CUDA build, for messages.
	FetchCUDA string
}

// Started says what Start chose and found, for the start-up log.
type Started struct {
	Device  Device // where sessions run
	Library string // the ONNX Runtime library loaded
	// GPU and CUDALibraries describe the GPU and where each CUDA library
	// was found, on a CUDA device.
	GPU           gpu.Device
	CUDALibraries map[string]string
	// Fallback says why --device auto runs on the CPU; empty otherwise.
	Fallback string
}

// Start loads the build of ONNX Runtime that matches the device:
//   - cpu: the CPU build;
//   - cuda:N: the CUDA build, once gpu.Check has found everything its
//     provider needs; otherwise an error (ErrCUDAUnavailable) that names
//     every missing piece and how to get it;
//   - auto: cuda:0 when that can start, else the CPU, with the reason in
//     Started.Fallback.
func Start(libs Libraries, want Device) (*Runtime, Started, error) {
	if !want.CUDA && !want.Auto {
		rt, err := NewRuntime(libs.CPU, Device{})
		return rt, Started{Device: Device{}, Library: libs.CPU}, err
	}
	id := want.ID // 0 for auto
	report := gpu.Check(gpu.Options{Dir: filepath.Dir(libs.CUDA), Ordinal: id, FetchCommand: libs.FetchCUDA})
	if err := report.Err(); err != nil {
		if !want.Auto {
			return nil, Started{}, fmt.Errorf("--device cuda:%d: %w", id, unavailable{err})
		}
		// The CPU build, which is there on every host this serves.
		rt, err2 := NewRuntime(libs.CPU, Device{})
		return rt, Started{Library: libs.CPU, Fallback: oneLine(err)}, err2
	}
	started := Started{Device: Device{CUDA: true, ID: id}, Library: libs.CUDA, GPU: report.Device, CUDALibraries: report.Libraries}
	rt, err := NewRuntime(libs.CUDA, started.Device)
	if err == nil || !want.Auto {
		return rt, started, err
	}
	// Everything was in place and the provider still failed to load. The
	// CUDA build runs the CPU provider as well (make test proves it), and
	// loading the other build into this process could clash with the first.
	rt, err2 := NewRuntime(libs.CUDA, Device{})
	return rt, Started{Library: libs.CUDA, Fallback: oneLine(err)}, err2
}

// unavailable is a failed gpu.Check: it reads as the check's report and
// matches ErrCUDAUnavailable.
type unavailable struct{ error }

func (unavailable) Is(target error) bool { return target == ErrCUDAUnavailable }

// oneLine folds a multi-line report into one line, for a log field.
func oneLine(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i := range lines {
		lines[i] = strings.TrimPrefix(strings.TrimSpace(lines[i]), "- ")
	}
	return strings.TrimSpace(lines[0] + " " + strings.Join(lines[1:], "; "))
}
