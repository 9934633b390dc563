package bench

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/server/kserve"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// u2netp's input: one 3x320x320 FP32 image, 1.2 MB.
var u2netpSig = []inference.TensorInfo{{Name: "input.1", DType: inference.FP32, Shape: []int64{1, 3, 320, 320}}}
var u2netpLimits = inference.NewInputLimits(u2netpSig, 1, nil, 0)

const u2netpElems = 3 * 320 * 320

func u2netpPixels() []float32 {
	x := make([]float32, u2netpElems)
	for i := range x {
		x[i] = float32(i%255)/127.5 - 1
	}
	return x
}

func BenchmarkDecodeBinaryRequest(b *testing.B) {
	header, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input.1", "shape": []int{1, 3, 320, 320},
		"datatype": "FP32", "parameters": map[string]any{"binary_data_size": u2netpElems * 4}}}})
	body := append([]byte(nil), header...)
	for _, f := range u2netpPixels() {
		body = binary.LittleEndian.AppendUint32(body, math.Float32bits(f))
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kserve.DecodeRequest(body, len(header), u2netpLimits, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeJSONRequest(b *testing.B) {
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input.1", "shape": []int{1, 3, 320, 320},
		"datatype": "FP32", "data": u2netpPixels()}}})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kserve.DecodeRequest(body, -1, u2netpLimits, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// u2netp's outputs: seven 1x1x320x320 FP32 masks.
func u2netpOutputs() ([]string, []inference.Tensor) {
	var names []string
	var outs []inference.Tensor
	for i := 0; i < 7; i++ {
		names = append(names, "d"+strconv.Itoa(i))
		outs = append(outs, inference.NewTensor([]int64{1, 1, 320, 320}, u2netpPixels()[:320*320]))
	}
	return names, outs
}

func BenchmarkEncodeBinaryResponse(b *testing.B) {
	names, outs := u2netpOutputs()
	req := &kserve.Request{Parameters: kserve.Parameters{"binary_data_output": true}}
	all := []int{0, 1, 2, 3, 4, 5, 6}
	b.SetBytes(7 * 320 * 320 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kserve.EncodeResponse("u2netp", req, names, all, outs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJSONResponse(b *testing.B) {
	names, outs := u2netpOutputs()
	req := &kserve.Request{Outputs: []kserve.RequestOutput{{Name: "d0"}}}
	b.SetBytes(320 * 320 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kserve.EncodeResponse("u2netp", req, names, []int{0}, outs); err != nil {
			b.Fatal(err)
		}
	}
}

// The gRPC forms of the same request and response, with protobuf's own
// (un)marshalling, which gRPC does for each message.
func u2netpGRPCRequest() *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName:        "u2netp",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input.1", Datatype: "FP32", Shape: []int64{1, 3, 320, 320}}},
		RawInputContents: [][]byte{inference.NewTensor([]int64{1, 3, 320, 320}, u2netpPixels()).Data},
	}
}

func BenchmarkGRPCDecodeRequest(b *testing.B) {
	wire, err := proto.Marshal(u2netpGRPCRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		var req pb.ModelInferRequest
		if err := proto.Unmarshal(wire, &req); err != nil {
			b.Fatal(err)
		}
		if _, _, err := kserve.DecodeGRPCRequest(&req, u2netpLimits, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGRPCEncodeResponse(b *testing.B) {
	names, outs := u2netpOutputs()
	all := []int{0, 1, 2, 3, 4, 5, 6}
	b.SetBytes(7 * 320 * 320 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(kserve.EncodeGRPCResponse("u2netp", "", names, all, outs)); err != nil {
			b.Fatal(err)
		}
	}
}
