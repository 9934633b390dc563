package kserve

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imgserve/imgserve/inference"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

func decodeTyped(dt inference.DType, c *pb.InferTensorContents, n int64) ([]byte, error) {
	sig := []inference.TensorInfo{{Name: "t", DType: dt, Shape: []int64{n}}}
	req := &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "t", Datatype: dt.String(), Shape: []int64{n}, Contents: c}}}
	in, _, err := DecodeGRPCRequest(req, inference.NewInputLimits(sig, 1, nil, 0), nil)
	if err != nil {
		return nil, err
	}
	return in[0].Data, nil
}

// Typed contents become the little-endian bytes that the protocol's raw
// form would carry, and values out of a narrow type's range are refused.
func TestTypedContentsBecomeRawBytes(t *testing.T) {
	cases := []struct {
		dt   inference.DType
		c    *pb.InferTensorContents
		want []byte // nil: a bad input
	}{
		{inference.INT8, &pb.InferTensorContents{IntContents: []int32{-128, 127}}, []byte{0x80, 0x7f}},
		{inference.INT8, &pb.InferTensorContents{IntContents: []int32{-129, 0}}, nil},
		{inference.INT16, &pb.InferTensorContents{IntContents: []int32{-2, 32767}}, []byte{0xfe, 0xff, 0xff, 0x7f}},
		{inference.INT16, &pb.InferTensorContents{IntContents: []int32{32768, 0}}, nil},
		{inference.INT32, &pb.InferTensorContents{IntContents: []int32{-1, 1}}, []byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0}},
		{inference.UINT8, &pb.InferTensorContents{UintContents: []uint32{0, 255}}, []byte{0, 0xff}},
		{inference.UINT8, &pb.InferTensorContents{UintContents: []uint32{256, 0}}, nil},
		{inference.UINT16, &pb.InferTensorContents{UintContents: []uint32{1, 65535}}, []byte{1, 0, 0xff, 0xff}},
		{inference.UINT16, &pb.InferTensorContents{UintContents: []uint32{65536, 0}}, nil},
		{inference.UINT64, &pb.InferTensorContents{Uint64Contents: []uint64{1, 1 << 63}}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80}},
		{inference.INT64, &pb.InferTensorContents{Int64Contents: []int64{-1, 2}}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0}},
		{inference.BOOL, &pb.InferTensorContents{BoolContents: []bool{true, false}}, []byte{1, 0}},
		{inference.FP32, &pb.InferTensorContents{Fp32Contents: []float32{1, -2}}, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},
		{inference.FP64, &pb.InferTensorContents{Fp64Contents: []float64{1, 0}}, []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0}},
		{inference.FP32, &pb.InferTensorContents{Fp32Contents: []float32{1}}, nil},                                   // too few
		{inference.FP32, &pb.InferTensorContents{Fp32Contents: []float32{1, 2}, Fp64Contents: []float64{1, 2}}, nil}, // two fields
		{inference.FP16, &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}, nil},                                // no typed field
		{inference.FP32, nil, nil},
	}
	for _, c := range cases {
		got, err := decodeTyped(c.dt, c.c, 2)
		if c.want == nil {
			if !errors.Is(err, ErrBadInput) {
				t.Errorf("%s %v: got %v, want a bad input", c.dt, c.c, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("%s %v: got % x %v, want % x", c.dt, c.c, got, err, c.want)
		}
	}
}

func TestGRPCTimeoutParameter(t *testing.T) {
	req := &pb.ModelInferRequest{}
	if GRPCTimeout(req) != 0 {
		t.Fatal("no parameter, yet a timeout")
	}
	req.Parameters = map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 2500}}}
	if got := GRPCTimeout(req); got != 2500*time.Microsecond {
		t.Fatalf("got %v", got)
	}
}

// FuzzDecodeGRPCRequest: no message, however malformed, may panic the
// decoder or pass an invalid tensor on.
func FuzzDecodeGRPCRequest(f *testing.F) {
	seeds := []*pb.ModelInferRequest{
		{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 2},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}}}},
		{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{2, 2}}},
			RawInputContents: [][]byte{make([]byte, 16)}},
		{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 2},
			Contents: &pb.InferTensorContents{IntContents: []int32{1, 2}}}},
			Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req pb.ModelInferRequest
		if proto.Unmarshal(wire, &req) != nil {
			return
		}
		in, _, err := DecodeGRPCRequest(&req, batchedX, nil)
		if err != nil {
			return
		}
		if len(in) != 1 || in[0].Validate() != nil {
			t.Fatalf("accepted an invalid request: %v", &req)
		}
	})
}
