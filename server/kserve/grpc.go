package kserve

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/imgserve/imgserve/inference"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// The KServe v2 gRPC protocol carries each input either as typed contents
// (InferTensorContents, one repeated field per element type) or, for every
// input at once, as raw little-endian bytes in raw_input_contents, in the
// order of the inputs. Outputs always go back as raw_output_contents, as
// Triton sends them.

// DecodeGRPCRequest checks a gRPC infer request against a model's signature.
// It returns the tensors in the model's input order and the names of the
// outputs asked for (none: all).
func DecodeGRPCRequest(req *pb.ModelInferRequest, lim inference.InputLimits, reserve func(int64) error) ([]inference.Tensor, []string, error) {
	if len(req.Inputs) == 0 {
		return nil, nil, BadInput("no inputs")
	}
	raw := req.RawInputContents
	if len(raw) > 0 && len(raw) != len(req.Inputs) {
		return nil, nil, BadInput("%d raw_input_contents for %d inputs: give one per input, or none", len(raw), len(req.Inputs))
	}
	if err := checkID(req.Id); err != nil {
		return nil, nil, err
	}
	inputs := NewInputs(lim)
	for i, in := range req.Inputs {
		err := inputs.Add(in.Name, in.Datatype, in.Shape, func(dt inference.DType, n int64) ([]byte, error) {
			if len(raw) > 0 {
				if in.Contents != nil {
					return nil, errors.New("both contents and raw_input_contents")
				}
				return raw[i], nil
			}
			// Typed contents become a new buffer: reserved first.
			if err := Reserved(reserve, n*int64(dt.Size())); err != nil {
				return nil, err
			}
			return typedContents(in.Contents, dt, n)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	tensors, err := inputs.Tensors()
	if err != nil {
		return nil, nil, err
	}
	requested := make([]string, len(req.Outputs))
	for i, o := range req.Outputs {
		for key := range o.Parameters {
			if err := CheckOutputParameter(o.Name, key); err != nil {
				return nil, nil, err
			}
		}
		requested[i] = o.Name
	}
	return tensors, requested, nil
}

// GRPCTimeout is Triton's per-request timeout parameter; 0 when the request
// sets none.
func GRPCTimeout(req *pb.ModelInferRequest) time.Duration {
	return Timeout(req.Parameters["timeout"].GetInt64Param())
}

// Timeout reads Triton's timeout parameter, in microseconds; 0 or less is
// none.
func Timeout(us int64) time.Duration {
	if us <= 0 {
		return 0
	}
	return time.Duration(min(us, math.MaxInt64/1000)) * time.Microsecond
}

// typedContents converts the one repeated field that holds a datatype's
// elements into little-endian bytes. FP16 and BF16 have no such field; they
// travel as raw bytes only.
func typedContents(c *pb.InferTensorContents, dt inference.DType, n int64) ([]byte, error) {
	if c == nil {
		return nil, errors.New("no contents and no raw_input_contents")
	}
	// Exactly one field may be set: the datatype's own.
	lens := map[string]int{
		"bool_contents": len(c.BoolContents), "int_contents": len(c.IntContents), "int64_contents": len(c.Int64Contents),
		"uint_contents": len(c.UintContents), "uint64_contents": len(c.Uint64Contents), "fp32_contents": len(c.Fp32Contents),
		"fp64_contents": len(c.Fp64Contents), "bytes_contents": len(c.BytesContents),
	}
	field := map[inference.DType]string{
		inference.BOOL: "bool_contents", inference.INT8: "int_contents", inference.INT16: "int_contents",
		inference.INT32: "int_contents", inference.INT64: "int64_contents", inference.UINT8: "uint_contents",
		inference.UINT16: "uint_contents", inference.UINT32: "uint_contents", inference.UINT64: "uint64_contents",
		inference.FP32: "fp32_contents", inference.FP64: "fp64_contents",
	}[dt]
	if field == "" {
		return nil, fmt.Errorf("%s has no typed contents field; send it in raw_input_contents", dt)
	}
	for name, l := range lens {
		if name != field && l > 0 {
			return nil, fmt.Errorf("%s data must be in %s, not %s", dt, field, name)
		}
	}
	if got := int64(lens[field]); got != n {
		return nil, fmt.Errorf("%s has %d elements, its shape needs %d", field, got, n)
	}
	size := dt.Size()
	out := make([]byte, 0, n*int64(size))
	switch dt {
	case inference.BOOL:
		for _, v := range c.BoolContents {
			out = append(out, boolByte(v))
		}
	case inference.INT8, inference.INT16, inference.INT32:
		lo, hi := int64(-1)<<(8*size-1), int64(1)<<(8*size-1)-1
		for i, v := range c.IntContents {
			if int64(v) < lo || int64(v) > hi {
				return nil, fmt.Errorf("element %d: %d is out of range for %s", i, v, dt)
			}
			out = appendInt(out, uint64(v), size)
		}
	case inference.INT64:
		for _, v := range c.Int64Contents {
			out = binary.LittleEndian.AppendUint64(out, uint64(v))
		}
	case inference.UINT8, inference.UINT16, inference.UINT32:
		hi := uint64(1)<<(8*size) - 1
		for i, v := range c.UintContents {
			if uint64(v) > hi {
				return nil, fmt.Errorf("element %d: %d is out of range for %s", i, v, dt)
			}
			out = appendInt(out, uint64(v), size)
		}
	case inference.UINT64:
		for _, v := range c.Uint64Contents {
			out = binary.LittleEndian.AppendUint64(out, v)
		}
	case inference.FP32:
		for _, v := range c.Fp32Contents {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	case inference.FP64:
		for _, v := range c.Fp64Contents {
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(v))
		}
	}
	return out, nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// EncodeGRPCResponse answers with the selected outputs (from SelectOutputs)
// as raw bytes. The tensors' bytes are used as they are, without a copy.
func EncodeGRPCResponse(model, id string, names []string, selected []int, outs []inference.Tensor) *pb.ModelInferResponse {
	resp := &pb.ModelInferResponse{
		ModelName:         model,
		ModelVersion:      "1",
		Id:                id,
		Outputs:           make([]*pb.ModelInferResponse_InferOutputTensor, len(selected)),
		RawOutputContents: make([][]byte, len(selected)),
	}
	for i, idx := range selected {
		t := outs[idx]
		resp.Outputs[i] = &pb.ModelInferResponse_InferOutputTensor{Name: names[idx], Datatype: t.DType.String(), Shape: t.Shape}
		resp.RawOutputContents[i] = t.Data
	}
	return resp
}
