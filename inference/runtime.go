// Package inference owns ONNX Runtime: the environment, execution providers,
// sessions and the batching scheduler. It knows tensors, never images.
package inference

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"
)

// Device says where sessions run.
type Device struct {
	CUDA bool
	ID   int // CUDA device ordinal
	// Auto asks for cuda:0 when the host can run it, else the CPU; Start
	// resolves it, so a Runtime's device is never Auto.
	Auto bool
}

func (d Device) String() string {
	switch {
	case d.Auto:
		return "auto"
	case d.CUDA:
		return "cuda:" + strconv.Itoa(d.ID)
	}
	return "cpu"
}

// ParseDevice reads "cpu", "cuda", "cuda:N" or "auto".
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "cpu" || s == "":
		return Device{}, nil
	case s == "auto":
		return Device{Auto: true}, nil
	case s == "cuda":
		return Device{CUDA: true}, nil
	case strings.HasPrefix(s, "cuda:"):
		id, err := strconv.Atoi(s[len("cuda:"):])
		if err != nil || id < 0 {
			return Device{}, fmt.Errorf("bad device %q: want cpu, cuda, cuda:N or auto", s)
		}
		return Device{CUDA: true, ID: id}, nil
	}
	return Device{}, fmt.Errorf("bad device %q: want cpu, cuda, cuda:N or auto", s)
}

// Runtime is the process-wide ONNX Runtime environment. ONNX Runtime allows
// one environment per process, so there is one Runtime too.
type Runtime struct {
	device Device
	lib    string // the library loaded, for the binding layer (ortbind.c)
	api    bindingAPI
	// inflight counts Run calls under way in every session of the process;
	// it is what tells an elastic session whether its run is alone.
	inflight atomic.Int64
}

var (
	runtimeMu     sync.Mutex
	runtimeActive bool
)

// demand counts the requests in every scheduler of the process, from the
// moment they are queued until they are answered. An elastic session runs
// wide only when its run is the one request in demand: a run that starts
// while others wait would soon have company on the cores.
var demand atomic.Int64

// ErrCUDAUnavailable means the CUDA execution provider could not be loaded.
var ErrCUDAUnavailable = errors.New("CUDA execution provider unavailable")

// NewRuntime loads the ONNX Runtime shared library, turns telemetry off and,
// for a CUDA device, checks at once that the CUDA provider loads, so a
// misconfigured GPU host fails at start-up rather than on the first request.
func NewRuntime(libPath string, device Device) (*Runtime, error) {
	runtimeMu.Lock()
	defer runtimeMu.Unlock()
	if runtimeActive {
		return nil, errors.New("ONNX Runtime is already initialised in this process")
	}
	if _, err := os.Stat(libPath); err != nil {
		return nil, fmt.Errorf("ONNX Runtime library %s: %w (run scripts/fetch-models.sh onnxruntime, or pass --ort-lib)", libPath, err)
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("initialising ONNX Runtime from %s: %w", libPath, err)
	}
	// Privacy: the server must make no outbound connections and report nothing
	// about its inputs; telemetry is a no-op on Linux builds, but we say so.
	if err := ort.DisableTelemetry(); err != nil {
		ort.DestroyEnvironment()
		return nil, fmt.Errorf("disabling ONNX Runtime telemetry: %w", err)
	}
	r := &Runtime{device: device, lib: libPath}
	if device.Auto {
		ort.DestroyEnvironment()
		return nil, errors.New("device auto must be resolved first (see Start)")
	}
	if device.CUDA {
		opts, err := r.sessionOptions(SessionOptions{IntraOpThreads: 1})
		if err != nil {
			ort.DestroyEnvironment()
			return nil, err
		}
		opts.Destroy()
	}
	runtimeActive = true
	return r, nil
}

// Device reports where this runtime's sessions run.
func (r *Runtime) Device() Device { return r.device }

// Version is the loaded ONNX Runtime library's version.
func (r *Runtime) Version() string { return ort.GetVersion() }

// Close releases the environment. Sessions must be closed first.
func (r *Runtime) Close() error {
	runtimeMu.Lock()
	defer runtimeMu.Unlock()
	runtimeActive = false
	return ort.DestroyEnvironment()
}

// SessionOptions tunes one session.
type SessionOptions struct {
	// IntraOpThreads bounds the threads one Run uses. Set it deliberately:
	// with several batches in flight, the sum over instances should not
	// exceed the cores, or the runs fight over them.
	IntraOpThreads int
	// NarrowThreads, when between 1 and IntraOpThreads, makes the session
	// elastic: the model is loaded a second time with this many threads, and
	// each run takes IntraOpThreads only when no other run is under way and
	// no other request is queued in the process, NarrowThreads otherwise. A lone request then gets every
	// core, and concurrent ones share the cores instead of oversubscribing
	// them (bench/README.md, "Threads", has the measurements). The cost is
	// the model's weights held twice (three times with WideSpin).
	NarrowThreads int
	// Spin lets idle ONNX Runtime threads busy-wait for work. It lowers
	// latency on an idle machine but burns cores that concurrent runs need.
	Spin bool
	// WideSpin lets the threads of an elastic session's wide runs (a run
	// alone in the process) busy-wait between the run's parallel sections
	// while the host's CPUs are free (pressure.go), and stops them at the
	// end of each run, so that they never spin while other requests are
	// processed. The model is loaded a third time for it.
	WideSpin bool
	// stopSpin stops spinning threads at the end of each run
	// (WideSpin's session).
	stopSpin bool
	// Outputs, when set, restricts the session to these outputs, in this
	// order. Exports that also return large side outputs (ISNet's feature
	// maps) would otherwise copy them out on every run.
	Outputs []string
	// ExternalDataDir is the folder of the model's external data files
	// (weights stored beside the .onnx, as exports over 2 GB must). The
	// model itself is loaded from memory, where ONNX Runtime has no folder
	// to look in unless told.
	ExternalDataDir string
	// SharedInputs name inputs without a batch dimension, such as a
	// diffusion UNet's timestep, which every row of a batch shares.
	// NewBatchedSession leaves them out when it looks for the batch
	// dimension.
	SharedInputs []string
}

func (r *Runtime) sessionOptions(so SessionOptions) (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ort.SessionOptions, error) {
		opts.Destroy()
		return nil, err
	}
	threads := so.IntraOpThreads
	if threads <= 0 {
		threads = 1
	}
	if err := opts.SetIntraOpNumThreads(threads); err != nil {
		return fail(err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return fail(err)
	}
	spin := "0"
	if so.Spin {
		spin = "1"
	}
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", spin); err != nil {
		return fail(err)
	}
	if so.stopSpin {
		if err := opts.AddSessionConfigEntry("session.force_spinning_stop", "1"); err != nil {
			return fail(err)
		}
	}
	if so.ExternalDataDir != "" {
		if err := opts.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", so.ExternalDataDir); err != nil {
			return fail(err)
		}
	}
	if r.device.CUDA {
		if err := r.appendCUDA(opts); err != nil {
			return fail(fmt.Errorf("%w on %v: %v; use the CUDA build of ONNX Runtime (scripts/fetch-models.sh --gpu), with its provider libraries beside its core library, on a host with CUDA 13 and cuDNN 9", ErrCUDAUnavailable, r.device, err))
		}
	}
	return opts, nil
}

func (r *Runtime) appendCUDA(opts *ort.SessionOptions) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer cuda.Destroy()
	// The arena grows by what is asked for, not by doubling: with batch
	// buckets the shapes are few, and doubling would hold on to memory that
	// the next bucket never uses.
	if err := cuda.Update(map[string]string{
		"device_id":             strconv.Itoa(r.device.ID),
		"arena_extend_strategy": "kSameAsRequested",
	}); err != nil {
		return err
	}
	return opts.AppendExecutionProviderCUDA(cuda)
}
