// Package server is imgserve's HTTP front: fasthttp routes, request parsing,
// limits, error mapping and metrics. It never touches disk and never calls
// ONNX Runtime directly; models do the work.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/matting"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server/kserve"
)

// Options configure a Server.
type Options struct {
	Registry *models.Registry
	Metrics  *Metrics
	Logger   *slog.Logger
	// MaxBodySize bounds request bodies, after decompression too (413), and
	// gRPC messages (RESOURCE_EXHAUSTED).
	MaxBodySize int
	// RequestTimeout is each request's deadline (504 when it passes).
	RequestTimeout time.Duration
	// Version is reported by GET /v2.
	Version string
	// ImageLimits bound uploaded images, checked from the header before any
	// pixel is decoded (zero fields take preprocess's defaults: 40 MP).
	ImageLimits preprocess.Limits
	// AlphaMatting bounds rembg's alpha matting (zero fields take
	// matting.DefaultAlphaLimits).
	AlphaMatting matting.AlphaLimits
	// Index holds the collections of /v1/collections: an index.Store (in
	// memory, or durable with index.OpenStore) or PostgreSQL (pgstore).
	// nil starts an empty in-memory store. The caller closes it.
	Index index.Backend
}

// DefaultMaxBodySize is 64 MiB.
const DefaultMaxBodySize = 64 << 20

// Server serves the task API, KServe v2 over HTTP and gRPC, /v1/models and
// /metrics.
type Server struct {
	opts     Options
	matting  *matting.Registry
	alpha    *matting.AlphaMatter
	http     *fasthttp.Server
	grpc     *grpc.Server
	draining atomic.Bool
	inflight atomic.Int64
	nextID   atomic.Uint64
	// streamsStop closes when a drain has finished the requests in flight,
	// ending open gRPC streams.
	streamsStop chan struct{}
	stopStreams sync.Once
}

// New builds a server; Serve starts it.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = DefaultMaxBodySize
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = time.Minute
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(opts.Registry)
	}
	if opts.Index == nil {
		opts.Index = index.NewStore()
	}
	s := &Server{opts: opts, matting: matting.NewRegistry(opts.Registry), alpha: matting.NewAlphaMatter(opts.AlphaMatting),
		streamsStop: make(chan struct{})}
	s.grpc = s.newGRPCServer()
	s.http = &fasthttp.Server{
		Handler:                      s.handle,
		Name:                         "imgserve",
		MaxRequestBodySize:           opts.MaxBodySize,
		ReadTimeout:                  2 * time.Minute,
		WriteTimeout:                 2 * time.Minute,
		IdleTimeout:                  time.Minute,
		DisablePreParseMultipartForm: true, // fasthttp would spill large files to disk
		NoDefaultContentType:         true,
		Logger:                       connLogger{opts.Logger},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				writeError(ctx, errBodyTooLarge)
				return
			}
			writeError(ctx, newError(400, "bad_request", "malformed HTTP request"))
		},
	}
	return s
}

// connLogger routes fasthttp's connection-level messages (a client that sent
// too much, a broken connection) into the server's log at debug level.
type connLogger struct{ log *slog.Logger }

func (l connLogger) Printf(format string, args ...any) {
	l.log.Debug("connection", "msg", fmt.Sprintf(format, args...))
}

// Serve accepts HTTP connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(ln)
}

// Shutdown drains the server, HTTP and gRPC: new requests get 503
// (UNAVAILABLE) at once, requests in flight finish, then open gRPC streams
// end, and the listeners and idle connections close. It returns ctx's error
// if in-flight requests outlast it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			s.stopGRPC(ctx)
			s.http.ShutdownWithContext(ctx)
			return fmt.Errorf("%d requests still in flight: %w", s.inflight.Load(), ctx.Err())
		case <-tick.C:
		}
	}
	s.stopGRPC(ctx)
	return s.http.ShutdownWithContext(ctx)
}

// enter admits one request, HTTP or gRPC: it is counted in flight, so that
// Shutdown waits for it, and refused while the server drains unless it
// answers always (health probes, /metrics). leave must be called once the
// request is answered, whatever enter returned.
func (s *Server) enter(alwaysOn bool) (leave func(), err error) {
	s.inflight.Add(1)
	leave = func() { s.inflight.Add(-1) }
	if s.draining.Load() && !alwaysOn {
		return leave, errDraining
	}
	return leave, nil
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

type handler func(ctx *fasthttp.RequestCtx, p routeParams)

type routeParams struct {
	model string
	// vars holds a feature route's {name} segments.
	vars map[string]string
}

// Var is a {name} segment of the matched route.
func (p routeParams) Var(name string) string { return p.vars[name] }

// A Feature is a task-API route contributed by one feature file (matting,
// inpainting, ...), registered from that file's init with addFeature, so
// features never edit this file or each other's.
type Feature struct {
	Method string
	// Pattern is a path whose {name} segments bind variables, as in
	// "/v1/collections/{c}/items/{id}".
	Pattern string
	Handle  func(s *Server, ctx *fasthttp.RequestCtx, p routeParams)
}

var features []Feature

func addFeature(f ...Feature) { features = append(features, f...) }

// matchPattern binds a feature pattern against a path.
func matchPattern(pattern, path string) (map[string]string, bool) {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return nil, false
	}
	var vars map[string]string
	for i, seg := range ps {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			if xs[i] == "" {
				return nil, false
			}
			if vars == nil {
				vars = map[string]string{}
			}
			vars[strings.TrimSuffix(name, "}")] = xs[i]
			continue
		}
		if seg != xs[i] {
			return nil, false
		}
	}
	return vars, true
}

type route struct {
	name   string // a pattern, for logs and metrics: never user data
	method string
	kserve bool // answers errors in KServe's format
	h      handler
	// alwaysOn routes keep answering while the server drains.
	alwaysOn bool
}

// match finds the route for a request. The table is small and fixed, so a
// switch reads better than a router library.
func (s *Server) match(method, path string) (route, routeParams, error) {
	var p routeParams
	get := func(name string, h handler) (route, routeParams, error) {
		return route{name: name, method: "GET", h: h}, p, nil
	}
	switch path {
	case "/v2":
		r, p, err := get("/v2", s.serverMetadata)
		r.kserve = true
		return r, p, err
	case "/v2/health/live":
		return route{name: path, method: "GET", kserve: true, h: s.live, alwaysOn: true}, p, nil
	case "/v2/health/ready":
		return route{name: path, method: "GET", kserve: true, h: s.ready, alwaysOn: true}, p, nil
	case "/v2/repository/index":
		return route{name: path, method: "POST", kserve: true, h: s.repositoryIndex}, p, nil
	case "/v1/models":
		return get(path, s.listModels)
	case "/metrics":
		return route{name: path, method: "GET", h: s.metrics, alwaysOn: true}, p, nil
	}
	if rest, ok := strings.CutPrefix(path, "/v2/models/"); ok {
		if rest == "stats" { // every model's statistics
			return route{name: path, method: "GET", kserve: true, h: s.modelStats}, p, nil
		}
		parts := strings.Split(rest, "/")
		p.model = parts[0]
		parts = parts[1:]
		// Triton clients may name a version; we serve one version, "1".
		if len(parts) >= 2 && parts[0] == "versions" {
			if err := kserve.CheckVersion(p.model, parts[1]); err != nil {
				return route{kserve: true}, p, err
			}
			parts = parts[2:]
		}
		kroute := func(name, method string, h handler) (route, routeParams, error) {
			return route{name: "/v2/models/{m}" + name, method: method, kserve: true, h: h}, p, nil
		}
		switch {
		case len(parts) == 0:
			return kroute("", "GET", s.modelMetadata)
		case len(parts) > 1:
		case parts[0] == "ready":
			return kroute("/ready", "GET", s.modelReady)
		case parts[0] == "infer":
			return kroute("/infer", "POST", s.infer)
		case parts[0] == "config":
			return kroute("/config", "GET", s.modelConfig)
		case parts[0] == "stats":
			return kroute("/stats", "GET", s.modelStats)
		}
		return route{kserve: true}, p, errNotFound
	}
	var methodMismatch *route
	for _, f := range features {
		vars, ok := matchPattern(f.Pattern, path)
		if !ok {
			continue
		}
		r := route{name: f.Pattern, method: f.Method, h: func(ctx *fasthttp.RequestCtx, p routeParams) { f.Handle(s, ctx, p) }}
		if f.Method == method {
			return r, routeParams{vars: vars}, nil
		}
		methodMismatch = &r
	}
	if methodMismatch != nil {
		return *methodMismatch, p, nil // handle answers 405 with Allow
	}
	return route{kserve: strings.HasPrefix(path, "/v2/")}, p, errNotFound
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	id := string(ctx.Request.Header.Peek("X-Request-Id"))
	if id == "" || len(id) > 128 {
		id = strconv.FormatUint(s.nextID.Add(1), 10)
	}
	ctx.Response.Header.Set("X-Request-Id", id)

	r, params, err := s.match(string(ctx.Method()), string(ctx.Path()))
	fail := writeError
	if r.kserve {
		fail = writeKServeError
	}
	leave, admitErr := s.enter(r.alwaysOn)
	switch {
	case err != nil:
	case admitErr != nil:
		err = admitErr
	case string(ctx.Method()) != r.method && !(r.method == "GET" && ctx.IsHead()):
		ctx.Response.Header.Set("Allow", r.method)
		err = errMethodAllowed
	}
	if err != nil {
		fail(ctx, err)
	} else {
		s.serve(ctx, r, params, fail)
	}
	leave()

	name := r.name
	if name == "" {
		name = "unmatched"
	}
	code := ctx.Response.StatusCode()
	s.opts.Metrics.http.WithLabelValues(name, strconv.Itoa(code)).Inc()
	// Privacy: sizes, timings and ids only; never bodies, images or queries.
	s.opts.Logger.Info("request", "id", id, "method", string(ctx.Method()), "route", name,
		"model", params.model, "status", code, "in_bytes", len(ctx.Request.Body()),
		"out_bytes", len(ctx.Response.Body()), "ms", float64(time.Since(start).Microseconds())/1000)
}

// serve runs a handler and turns a panic into a 500, so one bad request
// cannot take the server down.
func (s *Server) serve(ctx *fasthttp.RequestCtx, r route, p routeParams, fail func(*fasthttp.RequestCtx, error)) {
	defer func() {
		if v := recover(); v != nil {
			s.opts.Logger.Error("handler panic", "route", r.name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			fail(ctx, newError(500, "internal", "internal error"))
		}
	}()
	r.h(ctx, p)
}

// requestContext is the deadline for one request's work.
func (s *Server) requestContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	return s.requestContextFrom(context.Background(), timeout)
}

// requestContextFrom bounds a request that already has a context (a gRPC
// call's, which ends with the client's deadline or cancellation) by the
// server's deadline and the client's own timeout.
func (s *Server) requestContextFrom(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 || timeout > s.opts.RequestTimeout {
		timeout = s.opts.RequestTimeout
	}
	return context.WithTimeout(parent, timeout)
}

func (s *Server) live(ctx *fasthttp.RequestCtx, _ routeParams) {
	writeJSON(ctx, 200, map[string]bool{"live": true})
}

func (s *Server) ready(ctx *fasthttp.RequestCtx, _ routeParams) {
	switch {
	case s.draining.Load():
		writeKServeError(ctx, errDraining)
	case !s.opts.Registry.Loaded():
		writeKServeError(ctx, errNotLoaded)
	default:
		writeJSON(ctx, 200, map[string]bool{"ready": true})
	}
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx, _ routeParams) {
	body, err := s.opts.Metrics.write()
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	writeBody(ctx, body)
}
