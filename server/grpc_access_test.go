package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/server/access"
	"github.com/imgserve/imgserve/server/admission"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// The gRPC service passes the same front door as HTTP, on a real socket:
// TLS with the HTTP server's certificate, API keys from the authorization
// metadata, admission shared with HTTP, and the models' input limits.
func TestGRPCKeysTLSAndAdmission(t *testing.T) {
	certFile, keyPath, roots := selfSigned(t)
	cfg, err := access.TLSConfig(certFile, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := keyFile(t, "grpc-secret")
	srv := startServer(t, hostileConfig, testmodels.Dir(), func(o *Options) {
		o.TLS = cfg
		o.Keys = keys
		o.Admission = admission.New(admission.Limits{MaxInFlight: 1})
	})
	conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGRPCInferenceServiceClient(conn)
	keyed := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer grpc-secret")
	wrong := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nope")

	// Health stays open; everything else needs the key.
	if r, err := c.ServerLive(context.Background(), &pb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive without a key: %v %v", r, err)
	}
	if r, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil ||
		r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check without a key: %v %v", r, err)
	}
	_, err = c.ModelMetadata(context.Background(), &pb.ModelMetadataRequest{Name: "affine-dyn"})
	wantCode(t, "metadata without a key", err, codes.Unauthenticated, "API key is required")
	_, err = c.ModelMetadata(wrong, &pb.ModelMetadataRequest{Name: "affine-dyn"})
	wantCode(t, "metadata with a wrong key", err, codes.Unauthenticated, "invalid API key")
	if _, err := c.ModelMetadata(keyed, &pb.ModelMetadataRequest{Name: "affine-dyn"}); err != nil {
		t.Fatalf("metadata with the key: %v", err)
	}
	stream, err := c.ModelStreamInfer(context.Background())
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "a stream without a key", err, codes.Unauthenticated, "API key")

	// The models' limits hold over gRPC: a declared shape the model
	// refuses allocates nothing and is INVALID_ARGUMENT.
	huge := &pb.ModelInferRequest{ModelName: "clip-vit-b32-text", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "input_ids", Datatype: "INT64", Shape: []int64{8, 1 << 28}, Contents: &pb.InferTensorContents{Int64Contents: []int64{1}}},
		{Name: "attention_mask", Datatype: "INT64", Shape: []int64{8, 1 << 28}, Contents: &pb.InferTensorContents{Int64Contents: []int64{1}}},
	}}
	_, err = c.ModelInfer(keyed, huge)
	wantCode(t, "[8,2^28] over gRPC", err, codes.InvalidArgument, "exceeds the model's 77")
	overflow := &pb.ModelInferRequest{ModelName: "affine-dyn", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{2, 1<<63 - 1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}},
	}}
	_, err = c.ModelInfer(keyed, overflow)
	wantCode(t, "[2,2^63-1] over gRPC", err, codes.InvalidArgument, "input limit")

	// HTTP and gRPC share the admission: with the one slot held by an
	// HTTP upload, gRPC is RESOURCE_EXHAUSTED with a retry-after trailer.
	httpsConn := stalledTLSUpload(t, srv.URL, roots)
	defer httpsConn.Close()
	waitUntil(t, "the upload to be admitted", func() bool { return srv.Server.Admission().Stats().InFlight == 1 })
	var trailer metadata.MD
	_, err = c.ModelMetadata(keyed, &pb.ModelMetadataRequest{Name: "affine-dyn"}, grpc.Trailer(&trailer))
	wantCode(t, "metadata with the slot taken", err, codes.ResourceExhausted, "busy")
	if v := trailer.Get("retry-after"); len(v) != 1 || v[0] != "1" {
		t.Fatalf("retry-after trailer: %v", trailer)
	}
	httpsConn.Close()
	waitUntil(t, "the upload to end", func() bool { return srv.Server.Admission().Stats().InFlight == 0 })
	in := &pb.ModelInferRequest{ModelName: "affine-dyn", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{1, 2}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}},
	}}
	if _, err := c.ModelInfer(keyed, in); err != nil {
		t.Fatalf("infer with the slot free: %v", err)
	}

	// A client without TLS gets nothing from the TLS listener.
	plain, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // only a guard
	defer cancel()
	if _, err := pb.NewGRPCInferenceServiceClient(plain).ServerLive(ctx, &pb.ServerLiveRequest{}); err == nil {
		t.Fatal("a plaintext client was served on the TLS listener")
	}
}

// stalledTLSUpload opens an HTTPS request whose body stops halfway, so
// that it holds an admission slot until the connection closes.
func stalledTLSUpload(t *testing.T, url string, roots *x509.CertPool) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "http://"), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	head := "POST /v2/models/affine-dyn/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer grpc-secret\r\nContent-Length: 100000\r\n\r\n"
	if _, err := conn.Write(append([]byte(head), make([]byte, 20000)...)); err != nil {
		t.Fatal(err)
	}
	return conn
}
