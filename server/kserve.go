package server

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/server/admission"
	"github.com/imgserve/imgserve/server/kserve"
)

func init() {
	kserve := func(method, pattern string, h func(*Server, *fasthttp.RequestCtx, routeParams)) Feature {
		return Feature{Method: method, Pattern: pattern, KServe: true, Handle: h}
	}
	addFeature(
		kserve("GET", "/v2", (*Server).serverMetadata),
		kserve("GET", "/v2/models/{m}", (*Server).modelMetadata),
		kserve("GET", "/v2/models/{m}/versions/{v}", (*Server).modelMetadata),
		kserve("GET", "/v2/models/{m}/ready", (*Server).modelReady),
		kserve("GET", "/v2/models/{m}/versions/{v}/ready", (*Server).modelReady),
		kserve("POST", "/v2/models/{m}/infer", (*Server).infer),
		kserve("POST", "/v2/models/{m}/versions/{v}/infer", (*Server).infer),
		kserve("GET", "/v2/models/{m}/config", (*Server).modelConfig),
		kserve("GET", "/v2/models/{m}/versions/{v}/config", (*Server).modelConfig),
		kserve("GET", "/v2/models/{m}/stats", (*Server).modelStats),
		kserve("GET", "/v2/models/{m}/versions/{v}/stats", (*Server).modelStats),
		kserve("GET", "/v2/models/stats", (*Server).modelStats), // every model's
		kserve("POST", "/v2/repository/index", (*Server).repositoryIndex),
		Feature{Method: "GET", Pattern: "/v1/models", Handle: (*Server).listModels},
	)
}

type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// writeProto answers with a protocol message as Triton's JSON.
func writeProto(ctx *fasthttp.RequestCtx, m proto.Message) {
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	writeBody(ctx, kserve.AppendTritonJSON(nil, m.ProtoReflect()))
}

func (s *Server) serverMetadata(ctx *fasthttp.RequestCtx, _ routeParams) {
	writeProto(ctx, s.serverMetadataProto())
}

// signature reports a model's tensors; a batched model's leading dimension
// is -1, as Triton reports it.
func signature(infos []inference.TensorInfo, batched bool) []tensorMetadata {
	out := make([]tensorMetadata, len(infos))
	for i, t := range infos {
		shape := slices.Clone(t.Shape)
		if batched && len(shape) > 0 {
			shape[0] = -1
		}
		out[i] = tensorMetadata{Name: t.Name, Datatype: t.DType.String(), Shape: shape}
	}
	return out
}

func (s *Server) modelMetadata(ctx *fasthttp.RequestCtx, p routeParams) {
	md, err := s.modelMetadataProto(p.model, "")
	if err != nil {
		writeKServeError(ctx, err)
		return
	}
	writeProto(ctx, md)
}

func (s *Server) modelConfig(ctx *fasthttp.RequestCtx, p routeParams) {
	cfg, err := s.modelConfigProto(p.model, "")
	if err != nil {
		writeKServeError(ctx, err)
		return
	}
	writeProto(ctx, cfg)
}

// modelStats answers one model's statistics, or every model's on
// /v2/models/stats.
func (s *Server) modelStats(ctx *fasthttp.RequestCtx, p routeParams) {
	stats, err := s.modelStatsProto(p.model, "")
	if err != nil {
		writeKServeError(ctx, err)
		return
	}
	writeProto(ctx, stats)
}

// repositoryIndex answers Triton's JSON: an array of the models, not an
// object. The optional body {"ready": true} keeps only the ready ones.
func (s *Server) repositoryIndex(ctx *fasthttp.RequestCtx, _ routeParams) {
	var req struct {
		Ready bool `json:"ready"`
	}
	if body := bytes.TrimSpace(ctx.Request.Body()); len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeKServeError(ctx, kserve.BadInput("malformed JSON: %v", err))
			return
		}
	}
	out := []byte{'['}
	for i, m := range s.repositoryIndexProto(req.Ready).Models {
		if i > 0 {
			out = append(out, ',')
		}
		out = kserve.AppendTritonJSON(out, m.ProtoReflect())
	}
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	writeBody(ctx, append(out, ']'))
}

func (s *Server) modelReady(ctx *fasthttp.RequestCtx, p routeParams) {
	ready, err := s.modelReadyNow(p.model, "")
	if err == nil && !ready {
		err = newError(503, "not_ready", "model "+p.model+" is not ready")
	}
	if err != nil {
		writeKServeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, map[string]any{"name": p.model, "ready": true})
}

func (s *Server) infer(ctx *fasthttp.RequestCtx, p routeParams) {
	var req *kserve.Request
	rctx := requestContext(ctx)
	res, err := s.inferKServe(rctx, p.model, "", func(dctx context.Context, st *models.State) (inferCall, error) {
		body, err := requestBody(ctx, s.opts.MaxBodySize)
		if err != nil {
			return inferCall{}, err
		}
		headerLen := -1
		if h := ctx.Request.Header.Peek("Inference-Header-Content-Length"); len(h) > 0 {
			headerLen, err = strconv.Atoi(string(h))
			if err != nil || headerLen < 0 {
				return inferCall{}, kserve.BadInput("bad Inference-Header-Content-Length %q", h)
			}
		}
		var call inferCall
		req, call.inputs, err = kserve.DecodeRequest(body, headerLen, st.Limits, func(n int64) error { return admission.Reserve(dctx, n) })
		if err != nil {
			return inferCall{}, err
		}
		if call.outputs, err = kserve.SelectOutputs(outputNames(st), req.RequestedOutputs()); err != nil {
			return inferCall{}, err
		}
		if us, ok := req.Parameters.Int("timeout"); ok {
			call.timeout = kserve.Timeout(us)
		}
		return call, nil
	})
	if err != nil {
		writeKServeError(ctx, err)
		return
	}
	respBody, jsonLen, err := kserve.EncodeResponse(res.model.Config.Name, req, res.names, res.outputs, res.tensors)
	if err != nil {
		writeKServeError(ctx, err)
		return
	}
	admission.Charge(rctx, int64(len(respBody)))
	if jsonLen >= 0 {
		ctx.Response.Header.Set("Inference-Header-Content-Length", strconv.Itoa(jsonLen))
		ctx.SetContentType("application/octet-stream")
	} else {
		ctx.SetContentType("application/json")
	}
	ctx.SetStatusCode(200)
	writeBody(ctx, respBody)
}

type modelInfo struct {
	Name      string           `json:"name"`
	Task      string           `json:"task"`
	File      string           `json:"file"`
	Status    models.Status    `json:"status"`
	Reason    string           `json:"reason,omitempty"`
	Inputs    []tensorMetadata `json:"inputs,omitempty"`
	Outputs   []tensorMetadata `json:"outputs,omitempty"`
	Batching  *batchingInfo    `json:"batching,omitempty"`
	BatchMode string           `json:"batch_mode,omitempty"`
}

type batchingInfo struct {
	MaxBatchSize        int     `json:"max_batch_size"`
	MaxQueueDelayMs     float64 `json:"max_queue_delay_ms"`
	PreferredBatchSizes []int   `json:"preferred_batch_sizes"`
	MaxQueueSize        int     `json:"max_queue_size"`
	Instances           int     `json:"instances"`
	BatchBuckets        []int   `json:"batch_buckets,omitempty"`
	// MaxQueueWaitMs is the load-shedding budget (0: off).
	MaxQueueWaitMs float64 `json:"max_queue_wait_ms"`
	// MaxInputBytes bounds one KServe request's inputs.
	MaxInputBytes int64 `json:"max_input_bytes"`
}

func (s *Server) listModels(ctx *fasthttp.RequestCtx, _ routeParams) {
	var list []modelInfo
	for _, m := range s.opts.Registry.Models() {
		st := m.State()
		info := modelInfo{Name: m.Config.Name, Task: m.Config.Task, File: m.Config.File, Status: st.Status, Reason: st.Reason}
		if st.Status == models.StatusReady {
			b := st.Batching
			info.Inputs, info.Outputs = signature(st.Inputs, batched(st)), signature(st.Outputs, batched(st))
			info.BatchMode = st.BatchMode.String()
			info.Batching = &batchingInfo{
				MaxBatchSize:        b.MaxBatchSize,
				MaxQueueDelayMs:     float64(b.MaxQueueDelay.Microseconds()) / 1000,
				PreferredBatchSizes: append([]int{}, b.PreferredBatchSizes...),
				MaxQueueSize:        b.MaxQueueSize,
				Instances:           b.Instances,
				BatchBuckets:        b.BatchBuckets,
				MaxQueueWaitMs:      float64(b.MaxQueueWait.Microseconds()) / 1000,
				MaxInputBytes:       st.Limits.MaxBytes,
			}
		}
		list = append(list, info)
	}
	writeJSON(ctx, 200, map[string]any{"models": list})
}
