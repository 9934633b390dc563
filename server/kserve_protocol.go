package server

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/server/kserve"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
)

// The KServe v2 protocol, whatever the transport. HTTP (kserve.go) and gRPC
// (grpc.go) answer from these functions: the read-only endpoints build the
// gRPC protocol's messages, which HTTP renders as Triton's JSON, and every
// infer goes through inferKServe. So the two transports cannot disagree, and
// share one path to the scheduler, with the same lookup, readiness,
// deadlines, metrics and errors.

// servedExtensions are the KServe v2 and Triton extensions served in full.
// Of the repository extension only the index is served (models load at
// start from the configuration), so it is not listed.
var servedExtensions = []string{"binary_tensor_data", "model_configuration", "statistics"}

func (s *Server) serverMetadataProto() *pb.ServerMetadataResponse {
	return &pb.ServerMetadataResponse{Name: "imgserve", Version: s.opts.Version, Extensions: slices.Clone(servedExtensions)}
}

// serverReadyNow is readiness: every present model has loaded, and the
// server is not draining.
func (s *Server) serverReadyNow() bool {
	return !s.draining.Load() && s.opts.Registry.Loaded()
}

// lookupModel finds a configured model, loaded or not.
func (s *Server) lookupModel(name, version string) (*models.Model, error) {
	m, ok := s.opts.Registry.Get(name)
	if !ok {
		return nil, newError(http.StatusNotFound, "not_found", "unknown model "+strconv.Quote(name))
	}
	if err := kserve.CheckVersion(name, version); err != nil {
		return nil, err
	}
	return m, nil
}

// readyModel finds a model that has loaded.
func (s *Server) readyModel(name, version string) (*models.Model, *models.State, error) {
	m, err := s.lookupModel(name, version)
	if err != nil {
		return nil, nil, err
	}
	st := m.State()
	if st.Status != models.StatusReady {
		msg := "model " + name + " is " + string(st.Status)
		if st.Reason != "" {
			msg += ": " + st.Reason
		}
		return nil, nil, newError(http.StatusServiceUnavailable, "not_ready", msg)
	}
	return m, st, nil
}

func (s *Server) modelReadyNow(name, version string) (bool, error) {
	m, err := s.lookupModel(name, version)
	if err != nil {
		return false, err
	}
	return m.State().Status == models.StatusReady && !s.draining.Load(), nil
}

// batched says whether a model's leading dimension is a batch the
// scheduler fills, which is what Triton's max_batch_size > 0 means.
func batched(st *models.State) bool { return st.Batching.MaxBatchSize > 1 }

func outputNames(st *models.State) []string {
	names := make([]string, len(st.Outputs))
	for i, o := range st.Outputs {
		names[i] = o.Name
	}
	return names
}

func (s *Server) modelMetadataProto(name, version string) (*pb.ModelMetadataResponse, error) {
	m, st, err := s.readyModel(name, version)
	if err != nil {
		return nil, err
	}
	tensors := func(infos []inference.TensorInfo) []*pb.ModelMetadataResponse_TensorMetadata {
		out := make([]*pb.ModelMetadataResponse_TensorMetadata, len(infos))
		for i, t := range signature(infos, batched(st)) {
			out[i] = &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
		}
		return out
	}
	return &pb.ModelMetadataResponse{
		Name:     m.Config.Name,
		Versions: []string{"1"},
		Platform: "onnxruntime_onnx",
		Inputs:   tensors(st.Inputs),
		Outputs:  tensors(st.Outputs),
	}, nil
}

// configDataTypes are Triton's model-configuration names of the datatypes.
var configDataTypes = map[inference.DType]pb.DataType{
	inference.BOOL: pb.DataType_TYPE_BOOL, inference.UINT8: pb.DataType_TYPE_UINT8, inference.UINT16: pb.DataType_TYPE_UINT16,
	inference.UINT32: pb.DataType_TYPE_UINT32, inference.UINT64: pb.DataType_TYPE_UINT64, inference.INT8: pb.DataType_TYPE_INT8,
	inference.INT16: pb.DataType_TYPE_INT16, inference.INT32: pb.DataType_TYPE_INT32, inference.INT64: pb.DataType_TYPE_INT64,
	inference.FP16: pb.DataType_TYPE_FP16, inference.FP32: pb.DataType_TYPE_FP32, inference.FP64: pb.DataType_TYPE_FP64,
	inference.BF16: pb.DataType_TYPE_BF16,
}

// modelConfigProto describes a loaded model as Triton's model configuration
// does: with max_batch_size > 0, dims leave out the batch dimension.
func (s *Server) modelConfigProto(name, version string) (*pb.ModelConfig, error) {
	m, st, err := s.readyModel(name, version)
	if err != nil {
		return nil, err
	}
	b := st.Batching
	dims := func(shape []int64) []int64 {
		if batched(st) {
			return slices.Clone(shape[1:])
		}
		return slices.Clone(shape)
	}
	cfg := &pb.ModelConfig{
		Name:     m.Config.Name,
		Platform: "onnxruntime_onnx",
		Backend:  "onnxruntime",
		VersionPolicy: &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{
			Latest: &pb.ModelVersionPolicy_Latest{NumVersions: 1}}},
		DefaultModelFilename: filepath.Base(m.Config.File),
		Parameters: map[string]*pb.ModelParameter{
			// The name Triton's ONNX Runtime backend gives this setting.
			"intra_op_thread_count": {StringValue: strconv.Itoa(m.Config.IntraOpThreads)},
		},
	}
	for _, t := range st.Inputs {
		cfg.Input = append(cfg.Input, &pb.ModelInput{Name: t.Name, DataType: configDataTypes[t.DType], Dims: dims(t.Shape)})
	}
	for _, t := range st.Outputs {
		cfg.Output = append(cfg.Output, &pb.ModelOutput{Name: t.Name, DataType: configDataTypes[t.DType], Dims: dims(t.Shape)})
	}
	if batched(st) {
		cfg.MaxBatchSize = int32(b.MaxBatchSize)
		db := &pb.ModelDynamicBatching{
			MaxQueueDelayMicroseconds: uint64(b.MaxQueueDelay.Microseconds()),
			DefaultQueuePolicy:        &pb.ModelQueuePolicy{MaxQueueSize: uint32(b.MaxQueueSize)},
		}
		for _, p := range b.PreferredBatchSizes {
			db.PreferredBatchSize = append(db.PreferredBatchSize, int32(p))
		}
		cfg.SchedulingChoice = &pb.ModelConfig_DynamicBatching{DynamicBatching: db}
	}
	group := &pb.ModelInstanceGroup{Name: m.Config.Name, Kind: pb.ModelInstanceGroup_KIND_CPU, Count: int32(b.Instances)}
	if dev := s.opts.Registry.Device(); dev.CUDA {
		group.Kind, group.Gpus = pb.ModelInstanceGroup_KIND_GPU, []int32{int32(dev.ID)}
	}
	cfg.InstanceGroup = []*pb.ModelInstanceGroup{group}
	return cfg, nil
}

// modelStatsProto reports what each model's scheduler measured: one named
// model, or with name "" every loaded model.
func (s *Server) modelStatsProto(name, version string) (*pb.ModelStatisticsResponse, error) {
	var ms []*models.Model
	if name == "" {
		for _, m := range s.opts.Registry.Models() {
			if m.State().Status == models.StatusReady {
				ms = append(ms, m)
			}
		}
	} else {
		m, _, err := s.readyModel(name, version)
		if err != nil {
			return nil, err
		}
		ms = []*models.Model{m}
	}
	resp := &pb.ModelStatisticsResponse{ModelStats: []*pb.ModelStatistics{}}
	for _, m := range ms {
		st := m.State()
		if st.Scheduler == nil { // stopped since it was listed
			continue
		}
		resp.ModelStats = append(resp.ModelStats, statisticsProto(m.Config.Name, st.Scheduler.Stats()))
	}
	return resp, nil
}

func statisticsProto(name string, st inference.Stats) *pb.ModelStatistics {
	d := func(x inference.Duration) *pb.StatisticDuration {
		return &pb.StatisticDuration{Count: x.Count, Ns: uint64(x.Total.Nanoseconds())}
	}
	ms := &pb.ModelStatistics{
		Name:           name,
		Version:        "1",
		InferenceCount: st.InferenceCount,
		ExecutionCount: st.ExecutionCount,
		InferenceStats: &pb.InferStatistics{
			Success:       d(st.Success),
			Fail:          d(st.Fail),
			Queue:         d(st.Queue),
			ComputeInput:  d(st.ComputeInput),
			ComputeInfer:  d(st.ComputeInfer),
			ComputeOutput: d(st.ComputeOutput),
			// There is no response cache.
			CacheHit:  &pb.StatisticDuration{},
			CacheMiss: &pb.StatisticDuration{},
		},
		BatchStats: []*pb.InferBatchStatistics{},
	}
	if !st.LastInference.IsZero() {
		ms.LastInference = uint64(st.LastInference.UnixMilli())
	}
	for _, b := range st.Batches {
		ms.BatchStats = append(ms.BatchStats, &pb.InferBatchStatistics{
			BatchSize:     uint64(b.Size),
			ComputeInput:  d(b.ComputeInput),
			ComputeInfer:  d(b.ComputeInfer),
			ComputeOutput: d(b.ComputeOutput),
		})
	}
	return ms
}

// repositoryIndexProto lists every configured model with its state, or
// only the ready ones.
func (s *Server) repositoryIndexProto(readyOnly bool) *pb.RepositoryIndexResponse {
	resp := &pb.RepositoryIndexResponse{Models: []*pb.RepositoryIndexResponse_ModelIndex{}}
	for _, m := range s.opts.Registry.Models() {
		st := m.State()
		state := "UNAVAILABLE"
		switch st.Status {
		case models.StatusReady:
			state = "READY"
		case models.StatusLoading:
			state = "LOADING"
		}
		if readyOnly && state != "READY" {
			continue
		}
		resp.Models = append(resp.Models, &pb.RepositoryIndexResponse_ModelIndex{
			Name: m.Config.Name, Version: "1", State: state, Reason: st.Reason})
	}
	return resp
}

// inferCall is one infer request as its transport decoded it.
type inferCall struct {
	inputs []inference.Tensor
	// outputs are the positions of the outputs to answer with, from
	// kserve.SelectOutputs.
	outputs []int
	// timeout is the client's own bound (Triton's timeout parameter), 0
	// for none; the server's --request-timeout still applies.
	timeout time.Duration
}

type inferResult struct {
	model   *models.Model
	names   []string // the model's output names
	outputs []int
	tensors []inference.Tensor
}

// inferKServe runs one KServe v2 infer request from either transport. The
// transport's decode turns its request into tensors once the model is
// known, under the request's context (its deadline, and whatever admission
// rides on it). parent carries the client's cancellation and deadline
// where the transport has them (gRPC).
func (s *Server) inferKServe(parent context.Context, model, version string, decode func(ctx context.Context, st *models.State) (inferCall, error)) (inferResult, error) {
	m, st, err := s.readyModel(model, version)
	if err == nil && models.TaskInternal(m.Config.Task) {
		// A diffusion VAE decoder's raw output is an image that has not
		// passed the NSFW guard: pipeline models are not served as tensors.
		err = newError(http.StatusForbidden, "forbidden",
			"model "+model+" is part of a "+m.Config.Task+" pipeline and is served only through its task API")
	}
	if err != nil {
		s.opts.Metrics.rejected(model, reasonOf(err))
		return inferResult{}, err
	}
	ctx, cancel := s.requestContextFrom(parent, 0)
	defer cancel()
	// A model that cannot take the request in time says so before its
	// tensors are decoded.
	if err := st.Scheduler.CheckLoad(ctx); err != nil {
		s.opts.Metrics.rejected(model, reasonOf(err))
		return inferResult{}, err
	}
	call, err := decode(ctx, st)
	if err != nil {
		s.opts.Metrics.rejected(model, reasonOf(err))
		return inferResult{}, err
	}
	if call.timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, call.timeout)
		defer cancelTimeout()
	}
	outs, err := m.Infer(ctx, call.inputs)
	if err != nil {
		if isRejection(err) {
			s.opts.Metrics.rejected(model, reasonOf(err))
		}
		return inferResult{}, err
	}
	return inferResult{model: m, names: outputNames(st), outputs: call.outputs, tensors: outs}, nil
}

// isRejection tells errors raised before a request entered the queue, which
// the scheduler's observer never sees.
func isRejection(err error) bool {
	switch classify(err).code {
	case "queue_full", "overloaded", "busy", "too_costly", "bad_request", "draining", "not_ready":
		return true
	}
	return false
}
