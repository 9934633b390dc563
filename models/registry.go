package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/imgserve/imgserve/inference"
)

// Tasks name the pipelines a model can serve. Every model is also served as
// raw tensors over KServe v2.
const (
	TaskTensor  = "tensor"
	TaskMatting = "matting"
)

// SignatureCheck refuses a session whose inputs and outputs do not fit a
// task's pipeline, so a wrong file fails at load with a clear message.
type SignatureCheck func(inputs, outputs []inference.TensorInfo) error

var tasks = map[string]SignatureCheck{
	TaskTensor:  func(_, _ []inference.TensorInfo) error { return nil },
	TaskMatting: checkMatting,
}

// RegisterTask adds a task; model family packages call it from init.
func RegisterTask(name string, check SignatureCheck) {
	if _, dup := tasks[name]; dup {
		panic("models: task registered twice: " + name)
	}
	tasks[name] = check
}

func knownTask(t string) bool { _, ok := tasks[t]; return ok }

// TaskOptions are a task's optional behaviours in the registry.
type TaskOptions struct {
	// WarmUp builds the inputs of a warm-up run of rows rows (one run per
	// batch bucket) from the session's inputs. Without it the runs feed
	// zeros with every other dynamic dimension 1, which a model that
	// downsamples an image several times cannot take.
	WarmUp func(inputs []inference.TensorInfo, rows int) []inference.Tensor
	// OutputShapes, given the session's signature, returns how to predict
	// its output shapes from a run's inputs (see
	// inference.Session.PredictOutputShapes): FP16 outputs with dynamic
	// height and width need it.
	OutputShapes func(inputs, outputs []inference.TensorInfo) func([]inference.Tensor) [][]int64
	// SharedInputs name inputs without a batch dimension (a diffusion
	// UNet's timestep): requests batch together only when these are equal,
	// and the batch passes them through (inference.BatchConfig).
	SharedInputs []string
	// Internal models serve only their family's pipeline and are not
	// served as raw tensors over KServe v2: the pipeline checks what they
	// produce before it leaves the server.
	Internal bool
}

var taskOptions = map[string]TaskOptions{}

// RegisterTaskOptions sets a registered task's options; call it from the
// family's init after RegisterTask.
func RegisterTaskOptions(name string, o TaskOptions) {
	if !knownTask(name) {
		panic("models: options for an unknown task: " + name)
	}
	taskOptions[name] = o
}

// TaskInternal reports whether a task's models are kept from KServe v2.
func TaskInternal(task string) bool { return taskOptions[task].Internal }

// WarmUpInputs builds a task's warm-up batch from the session's inputs, for
// models that cannot run on zeros with dynamic dimensions set to 1.
type WarmUpInputs func(inputs []inference.TensorInfo) []inference.Tensor

// RegisterWarmUp sets a task's warm-up inputs (TaskOptions.WarmUp, for a
// model without a batch dimension); model family packages call it from
// init, after RegisterTask.
func RegisterWarmUp(task string, inputs WarmUpInputs) {
	if !knownTask(task) {
		panic("models: warm-up for an unknown task: " + task)
	}
	o := taskOptions[task]
	o.WarmUp = func(in []inference.TensorInfo, _ int) []inference.Tensor { return inputs(in) }
	taskOptions[task] = o
}

// DimBounds gives, for a task's model, the largest value each dynamic
// dimension of each input can take ([input][dimension], 0 for no bound of
// its own): what the model can read, such as CLIP's 77 text positions.
type DimBounds func(inputs []inference.TensorInfo) [][]int64

var dimBounds = map[string]DimBounds{}

// RegisterDimBounds sets a task's dimension bounds; model family packages
// call it from init.
func RegisterDimBounds(task string, f DimBounds) {
	if _, dup := dimBounds[task]; dup {
		panic("models: dimension bounds registered twice: " + task)
	}
	dimBounds[task] = f
}

// Status is where a model is in its life.
type Status string

const (
	StatusLoading     Status = "loading"
	StatusReady       Status = "ready"
	StatusUnavailable Status = "unavailable" // its file is missing
	StatusFailed      Status = "failed"      // its file is there but does not load
)

// Model is one configured model. Its state changes as it loads, so readers
// take a snapshot with State.
type Model struct {
	Config ModelConfig
	state  atomic.Pointer[State]
}

// State is an immutable snapshot of a model.
type State struct {
	Status Status
	// Reason says why a model is unavailable or failed, with what to do.
	Reason    string
	Inputs    []inference.TensorInfo
	Outputs   []inference.TensorInfo
	BatchMode inference.BatchMode
	// ResizesRewritten counts the Resize nodes given constant scales at
	// load (inference.Runtime.RewriteResizes).
	ResizesRewritten int
	Batching         inference.BatchConfig
	// Limits bound the tensors of one request from a client (KServe over
	// HTTP or gRPC); transports check them before allocating.
	Limits    inference.InputLimits
	Scheduler *inference.Scheduler
	session   *inference.Session
}

// State returns the model's current state.
func (m *Model) State() *State { return m.state.Load() }

// ErrNotReady is returned when a model cannot take requests.
var ErrNotReady = errors.New("model not ready")

// Infer runs one request through the model's scheduler.
func (m *Model) Infer(ctx context.Context, inputs []inference.Tensor) ([]inference.Tensor, error) {
	st := m.State()
	if st.Status != StatusReady {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotReady, m.Config.Name, st.Status)
	}
	return st.Scheduler.Submit(ctx, inputs)
}

// Session is the model's ONNX Runtime session while it is ready, for a
// pipeline that drives it itself: the caption decoder keeps its cache in
// device memory between steps with Session.RunBound. Such runs bypass the
// model's scheduler, its queue and its metrics.
func (m *Model) Session() (*inference.Session, error) {
	st := m.State()
	if st.Status != StatusReady {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotReady, m.Config.Name, st.Status)
	}
	return st.session, nil
}

// Options are what the registry needs from its caller.
type Options struct {
	ModelsDir string
	Runtime   *inference.Runtime
	// Observer gives each model's scheduler somewhere to report to.
	Observer func(model string) inference.Observer
	Logger   *slog.Logger
	// FetchCommand says how to get a missing model's file; "" when nothing
	// can fetch it (a model the operator brings).
	FetchCommand func(item string) string
	// QueueWaitBudget is the load-shedding budget of models whose batching
	// sets no max_queue_wait; 0 turns shedding off for them.
	QueueWaitBudget time.Duration
}

// Registry is the set of configured models.
type Registry struct {
	opts   Options
	models []*Model
	loaded atomic.Bool
}

// NewRegistry lists the configured models; a model whose file is missing is
// marked unavailable with the command that fetches it. Nothing loads until
// Load.
func NewRegistry(cfg Config, opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FetchCommand == nil {
		opts.FetchCommand = func(item string) string { return "scripts/fetch-models.sh " + item }
	}
	r := &Registry{opts: opts}
	for _, mc := range cfg.Models {
		m := &Model{Config: mc}
		st := &State{Status: StatusLoading}
		if _, err := os.Stat(r.path(mc)); err != nil {
			how := "fetch it with: " + opts.FetchCommand(mc.Fetch)
			if cmd := opts.FetchCommand(mc.Fetch); cmd == "" {
				how = "nothing fetches it: put a model file of your own there"
			}
			st = &State{Status: StatusUnavailable, Reason: fmt.Sprintf("%s not found in %s; %s", mc.File, opts.ModelsDir, how)}
		}
		m.state.Store(st)
		r.models = append(r.models, m)
	}
	return r
}

func (r *Registry) path(mc ModelConfig) string { return r.ResolvePath(mc.File) }

// ResolvePath is where a file named in the configuration is: an absolute
// path as it is, anything else inside the models folder.
func (r *Registry) ResolvePath(file string) string {
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(r.opts.ModelsDir, file)
}

// Load loads every model whose file is present, one after another, and runs
// one warm-up batch on each. A model that fails is marked failed; the others
// still load.
func (r *Registry) Load() {
	defer r.loaded.Store(true)
	for _, m := range r.models {
		if m.State().Status != StatusLoading {
			r.opts.Logger.Warn("model unavailable", "model", m.Config.Name, "reason", m.State().Reason)
			continue
		}
		start := time.Now()
		st, err := r.load(m.Config)
		if err != nil {
			m.state.Store(&State{Status: StatusFailed, Reason: err.Error()})
			r.opts.Logger.Error("model failed to load", "model", m.Config.Name, "err", err)
			continue
		}
		m.state.Store(st)
		r.opts.Logger.Info("model ready", "model", m.Config.Name, "batch_mode", st.BatchMode.String(),
			"max_batch_size", st.Batching.MaxBatchSize, "instances", st.Batching.Instances, "elastic_threads", st.session.Elastic(),
			"resizes_rewritten", st.ResizesRewritten,
			"load_ms", time.Since(start).Milliseconds())
	}
}

func (r *Registry) load(mc ModelConfig) (*State, error) {
	data, err := os.ReadFile(r.path(mc))
	if err != nil {
		return nil, err
	}
	topts := taskOptions[mc.Task]
	b := mc.BatchingFor(r.opts.Runtime.Device())
	so := mc.SessionOptions(runtime.NumCPU(), b.Instances)
	so.ExternalDataDir, so.SharedInputs = filepath.Dir(r.path(mc)), topts.SharedInputs
	batching := b.BatchConfig()
	if b.MaxQueueWait == nil {
		batching.MaxQueueWait = r.opts.QueueWaitBudget
	}
	var (
		sess *inference.Session
		mode inference.BatchMode
		note string
	)
	openSession := func(model []byte) (err error) {
		if batching.MaxBatchSize > 1 {
			sess, mode, note, err = r.opts.Runtime.NewBatchedSession(model, so, *mc.DynamicBatch)
		} else {
			sess, err = r.opts.Runtime.NewSession(model, so)
		}
		return err
	}
	resizes := 0
	rewritten := data
	if *mc.ResizeRewrite {
		var why string
		if rewritten, resizes, why = r.opts.Runtime.RewriteResizes(data, so.ExternalDataDir); why != "" {
			r.opts.Logger.Info("model's Resize nodes kept as exported", "model", mc.Name, "reason", why)
		}
	}
	err = openSession(rewritten)
	if err != nil && resizes > 0 {
		r.opts.Logger.Warn("model with constant Resize scales does not load; serving the export as is",
			"model", mc.Name, "err", err)
		resizes = 0
		err = openSession(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mc.File, err)
	}
	if batching.MaxBatchSize > 1 && mode == inference.BatchFixed {
		r.opts.Logger.Warn("model cannot batch; serving it with batch size 1",
			"model", mc.Name, "reason", note)
		batching.MaxBatchSize = 1
	}
	if err := tasks[mc.Task](sess.Inputs(), sess.Outputs()); err != nil {
		sess.Close()
		return nil, fmt.Errorf("%s does not match task %s: %w", mc.File, mc.Task, err)
	}
	for i, in := range sess.Inputs() {
		if slices.Contains(topts.SharedInputs, in.Name) {
			batching.SharedInputs = append(batching.SharedInputs, i)
		}
	}
	if topts.OutputShapes != nil {
		sess.PredictOutputShapes(topts.OutputShapes(sess.Inputs(), sess.Outputs()))
	}
	var obs inference.Observer
	if r.opts.Observer != nil {
		obs = r.opts.Observer(mc.Name)
	}
	st := &State{
		Status:           StatusReady,
		ResizesRewritten: resizes,
		Inputs:           sess.Inputs(),
		Outputs:          sess.Outputs(),
		BatchMode:        mode,
		Scheduler:        inference.NewScheduler(sess, batching, obs),
		session:          sess,
	}
	st.Batching = st.Scheduler.Config()
	var bounds [][]int64
	if f := dimBounds[mc.Task]; f != nil {
		bounds = f(st.Inputs)
	}
	st.Limits = inference.NewInputLimits(st.Inputs, st.Batching.MaxBatchSize, bounds, mc.MaxInputBytes)
	// One run per batch bucket: on a GPU each new shape costs an arena
	// allocation and a cuDNN algorithm search, which the first requests of
	// that size would otherwise wait for.
	warm := []int{1}
	for _, b := range st.Batching.BatchBuckets {
		if b > 1 {
			warm = append(warm, b)
		}
	}
	for _, rows := range warm {
		if err := warmUp(st, rows, topts.WarmUp); err != nil {
			st.Scheduler.Close()
			sess.Close()
			return nil, fmt.Errorf("warm-up run of %d rows: %w", rows, err)
		}
	}
	st.Scheduler.ResetStats()
	// The warm-up runs paid for lazy initialisation: they would make the
	// service time, and so load shedding, far too pessimistic.
	st.Scheduler.ResetServiceTime()
	return st, nil
}

// warmUp runs one batch of zeros, so the first client request does not pay
// for ONNX Runtime's lazy initialisation. rows fills a dynamic batch
// dimension; other dynamic dimensions are 1. A task's own builder, when it
// has one, makes the inputs instead, and they go to the session directly:
// they need not wait max_queue_delay for company that never comes.
func warmUp(st *State, rows int, build func([]inference.TensorInfo, int) []inference.Tensor) error {
	if build != nil {
		_, err := st.session.Run(build(st.Inputs, rows))
		return err
	}
	inputs := make([]inference.Tensor, len(st.Inputs))
	for i, info := range st.Inputs {
		shape := slices.Clone(info.Shape)
		for d := range shape {
			if shape[d] < 0 {
				shape[d] = 1
				if d == 0 {
					shape[d] = int64(rows)
				}
			}
		}
		n, ok := inference.ShapeBytes(info.DType, shape)
		if !ok {
			return fmt.Errorf("input %s: shape %v is too large", info.Name, shape)
		}
		inputs[i] = inference.Tensor{DType: info.DType, Shape: shape, Data: make([]byte, n)}
	}
	_, err := st.Scheduler.Submit(context.Background(), inputs)
	return err
}

// Device is where the models run.
func (r *Registry) Device() inference.Device {
	if r.opts.Runtime == nil {
		return inference.Device{}
	}
	return r.opts.Runtime.Device()
}

// Loaded reports whether Load has finished.
func (r *Registry) Loaded() bool { return r.loaded.Load() }

// Get finds a model by name.
func (r *Registry) Get(name string) (*Model, bool) {
	for _, m := range r.models {
		if m.Config.Name == name {
			return m, true
		}
	}
	return nil, false
}

// Models lists the models in configuration order.
func (r *Registry) Models() []*Model { return r.models }

// Close stops every scheduler after its queued requests ran, then releases
// the sessions.
func (r *Registry) Close() {
	for _, m := range r.models {
		st := m.State()
		if st.Status != StatusReady {
			continue
		}
		st.Scheduler.Close()
		st.session.Close()
		m.state.Store(&State{Status: StatusUnavailable, Reason: "server stopped"})
	}
}
