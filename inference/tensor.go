package inference

import (
	"fmt"
	"unsafe"
)

// DType is a tensor element type. Its values are ONNX's TensorProto data
// types, so converting to and from ONNX Runtime costs nothing.
type DType int32

const (
	Invalid DType = 0
	FP32    DType = 1
	UINT8   DType = 2
	INT8    DType = 3
	UINT16  DType = 4
	INT16   DType = 5
	INT32   DType = 6
	INT64   DType = 7
	BOOL    DType = 9
	FP16    DType = 10
	FP64    DType = 11
	UINT32  DType = 12
	UINT64  DType = 13
	BF16    DType = 16
)

// Names follow the KServe v2 protocol, which Triton clients also speak.
var dtypeNames = map[DType]string{
	FP32: "FP32", UINT8: "UINT8", INT8: "INT8", UINT16: "UINT16", INT16: "INT16",
	INT32: "INT32", INT64: "INT64", BOOL: "BOOL", FP16: "FP16", FP64: "FP64",
	UINT32: "UINT32", UINT64: "UINT64", BF16: "BF16",
}

func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("DType(%d)", int32(d))
}

// ParseDType reads a KServe v2 datatype name such as "FP32".
func ParseDType(s string) (DType, bool) {
	for d, name := range dtypeNames {
		if name == s {
			return d, true
		}
	}
	return Invalid, false
}

// Size is the width of one element in bytes, or 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case UINT8, INT8, BOOL:
		return 1
	case UINT16, INT16, FP16, BF16:
		return 2
	case FP32, INT32, UINT32:
		return 4
	case INT64, UINT64, FP64:
		return 8
	}
	return 0
}

// Tensor is a dense row-major tensor whose elements are stored as
// little-endian bytes. Keeping one byte representation for every type lets the
// scheduler pack and scatter batches with plain copies, whatever the model.
type Tensor struct {
	DType DType
	Shape []int64
	Data  []byte
}

// Elements is the product of the shape's dimensions, or -1 when a
// dimension is negative or the product overflows.
func (t Tensor) Elements() int64 {
	n, ok := ShapeElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// MaxTensorBytes bounds every size computed from a shape. Nothing the
// server holds comes near it; it only keeps the arithmetic far from
// overflow, whatever a client declares.
const MaxTensorBytes = 1 << 50

// ShapeElements is the product of the dimensions with every step checked:
// false when a dimension is negative or the product passes MaxTensorBytes.
// A zero dimension makes 0, even after huge ones.
func ShapeElements(shape []int64) (int64, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			n = 0
			continue
		}
		if n > MaxTensorBytes/d {
			return 0, false
		}
		n *= d
	}
	// A zero anywhere empties the tensor, but the dimensions after it must
	// still be sane: [0, 2^62, 2^62] is refused like [1, 2^62, 2^62].
	if n == 0 {
		m := int64(1)
		for _, d := range shape {
			if d == 0 {
				continue
			}
			if m > MaxTensorBytes/d {
				return 0, false
			}
			m *= d
		}
	}
	return n, true
}

// ShapeBytes is the byte size of a tensor of this type and shape, checked
// as ShapeElements.
func ShapeBytes(dt DType, shape []int64) (int64, bool) {
	n, ok := ShapeElements(shape)
	size := int64(dt.Size())
	if !ok || size == 0 || n > MaxTensorBytes/size {
		return 0, false
	}
	return n * size, true
}

// Validate checks that the data length matches the shape and type, with
// the shape's arithmetic checked for overflow.
func (t Tensor) Validate() error {
	if t.DType.Size() == 0 {
		return fmt.Errorf("unsupported datatype %v", t.DType)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
	}
	want, ok := ShapeBytes(t.DType, t.Shape)
	if !ok {
		return fmt.Errorf("shape %v of %v is too large", t.Shape, t.DType)
	}
	if int64(len(t.Data)) != want {
		return fmt.Errorf("shape %v of %v needs %d bytes, got %d", t.Shape, t.DType, want, len(t.Data))
	}
	return nil
}

// Element lists the Go types that can view tensor data directly.
type Element interface {
	~float32 | ~float64 | ~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 | ~bool
}

// DTypeOf maps a Go element type to its tensor type. uint16 maps to UINT16;
// FP16 and BF16 data is built from raw bytes instead.
func DTypeOf[T Element]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return FP32
	case float64:
		return FP64
	case int8:
		return INT8
	case uint8:
		return UINT8
	case int16:
		return INT16
	case uint16:
		return UINT16
	case int32:
		return INT32
	case uint32:
		return UINT32
	case int64:
		return INT64
	case uint64:
		return UINT64
	case bool:
		return BOOL
	}
	return Invalid
}

// NewTensor wraps a Go slice without copying it.
func NewTensor[T Element](shape []int64, data []T) Tensor {
	return Tensor{DType: DTypeOf[T](), Shape: shape, Data: asBytes(data)}
}

// Values views the tensor's data as a Go slice of T. It copies only when the
// bytes are not aligned for T, which happens with binary payloads sliced out
// of an HTTP body.
func Values[T Element](t Tensor) []T {
	var z T
	size := int(unsafe.Sizeof(z))
	if len(t.Data) == 0 {
		return nil
	}
	n := len(t.Data) / size
	p := unsafe.Pointer(unsafe.SliceData(t.Data))
	if uintptr(p)%unsafe.Alignof(z) != 0 {
		out := make([]T, n)
		copy(asBytes(out), t.Data)
		return out
	}
	return unsafe.Slice((*T)(p), n)
}

func asBytes[T Element](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(z)))
}

// rowBytes is the byte size of one batch row of a tensor with this shape.
// Callers pass shapes that Validate accepted, whose products fit.
func rowBytes(dtype DType, shape []int64) int {
	if len(shape) == 0 {
		return dtype.Size()
	}
	n, _ := ShapeBytes(dtype, shape[1:])
	return int(n)
}

// outputBytes is the byte size of a tensor ONNX Runtime allocated, whose
// shape therefore fits in memory.
func outputBytes(dt DType, shape []int64) int {
	n, _ := ShapeBytes(dt, shape)
	return int(n)
}
