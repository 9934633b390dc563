package inference

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers from onnx.proto. The rewrite edits the serialised model with
// protowire rather than a generated ONNX binding: it touches a handful of
// fields and copies everything else byte for byte.
const (
	modelGraph          = 7
	graphInitializer    = 5
	graphInput          = 11
	graphOutput         = 12
	graphValueInfo      = 13
	tensorProtoName     = 8
	valueInfoName       = 1
	valueInfoType       = 2
	typeTensor          = 1
	tensorTypeShape     = 2
	shapeDim            = 1
	dimParam            = 2
	batchDimParam       = "batch"
	verifyDynamicDimLen = 4
)

// MakeBatchDynamic rewrites a model whose graph inputs and outputs declare a
// fixed leading dimension so that the dimension becomes the symbol "batch".
// Intermediate shape annotations (value_info) are dropped so ONNX Runtime
// infers them again. Whether the graph really computes per row is not known
// from the signature alone; NewBatchedSession checks it by running the model.
func MakeBatchDynamic(model []byte) ([]byte, error) {
	changed := false
	out, err := rewrite(model, func(num protowire.Number, v []byte) ([]byte, bool, error) {
		if num != modelGraph {
			return v, true, nil
		}
		g, ch, err := rewriteGraph(v)
		changed = changed || ch
		return g, true, err
	})
	if err != nil {
		return nil, fmt.Errorf("rewriting batch dimension: %w", err)
	}
	if !changed {
		return nil, errors.New("rewriting batch dimension: no fixed leading dimension found")
	}
	return out, nil
}

func rewriteGraph(graph []byte) ([]byte, bool, error) {
	// Inputs that are also initializers are weights with defaults, not data.
	weights := map[string]bool{}
	_, err := rewrite(graph, func(num protowire.Number, v []byte) ([]byte, bool, error) {
		if num == graphInitializer {
			weights[stringField(v, tensorProtoName)] = true
		}
		return v, true, nil
	})
	if err != nil {
		return nil, false, err
	}
	changed := false
	out, err := rewrite(graph, func(num protowire.Number, v []byte) ([]byte, bool, error) {
		switch num {
		case graphValueInfo:
			return nil, false, nil
		case graphInput, graphOutput:
			if weights[stringField(v, valueInfoName)] {
				return v, true, nil
			}
			nv, ch, err := rewriteValueInfo(v)
			changed = changed || ch
			return nv, true, err
		}
		return v, true, nil
	})
	return out, changed, err
}

// rewriteValueInfo follows ValueInfoProto.type.tensor_type.shape.dim[0].
func rewriteValueInfo(vi []byte) ([]byte, bool, error) {
	changed := false
	descend := func(field protowire.Number, next func([]byte) ([]byte, error)) func(protowire.Number, []byte) ([]byte, bool, error) {
		return func(num protowire.Number, v []byte) ([]byte, bool, error) {
			if num != field {
				return v, true, nil
			}
			nv, err := next(v)
			return nv, true, err
		}
	}
	firstDim := func(shape []byte) ([]byte, error) {
		seen := false
		return rewrite(shape, func(num protowire.Number, v []byte) ([]byte, bool, error) {
			if num != shapeDim || seen {
				return v, true, nil
			}
			seen = true
			if stringField(v, dimParam) != "" {
				return v, true, nil // already symbolic
			}
			changed = true
			return protowire.AppendString(protowire.AppendTag(nil, dimParam, protowire.BytesType), batchDimParam), true, nil
		})
	}
	shape := func(tt []byte) ([]byte, error) { return rewrite(tt, descend(tensorTypeShape, firstDim)) }
	tensor := func(t []byte) ([]byte, error) { return rewrite(t, descend(typeTensor, shape)) }
	out, err := rewrite(vi, descend(valueInfoType, tensor))
	return out, changed, err
}

// rewrite copies a message field by field. For each length-delimited field,
// edit returns the new payload and whether to keep the field at all.
func rewrite(msg []byte, edit func(num protowire.Number, v []byte) ([]byte, bool, error)) ([]byte, error) {
	out := make([]byte, 0, len(msg))
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		field := msg[:n+m]
		msg = msg[n+m:]
		if typ != protowire.BytesType {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		nv, keep, err := edit(num, v)
		if err != nil {
			return nil, err
		}
		if keep {
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendBytes(out, nv)
		}
	}
	return out, nil
}

func stringField(msg []byte, field protowire.Number) string {
	v, _, _ := firstField(msg, field, protowire.BytesType)
	return string(v)
}

// firstField finds the first field numbered field, of type typ, in msg:
// its payload for a length-delimited field, its value for a varint.
func firstField(msg []byte, field protowire.Number, typ protowire.Type) (payload []byte, varint uint64, ok bool) {
	for len(msg) > 0 {
		num, t, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, 0, false
		}
		m := protowire.ConsumeFieldValue(num, t, msg[n:])
		if m < 0 {
			return nil, 0, false
		}
		if num == field && t == typ {
			switch typ {
			case protowire.BytesType:
				payload, _ = protowire.ConsumeBytes(msg[n:])
			case protowire.VarintType:
				varint, _ = protowire.ConsumeVarint(msg[n:])
			}
			return payload, varint, true
		}
		msg = msg[n+m:]
	}
	return nil, 0, false
}

// BatchMode says how a session's leading dimension can be used.
type BatchMode int

const (
	// BatchFixed: the model only takes its declared batch size.
	BatchFixed BatchMode = iota
	// BatchNative: the export already declares a dynamic batch dimension.
	BatchNative
	// BatchRewritten: the batch dimension was made dynamic at load and the
	// rewrite was verified by running the model.
	BatchRewritten
)

func (m BatchMode) String() string {
	return [...]string{"fixed", "native", "rewritten"}[m]
}

// NewBatchedSession loads a model for batching. A model that declares a
// dynamic leading dimension is used as is. A model with a fixed batch of 1
// is rewritten when rewrite is true, and the rewrite is kept only if one
// batch-2 run equals two batch-1 runs; otherwise the original model is
// served with batch size 1, and note says why.
func (r *Runtime) NewBatchedSession(model []byte, so SessionOptions, rewrite bool) (s *Session, mode BatchMode, note string, err error) {
	orig, err := r.NewSession(model, so)
	if err != nil {
		return nil, BatchFixed, "", err
	}
	lead := leadingDims(orig, so.SharedInputs)
	switch {
	case lead == -1:
		return orig, BatchNative, "", nil
	case lead != 1:
		return orig, BatchFixed, "leading dimensions differ or are not 1", nil
	case !rewrite:
		return orig, BatchFixed, "", nil
	}
	dyn, err := MakeBatchDynamic(model)
	if err != nil {
		return orig, BatchFixed, err.Error(), nil
	}
	cand, err := r.NewSession(dyn, so)
	if err != nil {
		return orig, BatchFixed, "rewritten model does not load: " + err.Error(), nil
	}
	if err := verifyBatching(cand); err != nil {
		cand.Close()
		return orig, BatchFixed, "batch rewrite rejected: " + err.Error(), nil
	}
	orig.Close()
	return cand, BatchRewritten, "", nil
}

// leadingDims returns the common leading dimension of all inputs (but the
// shared ones) and outputs, or 0 when they disagree or one is a scalar.
func leadingDims(s *Session, shared []string) int64 {
	var lead int64
	first := true
	for _, info := range append(append([]TensorInfo(nil), s.inputs...), s.outputs...) {
		if slices.Contains(shared, info.Name) && slices.ContainsFunc(s.inputs, func(t TensorInfo) bool { return t.Name == info.Name }) {
			continue
		}
		switch {
		case len(info.Shape) == 0:
			return 0
		case first:
			lead, first = info.Shape[0], false
		case info.Shape[0] != lead:
			return 0
		}
	}
	return lead
}

// verifyBatching runs two random rows separately and together. A graph that
// reshapes to constants with a literal batch of 1, or mixes rows, fails.
func verifyBatching(s *Session) error {
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([][]Tensor, 2)
	for r := range rows {
		for _, info := range s.inputs {
			shape := append([]int64(nil), info.Shape...)
			shape[0] = 1
			for i := 1; i < len(shape); i++ {
				if shape[i] < 0 {
					shape[i] = verifyDynamicDimLen
				}
			}
			t, err := randomTensor(rng, info.DType, shape)
			if err != nil {
				return fmt.Errorf("input %s: %w", info.Name, err)
			}
			rows[r] = append(rows[r], t)
		}
	}
	var single [2][]Tensor
	for r := range rows {
		out, err := s.Run(rows[r])
		if err != nil {
			return fmt.Errorf("batch-1 run: %w", err)
		}
		single[r] = out
	}
	both := make([]Tensor, len(s.inputs))
	for i := range s.inputs {
		a, b := rows[0][i], rows[1][i]
		shape := append([]int64(nil), a.Shape...)
		shape[0] = 2
		both[i] = Tensor{DType: a.DType, Shape: shape, Data: append(append([]byte(nil), a.Data...), b.Data...)}
	}
	out, err := s.Run(both)
	if err != nil {
		return fmt.Errorf("batch-2 run: %w", err)
	}
	for o, info := range s.outputs {
		if len(out[o].Shape) == 0 || out[o].Shape[0] != 2 {
			return fmt.Errorf("output %s has shape %v at batch 2", info.Name, out[o].Shape)
		}
		want := append(append([]byte(nil), single[0][o].Data...), single[1][o].Data...)
		if !closeEnough(info.DType, out[o].Data, want) {
			return fmt.Errorf("output %s at batch 2 differs from two batch-1 runs", info.Name)
		}
	}
	return nil
}

// maxVerifyBytes bounds one input of the load-time batching check; a model
// whose fixed dimensions ask for more is served without the rewrite.
const maxVerifyBytes = 1 << 30

func randomTensor(rng *rand.Rand, dt DType, shape []int64) (Tensor, error) {
	n, ok := ShapeBytes(dt, shape)
	if !ok || n > maxVerifyBytes {
		return Tensor{}, fmt.Errorf("shape %v of %v is too large to verify batching with", shape, dt)
	}
	t := Tensor{DType: dt, Shape: shape, Data: make([]byte, n)}
	switch dt {
	case FP32:
		v := Values[float32](t)
		for i := range v {
			v[i] = rng.Float32()
		}
	case FP64:
		v := Values[float64](t)
		for i := range v {
			v[i] = rng.Float64()
		}
	case BOOL:
		for i := range t.Data {
			t.Data[i] = byte(rng.IntN(2))
		}
	case FP16, BF16:
		// Random bit patterns would include NaNs; small positive values are
		// enough to tell rows apart.
		v := Values[uint16](t)
		for i := range v {
			v[i] = 0x3000 + uint16(rng.IntN(0x0c00))
		}
	default:
		for i := range t.Data {
			t.Data[i] = byte(rng.IntN(8))
		}
		if dt.Size() > 1 { // keep integers small and non-negative
			for i := range t.Data {
				if i%dt.Size() != 0 {
					t.Data[i] = 0
				}
			}
		}
	}
	return t, nil
}

// closeEnough compares outputs with a tolerance for floats: batched kernels
// may sum in another order.
func closeEnough(dt DType, got, want []byte) bool {
	if len(got) != len(want) {
		return false
	}
	switch dt {
	case FP32:
		a, b := Values[float32](Tensor{Data: got}), Values[float32](Tensor{Data: want})
		for i := range a {
			if !near(float64(a[i]), float64(b[i]), 1e-4) {
				return false
			}
		}
		return true
	case FP64:
		a, b := Values[float64](Tensor{Data: got}), Values[float64](Tensor{Data: want})
		for i := range a {
			if !near(a[i], b[i], 1e-9) {
				return false
			}
		}
		return true
	case FP16, BF16:
		a, b := Values[uint16](Tensor{Data: got}), Values[uint16](Tensor{Data: want})
		for i := range a {
			if d := int(a[i]) - int(b[i]); d > 2 || d < -2 { // a couple of ulps
				return false
			}
		}
		return true
	}
	return string(got) == string(want)
}

func near(a, b, tol float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
