package inference

import (
	"errors"
	"fmt"
	"reflect"
	"slices"

	ort "github.com/yalue/onnxruntime_go"
)

// TensorInfo describes one model input or output. Dynamic dimensions are -1.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
}

// Session is one loaded model. It is safe for concurrent Run calls, which is
// what lets several batches of one model be in flight at once.
type Session struct {
	rt     *Runtime
	sess   *ort.DynamicAdvancedSession
	narrow *ort.DynamicAdvancedSession // nil unless elastic
	// spinning is sess with its threads spinning inside each run, for lone
	// runs on a quiet host (SessionOptions.WideSpin); nil unless elastic.
	spinning *ort.DynamicAdvancedSession
	inputs   []TensorInfo
	outputs  []TensorInfo
	bound    boundOnce // RunBound's state, made on first use
	shapes   func(inputs []Tensor) [][]int64
}

// NewSession loads a model from its serialised bytes.
func (r *Runtime) NewSession(model []byte, so SessionOptions) (*Session, error) {
	inputs, outputs, err := r.signature(model, so.ExternalDataDir, so.Outputs)
	if err != nil {
		return nil, err
	}
	sess, err := r.newORTSession(model, inputs, outputs, so)
	if err != nil {
		return nil, err
	}
	s := &Session{rt: r, sess: sess, inputs: inputs, outputs: outputs}
	if so.NarrowThreads > 0 && so.NarrowThreads < so.IntraOpThreads && !r.device.CUDA {
		if so.WideSpin && !so.Spin {
			spin := so
			spin.Spin, spin.stopSpin = true, true
			if s.spinning, err = r.newORTSession(model, inputs, outputs, spin); err != nil {
				s.Close()
				return nil, err
			}
		}
		so.IntraOpThreads = so.NarrowThreads
		if s.narrow, err = r.newORTSession(model, inputs, outputs, so); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (r *Runtime) newORTSession(model []byte, inputs, outputs []TensorInfo, so SessionOptions) (*ort.DynamicAdvancedSession, error) {
	opts, err := r.sessionOptions(so)
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(model, names(inputs), names(outputs), opts)
	if err != nil {
		return nil, fmt.Errorf("creating session: %w", err)
	}
	return sess, nil
}

// pick is the session for a run that makes inflight runs in the process:
// the wide one only when it is alone and nothing else waits (a run called
// through a scheduler is itself one request in demand), and the wide one
// that spins only when, besides, the host's CPUs are free.
func (s *Session) pick(inflight int64) *ort.DynamicAdvancedSession {
	if s.narrow != nil && (inflight > 1 || demand.Load() > 1) {
		return s.narrow
	}
	if s.spinning != nil && cpuGauge.Quiet() {
		return s.spinning
	}
	return s.sess
}

// Elastic reports whether the session switches between a wide and a narrow
// thread count by load (SessionOptions.NarrowThreads).
func (s *Session) Elastic() bool { return s.narrow != nil }

func selectOutputs(all []TensorInfo, want []string) ([]TensorInfo, error) {
	var out []TensorInfo
	for _, name := range want {
		i := slices.IndexFunc(all, func(t TensorInfo) bool { return t.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("the model has no output %q; its outputs are %v", name, names(all))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func names(infos []TensorInfo) []string {
	n := make([]string, len(infos))
	for i, info := range infos {
		n[i] = info.Name
	}
	return n
}

// Inputs lists the model's inputs in the order Run expects them.
func (s *Session) Inputs() []TensorInfo { return s.inputs }

// Outputs lists the model's outputs in the order Run returns them.
func (s *Session) Outputs() []TensorInfo { return s.outputs }

// PredictOutputShapes installs f, which gives every output's shape for a
// run's inputs (a nil entry: unknown). Run then hands ONNX Runtime Go
// buffers of those shapes even where the model declares dynamic
// dimensions other than the batch, such as an image's height and width.
// That is the only way to get FP16 and BF16 outputs of such models (see
// preallocate). A predicted shape that contradicts the declared one is
// ignored. Call it before the session's first Run.
func (s *Session) PredictOutputShapes(f func(inputs []Tensor) [][]int64) { s.shapes = f }

// Run executes the model once. Inputs are passed to ONNX Runtime without a
// copy; outputs are Go memory that outlives the call.
func (s *Session) Run(inputs []Tensor) ([]Tensor, error) {
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("model takes %d inputs, got %d", len(s.inputs), len(inputs))
	}
	in := make([]ort.Value, len(inputs))
	defer func() {
		for _, v := range in {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range inputs {
		if t.DType != s.inputs[i].DType {
			return nil, fmt.Errorf("input %s wants %v, got %v", s.inputs[i].Name, s.inputs[i].DType, t.DType)
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("input %s: %w", s.inputs[i].Name, err)
		}
		if len(t.Shape) == 0 {
			v, err := newScalar(t)
			if err != nil {
				return nil, fmt.Errorf("input %s: %w", s.inputs[i].Name, err)
			}
			in[i] = v
			continue
		}
		data := t.Data
		if len(data) == 0 {
			// ONNX Runtime accepts an empty tensor (a KV cache of length 0,
			// say) only over a non-nil buffer.
			data = []byte{0}
		}
		v, err := ort.NewCustomDataTensor(ort.NewShape(t.Shape...), data, ort.TensorElementDataType(t.DType))
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", s.inputs[i].Name, err)
		}
		in[i] = v
	}
	out := make([]ort.Value, len(s.outputs))
	defer func() {
		for _, v := range out {
			// A run that fails while converting an output leaves a typed
			// nil (a nil *ort.CustomDataTensor) in its place.
			if v != nil && !reflect.ValueOf(v).IsNil() {
				v.Destroy()
			}
		}
	}()
	if err := s.preallocate(out, inputs); err != nil {
		return nil, err
	}
	err := s.pick(s.rt.inflight.Add(1)).Run(in, out)
	s.rt.inflight.Add(-1)
	if err != nil {
		return nil, err
	}
	result := make([]Tensor, len(out))
	for i, v := range out {
		t, err := fromValue(v)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", s.outputs[i].Name, err)
		}
		result[i] = t
	}
	return result, nil
}

// newScalar makes a rank-0 value (a diffusion UNet's timestep in optimum's
// exports): onnxruntime_go's tensors need at least one dimension, its
// Scalar type none.
func newScalar(t Tensor) (ort.Value, error) {
	switch t.DType {
	case FP32:
		return ort.NewScalar(Values[float32](t)[0])
	case FP64:
		return ort.NewScalar(Values[float64](t)[0])
	case INT64:
		return ort.NewScalar(Values[int64](t)[0])
	case INT32:
		return ort.NewScalar(Values[int32](t)[0])
	case INT16:
		return ort.NewScalar(Values[int16](t)[0])
	case INT8:
		return ort.NewScalar(Values[int8](t)[0])
	case UINT8:
		return ort.NewScalar(Values[uint8](t)[0])
	case BOOL:
		return ort.NewScalar(t.Data[0] != 0)
	}
	return nil, fmt.Errorf("scalar inputs of type %v are not supported", t.DType)
}

// preallocate gives ONNX Runtime Go buffers for every output whose shape is
// known before the run: fully static shapes, and a dynamic leading batch
// dimension when every input agrees on it. That saves a copy, and it is the
// only way to get FP16 and BF16 outputs: onnxruntime_go copies one byte per
// element when it converts an auto-allocated value of those types.
func (s *Session) preallocate(out []ort.Value, inputs []Tensor) error {
	batch := int64(-1)
	for i, t := range inputs {
		if len(t.Shape) == 0 || len(s.inputs[i].Shape) == 0 || s.inputs[i].Shape[0] != -1 {
			batch = -1
			break
		}
		if i > 0 && t.Shape[0] != batch {
			batch = -1
			break
		}
		batch = t.Shape[0]
	}
	var predicted [][]int64
	if s.shapes != nil {
		predicted = s.shapes(inputs)
	}
	for i, info := range s.outputs {
		shape := append([]int64(nil), info.Shape...)
		if len(shape) > 0 && shape[0] == -1 && batch >= 0 {
			shape[0] = batch
		}
		if i < len(predicted) && fitsDeclared(predicted[i], info.Shape) {
			shape = predicted[i]
		}
		known := true
		for _, d := range shape {
			known = known && d >= 0
		}
		size, ok := ShapeBytes(info.DType, shape)
		if !known || !ok || size == 0 {
			continue // ONNX Runtime allocates it, and says so if it cannot
		}
		buf := make([]byte, size)
		v, err := ort.NewCustomDataTensor(ort.NewShape(shape...), buf, ort.TensorElementDataType(info.DType))
		if err != nil {
			return fmt.Errorf("output %s: %w", info.Name, err)
		}
		out[i] = v
	}
	return nil
}

// fitsDeclared reports whether a fully known shape agrees with a declared
// one (-1 dimensions match anything).
func fitsDeclared(shape, declared []int64) bool {
	if len(shape) != len(declared) {
		return false
	}
	for i, d := range shape {
		if d < 0 || (declared[i] >= 0 && declared[i] != d) {
			return false
		}
	}
	return true
}

// fromValue takes the Go-owned data out of an output value. onnxruntime_go
// has already copied ONNX Runtime's buffer into Go memory, so the bytes stay
// valid after the value is destroyed.
func fromValue(v ort.Value) (Tensor, error) {
	shape := []int64(v.GetShape().Clone())
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[float64]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[int8]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[uint8]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[int16]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[uint16]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[int32]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[uint32]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[int64]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[uint64]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.Tensor[bool]:
		return NewTensor(shape, t.GetData()), nil
	case *ort.CustomDataTensor:
		return Tensor{DType: DType(t.DataType()), Shape: shape, Data: t.GetData()}, nil
	}
	return Tensor{}, errors.New("unsupported output value type")
}

// Close releases the session. Device tensors from it must be released
// first.
func (s *Session) Close() error {
	for _, x := range []*ort.DynamicAdvancedSession{s.narrow, s.spinning} {
		if x != nil {
			x.Destroy()
		}
	}
	s.bound.release()
	return s.sess.Destroy()
}
