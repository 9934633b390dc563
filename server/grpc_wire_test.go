package server

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/imgserve/imgserve/internal/testmodels"
)

// rawCodec sends and receives message bytes as they are, so that a test can
// write a request field by field and read the answer the same way, without
// any generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// A ModelInfer request written byte by byte from the field numbers of the
// KServe v2 protocol (grpc_service.proto, message ModelInferRequest), and
// its answer read back the same way: the service speaks the published wire
// format, not only the format of its own generated code.
func TestGRPCWireMatchesTheProtocol(t *testing.T) {
	srv := startServer(t, goldenConfig, testmodels.Dir())
	conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	x := fp32LE(t, "0000803f 00000040 00004040 00008040") // 1 2 3 4
	// ModelInferRequest.InferInputTensor: name = 1, datatype = 2, shape = 3 (packed int64).
	input := protowire.AppendTag(nil, 1, protowire.BytesType)
	input = protowire.AppendString(input, "x")
	input = protowire.AppendTag(input, 2, protowire.BytesType)
	input = protowire.AppendString(input, "FP32")
	input = protowire.AppendTag(input, 3, protowire.BytesType)
	input = protowire.AppendBytes(input, []byte{1, 4})
	// InferRequestedOutputTensor: name = 1.
	output := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "y")
	// ModelInferRequest: model_name = 1, model_version = 2, id = 3,
	// inputs = 5, outputs = 6, raw_input_contents = 7.
	var req []byte
	req = protowire.AppendString(protowire.AppendTag(req, 1, protowire.BytesType), "affine")
	req = protowire.AppendString(protowire.AppendTag(req, 2, protowire.BytesType), "1")
	req = protowire.AppendString(protowire.AppendTag(req, 3, protowire.BytesType), "wire-1")
	req = protowire.AppendBytes(protowire.AppendTag(req, 5, protowire.BytesType), input)
	req = protowire.AppendBytes(protowire.AppendTag(req, 6, protowire.BytesType), output)
	req = protowire.AppendBytes(protowire.AppendTag(req, 7, protowire.BytesType), x)

	var resp []byte
	if err := conn.Invoke(context.Background(), "/inference.GRPCInferenceService/ModelInfer", &req, &resp,
		grpc.ForceCodec(rawCodec{})); err != nil {
		t.Fatal(err)
	}

	// ModelInferResponse: model_name = 1, model_version = 2, id = 3,
	// outputs = 5 (name = 1, datatype = 2, shape = 3), raw_output_contents = 6.
	fields := wireFields(t, resp)
	if string(one(t, fields, 1)) != "affine" || string(one(t, fields, 2)) != "1" || string(one(t, fields, 3)) != "wire-1" {
		t.Fatalf("response header fields: %q", fields)
	}
	out := wireFields(t, one(t, fields, 5))
	if string(one(t, out, 1)) != "y" || string(one(t, out, 2)) != "FP32" || !bytes.Equal(one(t, out, 3), []byte{1, 4}) {
		t.Fatalf("output tensor fields: %q", out)
	}
	y := fp32LE(t, "00004040 0000a040 0000e040 00001041") // 3 5 7 9
	if got := one(t, fields, 6); !bytes.Equal(got, y) {
		t.Fatalf("raw_output_contents = % x, want % x", got, y)
	}
	if len(fields) != 5 {
		t.Fatalf("unexpected response fields: %q", fields)
	}
}

// wireFields reads a message's length-delimited fields by number.
func wireFields(t *testing.T, b []byte) map[protowire.Number][][]byte {
	t.Helper()
	fields := map[protowire.Number][][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			t.Fatalf("field %d: wire type %d, want length-delimited", num, typ)
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			t.Fatalf("field %d: truncated", num)
		}
		fields[num] = append(fields[num], v)
		b = b[n:]
	}
	return fields
}

func one(t *testing.T, fields map[protowire.Number][][]byte, num protowire.Number) []byte {
	t.Helper()
	if len(fields[num]) != 1 {
		t.Fatalf("field %d appears %d times", num, len(fields[num]))
	}
	return fields[num][0]
}
