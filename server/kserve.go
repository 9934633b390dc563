package server

import (
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/server/kserve"
)

type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (s *Server) serverMetadata(ctx *fasthttp.RequestCtx, _ routeParams) {
	writeJSON(ctx, 200, map[string]any{
		"name":       "imgserve",
		"version":    s.opts.Version,
		"extensions": []string{"binary_tensor_data"},
	})
}

// model finds a model by name, answering 404 itself when there is none.
func (s *Server) model(ctx *fasthttp.RequestCtx, name string) (*models.Model, bool) {
	m, ok := s.opts.Registry.Get(name)
	if !ok {
		writeKServeError(ctx, newError(404, "not_found", "unknown model "+strconv.Quote(name)))
	}
	return m, ok
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
	m, ok := s.model(ctx, p.model)
	if !ok {
		return
	}
	st := m.State()
	if st.Status != models.StatusReady {
		writeKServeError(ctx, newError(503, "not_ready", "model "+p.model+" is "+string(st.Status)+": "+st.Reason))
		return
	}
	batched := st.Batching.MaxBatchSize > 1
	writeJSON(ctx, 200, map[string]any{
		"name":     m.Config.Name,
		"versions": []string{"1"},
		"platform": "onnxruntime_onnx",
		"inputs":   signature(st.Inputs, batched),
		"outputs":  signature(st.Outputs, batched),
	})
}

func (s *Server) modelReady(ctx *fasthttp.RequestCtx, p routeParams) {
	m, ok := s.model(ctx, p.model)
	if !ok {
		return
	}
	st := m.State()
	if st.Status != models.StatusReady || s.draining.Load() {
		writeKServeError(ctx, newError(503, "not_ready", "model "+p.model+" is not ready"))
		return
	}
	writeJSON(ctx, 200, map[string]any{"name": m.Config.Name, "ready": true})
}

func (s *Server) infer(ctx *fasthttp.RequestCtx, p routeParams) {
	m, ok := s.model(ctx, p.model)
	if !ok {
		s.opts.Metrics.rejected(p.model, "not_found")
		return
	}
	st := m.State()
	if st.Status != models.StatusReady {
		writeKServeError(ctx, newError(503, "not_ready", "model "+p.model+" is "+string(st.Status)+": "+st.Reason))
		return
	}
	body, err := requestBody(ctx, s.opts.MaxBodySize)
	if err != nil {
		s.opts.Metrics.rejected(p.model, reasonOf(err))
		writeKServeError(ctx, err)
		return
	}
	headerLen := -1
	if h := ctx.Request.Header.Peek("Inference-Header-Content-Length"); len(h) > 0 {
		headerLen, err = strconv.Atoi(string(h))
		if err != nil || headerLen < 0 {
			s.opts.Metrics.rejected(p.model, "bad_request")
			writeKServeError(ctx, kserve.BadInput("bad Inference-Header-Content-Length %q", h))
			return
		}
	}
	batched := st.Batching.MaxBatchSize > 1
	req, inputs, err := kserve.DecodeRequest(body, headerLen, st.Inputs, batched, st.Batching.MaxBatchSize)
	if err != nil {
		s.opts.Metrics.rejected(p.model, reasonOf(err))
		writeKServeError(ctx, err)
		return
	}
	var timeout time.Duration
	if us, ok := req.Parameters.Int("timeout"); ok { // Triton's per-request timeout, in µs
		timeout = time.Duration(us) * time.Microsecond
	}
	rctx, cancel := s.requestContext(timeout)
	defer cancel()
	outs, err := m.Infer(rctx, inputs)
	if err != nil {
		if isRejection(err) {
			s.opts.Metrics.rejected(p.model, reasonOf(err))
		}
		writeKServeError(ctx, err)
		return
	}
	names := make([]string, len(st.Outputs))
	for i, o := range st.Outputs {
		names[i] = o.Name
	}
	respBody, jsonLen, err := kserve.EncodeResponse(m.Config.Name, req, names, outs)
	if err != nil {
		writeKServeError(ctx, err)
		return
	}
	if jsonLen >= 0 {
		ctx.Response.Header.Set("Inference-Header-Content-Length", strconv.Itoa(jsonLen))
		ctx.SetContentType("application/octet-stream")
	} else {
		ctx.SetContentType("application/json")
	}
	ctx.SetStatusCode(200)
	writeBody(ctx, respBody)
}

// isRejection tells errors raised before a request entered the queue, which
// the scheduler's observer never sees.
func isRejection(err error) bool {
	code := classify(err).code
	return code == "queue_full" || code == "bad_request" || code == "draining" || code == "not_ready"
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
}

func (s *Server) listModels(ctx *fasthttp.RequestCtx, _ routeParams) {
	var list []modelInfo
	for _, m := range s.opts.Registry.Models() {
		st := m.State()
		info := modelInfo{Name: m.Config.Name, Task: m.Config.Task, File: m.Config.File, Status: st.Status, Reason: st.Reason}
		if st.Status == models.StatusReady {
			b := st.Batching
			batched := b.MaxBatchSize > 1
			info.Inputs, info.Outputs = signature(st.Inputs, batched), signature(st.Outputs, batched)
			info.BatchMode = st.BatchMode.String()
			info.Batching = &batchingInfo{
				MaxBatchSize:        b.MaxBatchSize,
				MaxQueueDelayMs:     float64(b.MaxQueueDelay.Microseconds()) / 1000,
				PreferredBatchSizes: append([]int{}, b.PreferredBatchSizes...),
				MaxQueueSize:        b.MaxQueueSize,
				Instances:           b.Instances,
				BatchBuckets:        b.BatchBuckets,
			}
		}
		list = append(list, info)
	}
	writeJSON(ctx, 200, map[string]any{"models": list})
}
