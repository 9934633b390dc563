package server

import (
	"context"
	"errors"
	"io"
	"net"
	"path"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/server/admission"
	"github.com/imgserve/imgserve/server/kserve"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// KServe v2 over gRPC: inference.GRPCInferenceService, Triton's service,
// answering from the same functions as HTTP (kserve_protocol.go).

// ServeGRPC serves the KServe v2 gRPC service on ln until Shutdown.
func (s *Server) ServeGRPC(ln net.Listener) error {
	return s.grpc.Serve(ln)
}

func (s *Server) newGRPCServer() *grpc.Server {
	opts := []grpc.ServerOption{
		// The same bound as an HTTP body; over it gRPC answers
		// RESOURCE_EXHAUSTED before the message is read.
		grpc.MaxRecvMsgSize(s.opts.MaxBodySize),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return s.rpc(ctx, path.Base(info.FullMethod), req, h)
		}),
		// A stream needs the key to open; each of its messages then passes
		// the front door as a unary call does (rpc).
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := s.checkKey(grpcAuthorization(ss.Context()), "", grpcAccess(path.Base(info.FullMethod))); err != nil {
				return grpcError(err)
			}
			return h(srv, ss)
		}),
		// Streams and idle connections are bounded as HTTP's are.
		grpc.MaxConcurrentStreams(uint32(min(s.opts.Admission.Limits().MaxInFlight, 1<<16))),
		grpc.ConnectionTimeout(s.opts.HeaderTimeout),
	}
	if s.opts.TLS != nil {
		// The HTTP server's certificate; credentials.NewTLS offers h2.
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.opts.TLS.Clone())))
	}
	g := grpc.NewServer(opts...)
	pb.RegisterGRPCInferenceServiceServer(g, grpcService{s: s})
	healthpb.RegisterHealthServer(g, grpcHealth{s: s})
	return g
}

// grpcProbes keep answering while the server drains, as the HTTP health
// routes do (they answer "not ready" instead), and skip admission.
var grpcProbes = map[string]bool{"ServerLive": true, "ServerReady": true, "ModelReady": true, "Check": true}

// grpcAccess is what a method needs when API keys are configured: the
// server's liveness and readiness and gRPC's health check are open, as
// HTTP's health probes are; everything else needs a key.
func grpcAccess(method string) Access {
	switch method {
	case "ServerLive", "ServerReady", "Check":
		return AccessOpen
	}
	return AccessKey
}

// grpcAuthorization is the "authorization" metadata of a call, where gRPC
// clients put "Bearer <key>".
func grpcAuthorization(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// rpc runs one gRPC request (a unary call, or one message of a stream)
// through the front door HTTP requests pass too (Server.admit): draining,
// the API key from the "authorization" metadata, admission (the in-flight
// bound and the memory budget), the server's deadline. A panic becomes
// INTERNAL, errors get their gRPC code (a refusal RESOURCE_EXHAUSTED with
// a "retry-after" trailer in seconds), and the request is counted and
// logged (ids, sizes and timings only).
func (s *Server) rpc(ctx context.Context, method string, req any, call func(context.Context, any) (any, error)) (resp any, err error) {
	start := time.Now()
	model, id := "", ""
	if r, ok := req.(interface{ GetModelName() string }); ok {
		model = r.GetModelName()
	} else if r, ok := req.(interface{ GetName() string }); ok {
		model = r.GetName()
	}
	if r, ok := req.(*pb.ModelInferRequest); ok {
		id = requestID([]byte(r.Id))
	}
	if id == "" {
		id = strconv.FormatUint(s.nextID.Add(1), 10)
	}
	actx, leave, err := s.admit(ctx, grpcAuthorization(ctx), id, "grpc:"+method, grpcAccess(method), grpcProbes[method])
	if err == nil {
		resp, err = s.guardRPC(actx, method, req, call)
	}
	leave()
	if err != nil {
		if st := ErrorStatus(err); st.RetryAfter > 0 {
			grpc.SetTrailer(ctx, metadata.Pairs("retry-after", retryAfterSeconds(st.RetryAfter)))
		}
	}
	err = grpcError(err)

	code := status.Code(err)
	s.opts.Metrics.grpc.WithLabelValues(method, code.String()).Inc()
	s.opts.Logger.Info("request", "id", id, "transport", "grpc", "method", method, "model", s.opts.Metrics.modelLabel(model),
		"code", code.String(), "in_bytes", messageSize(req), "out_bytes", messageSize(resp),
		"ms", float64(time.Since(start).Microseconds())/1000)
	return resp, err
}

func (s *Server) guardRPC(ctx context.Context, method string, req any, call func(context.Context, any) (any, error)) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			recovered.Report("grpc.handler", v)
			resp, err = nil, newError(500, "internal", "internal error")
		}
	}()
	return call(ctx, req)
}

func messageSize(m any) int {
	if pm, ok := m.(proto.Message); ok && pm != nil {
		return proto.Size(pm)
	}
	return 0
}

type grpcService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (g grpcService) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (g grpcService) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: g.s.serverReadyNow()}, nil
}

func (g grpcService) ModelReady(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	ready, err := g.s.modelReadyNow(req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	return &pb.ModelReadyResponse{Ready: ready}, nil
}

func (g grpcService) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return g.s.serverMetadataProto(), nil
}

func (g grpcService) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return g.s.modelMetadataProto(req.Name, req.Version)
}

func (g grpcService) ModelConfig(_ context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
	cfg, err := g.s.modelConfigProto(req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	return &pb.ModelConfigResponse{Config: cfg}, nil
}

func (g grpcService) ModelStatistics(_ context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
	return g.s.modelStatsProto(req.Name, req.Version)
}

func (g grpcService) RepositoryIndex(_ context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	return g.s.repositoryIndexProto(req.Ready), nil
}

func (g grpcService) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return g.s.inferGRPC(ctx, req)
}

// inferGRPC is the gRPC form of the one infer path, inferKServe.
func (s *Server) inferGRPC(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	res, err := s.inferKServe(ctx, req.ModelName, req.ModelVersion, func(dctx context.Context, st *models.State) (inferCall, error) {
		inputs, requested, err := kserve.DecodeGRPCRequest(req, st.Limits, func(n int64) error { return admission.Reserve(dctx, n) })
		if err != nil {
			return inferCall{}, err
		}
		selected, err := kserve.SelectOutputs(outputNames(st), requested)
		if err != nil {
			return inferCall{}, err
		}
		return inferCall{inputs: inputs, outputs: selected, timeout: kserve.GRPCTimeout(req)}, nil
	})
	if err != nil {
		return nil, err
	}
	return kserve.EncodeGRPCResponse(res.model.Config.Name, req.Id, res.names, res.outputs, res.tensors), nil
}

// streamWindow bounds the requests of one stream in flight at once; past
// it the stream stops reading, and HTTP/2 flow control holds the client.
const streamWindow = 64

// ModelStreamInfer answers each request of the stream as soon as it is
// done, so responses may come out of order (clients match them by id). An
// error answers that request in error_message and the stream goes on, as
// Triton does. Once the server has drained, open streams end UNAVAILABLE.
func (g grpcService) ModelStreamInfer(stream pb.GRPCInferenceService_ModelStreamInferServer) error {
	s := g.s
	ctx := stream.Context()
	received := make(chan *pb.ModelInferRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case received <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	var sendMu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	window := make(chan struct{}, streamWindow)
	for {
		select {
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-s.streamsStop:
			return status.Error(codes.Unavailable, errDraining.msg)
		case req := <-received:
			window <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() {
					<-window
					wg.Done()
				}()
				out := &pb.ModelStreamInferResponse{}
				resp, err := s.rpc(ctx, "ModelStreamInfer", req, func(ctx context.Context, _ any) (any, error) {
					return s.inferGRPC(ctx, req)
				})
				if err != nil {
					out.ErrorMessage = status.Convert(err).Message()
					out.InferResponse = &pb.ModelInferResponse{ModelName: req.ModelName, ModelVersion: req.ModelVersion, Id: req.Id}
				} else {
					out.InferResponse = resp.(*pb.ModelInferResponse)
				}
				sendMu.Lock()
				defer sendMu.Unlock()
				stream.Send(out) // fails only when the stream is gone, which Recv reports
			}()
		}
	}
}

// grpcHealth is gRPC's standard health service, which Kubernetes' gRPC
// probes and load balancers call, as Triton serves it too: SERVING when the
// server is ready, NOT_SERVING while it loads or drains.
type grpcHealth struct {
	healthpb.UnimplementedHealthServer
	s *Server
}

func (h grpcHealth) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.Service != "" && req.Service != pb.GRPCInferenceService_ServiceDesc.ServiceName {
		return nil, status.Error(codes.NotFound, "unknown service "+strconv.Quote(req.Service))
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.s.serverReadyNow() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// stopGRPC ends open streams and stops the gRPC server once its calls
// finish, or at once when ctx ends.
func (s *Server) stopGRPC(ctx context.Context) {
	s.stopStreams.Do(func() { close(s.streamsStop) })
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}
