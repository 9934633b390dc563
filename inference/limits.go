package inference

import "fmt"

// DefaultMaxInputBytes bounds the inputs of one request to a model whose
// configuration sets no max_input_bytes, unless its fixed signature at
// the largest batch needs more.
const DefaultMaxInputBytes = 32 << 20

// InputLimits bound the tensors one request may give a model, whatever
// the transport. They are checked on the declared shapes before a byte is
// allocated: every dimension a model leaves dynamic is bounded by the batch
// size, by what the model can read (MaxDims: CLIP's 77 text positions), and
// all inputs together by MaxBytes.
type InputLimits struct {
	Inputs []TensorInfo
	// Batched: the leading dimension is the batch, 1 to MaxBatch.
	Batched  bool
	MaxBatch int
	// MaxDims[i][d] bounds dimension d of input i where the model leaves it
	// dynamic; 0 leaves it to MaxBytes. May be nil.
	MaxDims [][]int64
	// MaxBytes bounds all of a request's inputs together.
	MaxBytes int64
}

// NewInputLimits are the limits of a signature served with maxBatch rows
// at most (batched when more than 1): maxBytes, raised to what the fixed
// signature needs at the largest batch, and maxDims as given.
func NewInputLimits(inputs []TensorInfo, maxBatch int, maxDims [][]int64, maxBytes int64) InputLimits {
	l := InputLimits{Inputs: inputs, Batched: maxBatch > 1, MaxBatch: max(maxBatch, 1), MaxDims: maxDims, MaxBytes: maxBytes}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxInputBytes
	}
	// A model whose fixed inputs are larger than the default must still
	// take one full batch.
	var fixed int64
	for _, in := range inputs {
		shape := append([]int64(nil), in.Shape...)
		for d := range shape {
			if shape[d] < 0 {
				shape[d] = 1
			}
		}
		if l.Batched && len(shape) > 0 {
			shape[0] = int64(l.MaxBatch)
		}
		if n, ok := ShapeBytes(in.DType, shape); ok {
			fixed += n
		}
	}
	l.MaxBytes = max(l.MaxBytes, min(fixed, MaxTensorBytes))
	return l
}

// CheckShape checks the declared type and shape of input i against the
// model and the limits, and returns its byte size. used is what the
// request's other inputs take, for MaxBytes.
func (l InputLimits) CheckShape(i int, dt DType, shape []int64, used int64) (int64, error) {
	info := l.Inputs[i]
	if dt != info.DType {
		return 0, fmt.Errorf("datatype %s, the model wants %s", dt, info.DType)
	}
	if len(shape) != len(info.Shape) {
		return 0, fmt.Errorf("shape %v has rank %d, the model wants %v", shape, len(shape), info.Shape)
	}
	for d, n := range shape {
		if n < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d == 0 && l.Batched {
			if n < 1 || n > int64(l.MaxBatch) {
				return 0, fmt.Errorf("batch dimension %d out of range 1..%d", n, l.MaxBatch)
			}
			continue
		}
		if info.Shape[d] >= 0 {
			if n != info.Shape[d] {
				return 0, fmt.Errorf("shape %v does not match the model's %v", shape, info.Shape)
			}
			continue
		}
		if i < len(l.MaxDims) && d < len(l.MaxDims[i]) && l.MaxDims[i][d] > 0 && n > l.MaxDims[i][d] {
			return 0, fmt.Errorf("dimension %d of shape %v exceeds the model's %d", d, shape, l.MaxDims[i][d])
		}
	}
	size, ok := ShapeBytes(dt, shape)
	if !ok || size > l.MaxBytes-used {
		return 0, fmt.Errorf("shape %v of %s is larger than the model's input limit of %d bytes per request", shape, dt, l.MaxBytes)
	}
	return size, nil
}

// Check checks every tensor of a request, in the model's input order.
func (l InputLimits) Check(inputs []Tensor) error {
	if len(inputs) != len(l.Inputs) {
		return fmt.Errorf("%w: the model takes %d inputs, got %d", ErrBadRequest, len(l.Inputs), len(inputs))
	}
	var used int64
	for i, t := range inputs {
		n, err := l.CheckShape(i, t.DType, t.Shape, used)
		if err != nil {
			return fmt.Errorf("%w: input %s: %v", ErrBadRequest, l.Inputs[i].Name, err)
		}
		used += n
	}
	return nil
}
