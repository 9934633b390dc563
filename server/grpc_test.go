package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/imgserve/imgserve/internal/testmodels"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// These tests call the server with a client generated from Triton's own
// .proto files, over a real loopback socket.

func grpcConn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func grpcClient(t testing.TB, addr string) pb.GRPCInferenceServiceClient {
	return pb.NewGRPCInferenceServiceClient(grpcConn(t, addr))
}

func wantCode(t testing.TB, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("%s: got %v, want %v containing %q", what, err, code, msg)
	}
}

func TestGRPCServesRealU2netpLikeHTTPAndSessionRun(t *testing.T) {
	srv := startServer(t, u2netpConfig, realModelsDir())
	c := grpcClient(t, srv.GRPCAddr)
	ctx := context.Background()

	if r, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive: %v %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady: %v %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "u2netp", Version: "1"}); err != nil || !r.Ready {
		t.Fatalf("ModelReady: %v %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "lama"}); err != nil || r.Ready {
		t.Fatalf("ModelReady of an unavailable model: %v %v", r, err)
	}
	sm, err := c.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
	if err != nil || sm.Name != "imgserve" || !slices.Contains(sm.Extensions, "statistics") {
		t.Fatalf("ServerMetadata: %v %v", sm, err)
	}
	md, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "u2netp"})
	if err != nil || md.Platform != "onnxruntime_onnx" || len(md.Inputs) != 1 || md.Inputs[0].Name != "input.1" ||
		md.Inputs[0].Datatype != "FP32" || !slices.Equal(md.Inputs[0].Shape, []int64{1, 3, 320, 320}) || len(md.Outputs) != 7 {
		t.Fatalf("ModelMetadata: %v %v", md, err)
	}
	// u2netp is served unbatched (batch dimension fixed at 1), which
	// Triton's configuration says with max_batch_size 0 and full dims.
	mc, err := c.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "u2netp"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mc.Config
	if cfg.Name != "u2netp" || cfg.Platform != "onnxruntime_onnx" || cfg.MaxBatchSize != 0 ||
		cfg.Input[0].DataType != pb.DataType_TYPE_FP32 || !slices.Equal(cfg.Input[0].Dims, []int64{1, 3, 320, 320}) ||
		len(cfg.Output) != 7 || cfg.GetDynamicBatching() != nil ||
		len(cfg.InstanceGroup) != 1 || cfg.InstanceGroup[0].Count != 2 || cfg.InstanceGroup[0].Kind != pb.ModelInstanceGroup_KIND_CPU {
		t.Fatalf("ModelConfig: %v", cfg)
	}

	// The same input through gRPC, HTTP and straight through session.Run.
	x, names, want := u2netpDirect(t, 5)
	resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName:        "u2netp",
		Id:               "grpc-1",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input.1", Datatype: "FP32", Shape: []int64{1, 3, 320, 320}}},
		RawInputContents: [][]byte{float32Bytes(x)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelName != "u2netp" || resp.ModelVersion != "1" || resp.Id != "grpc-1" || len(resp.Outputs) != 7 || len(resp.RawOutputContents) != 7 {
		t.Fatalf("response: %s %s %s, %d outputs, %d raw", resp.ModelName, resp.ModelVersion, resp.Id, len(resp.Outputs), len(resp.RawOutputContents))
	}
	for i, o := range resp.Outputs {
		if o.Name != names[i] || o.Datatype != "FP32" || !slices.Equal(o.Shape, want[i].Shape) {
			t.Fatalf("output %d: %s %s %v", i, o.Name, o.Datatype, o.Shape)
		}
		if !bytes.Equal(resp.RawOutputContents[i], want[i].Data) {
			t.Fatalf("output %s differs from a direct session.Run", o.Name)
		}
	}

	input := map[string]any{"name": "input.1", "shape": []int{1, 3, 320, 320}, "datatype": "FP32",
		"parameters": map[string]any{"binary_data_size": len(x) * 4}}
	reqBody, hdr := binaryInfer(t, []map[string]any{input}, [][]byte{float32Bytes(x)}, map[string]any{"binary_data_output": true})
	code, h, body := do(t, "POST", srv.URL+"/v2/models/u2netp/infer", hdr, reqBody)
	if code != 200 {
		t.Fatalf("HTTP binary infer: %d %s", code, body)
	}
	_, blobs := splitBinaryResponse(t, h, body)
	for i := range blobs {
		if !bytes.Equal(blobs[i], resp.RawOutputContents[i]) {
			t.Fatalf("output %d: HTTP and gRPC disagree", i)
		}
	}

	// One output asked for by name.
	one, err := c.ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName:        "u2netp",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input.1", Datatype: "FP32", Shape: []int64{1, 3, 320, 320}}},
		Outputs:          []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: names[3]}},
		RawInputContents: [][]byte{float32Bytes(x)},
	})
	if err != nil || len(one.Outputs) != 1 || one.Outputs[0].Name != names[3] || !bytes.Equal(one.RawOutputContents[0], want[3].Data) {
		t.Fatalf("one output: %v", err)
	}

	// Statistics count the three infers, whichever transport sent them.
	stats, err := c.ModelStatistics(ctx, &pb.ModelStatisticsRequest{Name: "u2netp"})
	if err != nil || len(stats.ModelStats) != 1 {
		t.Fatalf("ModelStatistics: %v %v", stats, err)
	}
	ms := stats.ModelStats[0]
	is := ms.InferenceStats
	if ms.Name != "u2netp" || ms.InferenceCount != 3 || ms.ExecutionCount != 3 || is.Success.Count != 3 || is.Fail.Count != 0 ||
		is.ComputeInfer.Count != 3 || is.ComputeInfer.Ns == 0 || is.Success.Ns < is.ComputeInfer.Ns || ms.LastInference == 0 ||
		len(ms.BatchStats) != 1 || ms.BatchStats[0].BatchSize != 1 || ms.BatchStats[0].ComputeInfer.Count != 3 {
		t.Fatalf("statistics: %v", ms)
	}

	_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "nope"})
	wantCode(t, "unknown model", err, codes.NotFound, `unknown model "nope"`)
}

func affineGRPC(model string, id string, rows int) *pb.ModelInferRequest {
	x := make([]float32, rows*4)
	for i := range x {
		x[i] = float32(i)
	}
	return &pb.ModelInferRequest{
		ModelName: model,
		Id:        id,
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), 4},
			Contents: &pb.InferTensorContents{Fp32Contents: x}}},
	}
}

func TestGRPCTypedAndRawContents(t *testing.T) {
	srv := startServer(t, affineConfig, testmodels.Dir())
	c := grpcClient(t, srv.GRPCAddr)
	ctx := context.Background()

	// Typed contents in, raw contents out: y = 2x+1, sum per row.
	resp, err := c.ModelInfer(ctx, affineGRPC("affine", "t", 2))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.RawOutputContents[0], float32Bytes([]float32{1, 3, 5, 7, 9, 11, 13, 15})) ||
		!bytes.Equal(resp.RawOutputContents[1], float32Bytes([]float32{6, 22})) ||
		!slices.Equal(resp.Outputs[0].Shape, []int64{2, 4}) || !slices.Equal(resp.Outputs[1].Shape, []int64{2, 1}) {
		t.Fatalf("typed infer: %v", resp)
	}
	// The same values as raw input contents.
	raw := affineGRPC("affine", "r", 2)
	raw.RawInputContents = [][]byte{float32Bytes(raw.Inputs[0].Contents.Fp32Contents)}
	raw.Inputs[0].Contents = nil
	resp2, err := c.ModelInfer(ctx, raw)
	if err != nil || !bytes.Equal(resp2.RawOutputContents[0], resp.RawOutputContents[0]) {
		t.Fatalf("raw infer: %v", err)
	}
}

func TestGRPCDatatypes(t *testing.T) {
	srv := startServer(t, dtypesConfig, testmodels.Dir())
	c := grpcClient(t, srv.GRPCAddr)
	names := []string{"f32", "f16", "i64", "i32", "u8", "b"}
	dtypes := []string{"FP32", "FP16", "INT64", "INT32", "UINT8", "BOOL"}
	raw := [][]byte{
		float32Bytes([]float32{1.5, -2, 0.25}),
		{0x00, 0x3e, 0x00, 0xc0, 0x00, 0x34}, // FP16 1.5, -2, 0.25
		asBytes([]int64{-9000000000, 0, 5}),
		asBytes([]int32{-5, 0, 2147483647}),
		{0, 200, 255},
		{1, 0, 1},
	}
	req := &pb.ModelInferRequest{ModelName: "dtypes", RawInputContents: raw}
	for i, n := range names {
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: n, Datatype: dtypes[i], Shape: []int64{1, 3}})
	}
	resp, err := c.ModelInfer(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range resp.Outputs {
		if !bytes.Equal(resp.RawOutputContents[i], dtypesOutputBytes[o.Name]) || o.Datatype != dtypesOutputTypes[o.Name] {
			t.Errorf("%s = %s % x, want %s % x", o.Name, o.Datatype, resp.RawOutputContents[i], dtypesOutputTypes[o.Name], dtypesOutputBytes[o.Name])
		}
	}
	// Typed contents for every type but FP16, which has no typed field in
	// the protocol.
	req.RawInputContents = nil
	typed := []*pb.InferTensorContents{
		{Fp32Contents: []float32{1.5, -2, 0.25}},
		{},
		{Int64Contents: []int64{-9000000000, 0, 5}},
		{IntContents: []int32{-5, 0, 2147483647}},
		{UintContents: []uint32{0, 200, 255}},
		{BoolContents: []bool{true, false, true}},
	}
	for i, in := range req.Inputs {
		in.Contents = typed[i]
	}
	_, err = c.ModelInfer(context.Background(), req)
	wantCode(t, "typed FP16", err, codes.InvalidArgument, `input "f16": FP16 has no typed contents field`)
}

func TestGRPCErrorsMapLikeHTTP(t *testing.T) {
	srv := startServer(t, affineConfig+`
  - name: lama
    file: lama_fp32.onnx
`, testmodels.Dir(), func(o *Options) { o.MaxBodySize = 4096 })
	c := grpcClient(t, srv.GRPCAddr)
	ctx := context.Background()

	_, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "nope"})
	wantCode(t, "unknown model metadata", err, codes.NotFound, "unknown model")
	_, err = c.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "affine", Version: "2"})
	wantCode(t, "unknown version", err, codes.NotFound, "only version 1")
	_, err = c.ModelStatistics(ctx, &pb.ModelStatisticsRequest{Name: "nope"})
	wantCode(t, "unknown model stats", err, codes.NotFound, "unknown model")
	_, err = c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "nope"})
	wantCode(t, "unknown model ready", err, codes.NotFound, "unknown model")
	_, err = c.ModelInfer(ctx, affineGRPC("lama", "", 1))
	wantCode(t, "unavailable model", err, codes.Unavailable, "fetch-models.sh lama")

	bad := func(mutate func(r *pb.ModelInferRequest)) *pb.ModelInferRequest {
		r := affineGRPC("affine", "", 1)
		mutate(r)
		return r
	}
	for _, c2 := range []struct {
		name string
		req  *pb.ModelInferRequest
		msg  string
	}{
		{"no inputs", bad(func(r *pb.ModelInferRequest) { r.Inputs = nil }), "no inputs"},
		{"wrong shape", bad(func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{1, 5} }), "does not match"},
		{"batch too large", bad(func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{9, 4} }), "out of range"},
		{"wrong datatype", bad(func(r *pb.ModelInferRequest) { r.Inputs[0].Datatype = "INT32" }), "datatype"},
		{"too few elements", bad(func(r *pb.ModelInferRequest) { r.Inputs[0].Contents.Fp32Contents = []float32{1} }), "needs 4"},
		{"wrong contents field", bad(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Contents = &pb.InferTensorContents{IntContents: []int32{1, 2, 3, 4}}
		}), "fp32_contents"},
		{"raw and typed", bad(func(r *pb.ModelInferRequest) { r.RawInputContents = [][]byte{make([]byte, 16)} }), "both contents and raw_input_contents"},
		{"raw of the wrong size", bad(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Contents = nil
			r.RawInputContents = [][]byte{make([]byte, 15)}
		}), "15 bytes"},
		{"raw count", bad(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Contents = nil
			r.RawInputContents = [][]byte{make([]byte, 16), make([]byte, 16)}
		}), "2 raw_input_contents for 1 inputs"},
		{"unknown input", bad(func(r *pb.ModelInferRequest) { r.Inputs[0].Name = "z" }), "unknown input"},
		{"unknown output", bad(func(r *pb.ModelInferRequest) {
			r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "z"}}
		}), "unknown output"},
		{"classification", bad(func(r *pb.ModelInferRequest) {
			r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y",
				Parameters: map[string]*pb.InferParameter{"classification": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 2}}}}}
		}), "classification"},
	} {
		_, err := c.ModelInfer(ctx, c2.req)
		wantCode(t, c2.name, err, codes.InvalidArgument, c2.msg)
	}

	// Larger than --max-body-size: refused before it is read.
	big := affineGRPC("affine", "", 1)
	big.Inputs[0].Contents = nil
	big.RawInputContents = [][]byte{make([]byte, 8192)}
	_, err = c.ModelInfer(ctx, big)
	wantCode(t, "too large", err, codes.ResourceExhausted, "larger than max")

	// Triton's timeout parameter (µs) bounds the request like HTTP's.
	timed := affineGRPC("affine", "", 1)
	timed.Parameters = map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 1}}}
	_, err = c.ModelInfer(ctx, timed)
	wantCode(t, "timeout parameter", err, codes.DeadlineExceeded, "deadline")

	// A full queue answers RESOURCE_EXHAUSTED at once.
	var mu sync.Mutex
	counts := map[codes.Code]int{}
	var wg sync.WaitGroup
	for id := 0; id < 40; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.ModelInfer(ctx, affineGRPC("tight", "", 1))
			mu.Lock()
			counts[status.Code(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if counts[codes.ResourceExhausted] == 0 || counts[codes.OK] == 0 || counts[codes.ResourceExhausted]+counts[codes.OK] != 40 {
		t.Fatalf("codes %v: want some OK and some RESOURCE_EXHAUSTED only", counts)
	}

	// Everything above is in the metrics.
	_, _, metrics := do(t, "GET", srv.URL+"/metrics", nil, nil)
	for _, series := range []string{
		`imgserve_grpc_requests_total{code="InvalidArgument",method="ModelInfer"} 12`,
		`imgserve_grpc_requests_total{code="NotFound",method="ModelMetadata"} 1`,
		`imgserve_grpc_requests_total{code="ResourceExhausted",method="ModelInfer"} `,
		`imgserve_inference_request_failure_total{model="tight",reason="queue_full"} `,
		`imgserve_inference_request_success_total{model="tight"} `,
	} {
		if !bytes.Contains(metrics, []byte(series)) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

// A gRPC deadline becomes the request's: a request whose client gave up is
// dropped before it is packed, and never runs.
func TestGRPCDeadlineDropsTheRequest(t *testing.T) {
	srv := startServer(t, `
models:
  - name: patient
    file: affine_f32.onnx
    batching: {max_batch_size: 8, max_queue_delay: 3s, instances: 1}
`, testmodels.Dir())
	c := grpcClient(t, srv.GRPCAddr)
	if _, err := c.ServerLive(context.Background(), &pb.ServerLiveRequest{}); err != nil {
		t.Fatal(err) // connected, so that the request below reaches the server at once
	}
	// The model waits 3 s for a batch to fill; the client gives up after 1 s.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.ModelInfer(ctx, affineGRPC("patient", "", 1))
	wantCode(t, "deadline", err, codes.DeadlineExceeded, "")

	m, _ := srv.Registry.Get("patient")
	waitUntil(t, "the server to fail the request", func() bool { return m.State().Scheduler.Stats().Fail.Count == 1 })
	if st := m.State().Scheduler.Stats(); st.ExecutionCount != 0 || st.Success.Count != 0 {
		t.Fatalf("the request ran after its deadline: %+v", st)
	}
}

// waitUntil polls for something the server does by itself; the bound only
// guards against a hang.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGRPCStreamInfer(t *testing.T) {
	srv := startServer(t, affineConfig, testmodels.Dir())
	c := grpcClient(t, srv.GRPCAddr)
	stream, err := c.ModelStreamInfer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "b", "c", "d", "e"}
	for _, id := range ids {
		if err := stream.Send(affineGRPC("affine", id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Send(affineGRPC("nope", "bad", 1)); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := map[string]*pb.ModelStreamInferResponse{}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[r.InferResponse.GetId()] = r
	}
	if len(got) != 6 {
		t.Fatalf("%d responses, want 6", len(got))
	}
	for _, id := range ids {
		r := got[id]
		if r.ErrorMessage != "" || !bytes.Equal(r.InferResponse.RawOutputContents[0], float32Bytes([]float32{1, 3, 5, 7})) {
			t.Fatalf("%s: %v", id, r)
		}
	}
	if !strings.Contains(got["bad"].ErrorMessage, `unknown model "nope"`) {
		t.Fatalf("bad request: %v", got["bad"])
	}
}

func TestGRPCGracefulDrain(t *testing.T) {
	srv := startServer(t, u2netpConfig, realModelsDir())
	c := grpcClient(t, srv.GRPCAddr)
	health := healthpb.NewHealthClient(grpcConn(t, srv.GRPCAddr))
	for _, service := range []string{"", "inference.GRPCInferenceService"} {
		if r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", service, r, err)
		}
	}
	_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"})
	wantCode(t, "health of an unknown service", err, codes.NotFound, "unknown service")
	x := make([]float32, 3*320*320)
	req := &pb.ModelInferRequest{
		ModelName:        "u2netp",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input.1", Datatype: "FP32", Shape: []int64{1, 3, 320, 320}}},
		RawInputContents: [][]byte{float32Bytes(x)},
	}
	// An open stream, idle when the drain starts.
	stream, err := c.ModelStreamInfer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.ErrorMessage != "" {
		t.Fatalf("stream before the drain: %v %v", r, err)
	}

	const inFlight = 4
	results := make(chan error, inFlight)
	for i := 0; i < inFlight; i++ {
		go func() {
			_, err := c.ModelInfer(context.Background(), req)
			results <- err
		}()
	}
	waitUntil(t, "requests admitted", func() bool { return len(srv.Server.InFlight()) >= inFlight })
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutdown <- srv.Server.Shutdown(ctx)
	}()
	waitUntil(t, "the drain", srv.Server.Draining)
	_, err = c.ModelInfer(context.Background(), req)
	wantCode(t, "infer while draining", err, codes.Unavailable, "shutting down")
	if r, err := c.ServerReady(context.Background(), &pb.ServerReadyRequest{}); err != nil || r.Ready {
		t.Fatalf("ServerReady while draining: %v %v", r, err)
	}
	if r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while draining: %v %v", r, err)
	}
	for i := 0; i < inFlight; i++ {
		if err := <-results; err != nil {
			t.Fatalf("in-flight request: %v", err)
		}
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The stream was ended by the server, not left hanging.
	for {
		_, err := stream.Recv()
		if err != nil {
			wantCode(t, "stream after the drain", err, codes.Unavailable, "")
			break
		}
	}
}
