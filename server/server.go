// Package server is imgserve's HTTP front: fasthttp routes, request parsing,
// admission and limits, API keys, error mapping and metrics. It never
// touches disk and never calls ONNX Runtime directly; models do the work.
package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/jobs"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/matting"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server/access"
	"github.com/imgserve/imgserve/server/admission"
)

// Options configure a Server.
type Options struct {
	Registry *models.Registry
	Metrics  *Metrics
	Logger   *slog.Logger
	// MaxBodySize bounds request bodies, after decompression too (413), and
	// gRPC messages (RESOURCE_EXHAUSTED).
	MaxBodySize int
	// RequestTimeout is each request's deadline (504 when it passes),
	// counted from when its body has arrived.
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

	// Admission bounds the requests in flight and the memory they reserve;
	// nil makes one with the defaults. Share it with the gRPC service so
	// that both transports draw on the same budget.
	Admission *admission.Controller
	// Keys, when non-nil, are required on every route but health probes
	// (and /metrics unless MetricsOpen).
	Keys *access.Keys
	// MetricsOpen serves /metrics without a key even when keys are on.
	MetricsOpen bool
	// CORSOrigins are the origins browsers may call from ("*" for any);
	// none allows no cross-origin call.
	CORSOrigins []string
	// TLS, when set, serves HTTPS only, and gRPC over TLS.
	TLS *tls.Config
	// HeaderTimeout closes a connection whose request line and headers take
	// longer (slow-header clients); BodyTimeout bounds reading the body,
	// WriteTimeout writing the response, IdleTimeout a keep-alive
	// connection's wait for its next request.
	HeaderTimeout, BodyTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxConnections bounds open connections; past it new ones get 503.
	MaxConnections int
	// Jobs configure batch jobs (/v1/jobs).
	Jobs JobOptions
	// Playground serves the web page at / that tries each capability
	// through the API; off, / answers 404.
	Playground bool
}

// Defaults of Options' limits.
const (
	DefaultMaxBodySize    = 64 << 20
	DefaultHeaderTimeout  = 10 * time.Second
	DefaultBodyTimeout    = 2 * time.Minute
	DefaultWriteTimeout   = 2 * time.Minute
	DefaultIdleTimeout    = time.Minute
	DefaultMaxConnections = 4096
)

// Server serves the task API, KServe v2 over HTTP and gRPC, /v1/models and
// /metrics.
type Server struct {
	opts     Options
	matting  *matting.Registry
	alpha    *matting.AlphaMatter
	http     *fasthttp.Server
	grpc     *grpc.Server
	cors     cors
	draining atomic.Bool
	inflight atomic.Int64
	nextID   atomic.Uint64
	// streamsStop closes when a drain has finished the requests in flight,
	// ending open gRPC streams.
	streamsStop chan struct{}
	stopStreams sync.Once
	// jobs runs batch jobs from Serve to Shutdown; ownBackend is the
	// in-process store when the options give none.
	jobs       *jobs.Manager
	ownBackend *jobs.Memory
	jobsOnce   sync.Once
	// interactive counts the requests in flight that job items make way
	// for: every admitted request but probes and the jobs API's own;
	// interactiveEnded is when the last one ended (Unix nanoseconds).
	interactive      atomic.Int64
	interactiveEnded atomic.Int64
}

// interactiveGrace is how long after an interactive request ends job
// items still make way: a client sending requests one after another
// leaves a round trip between them, and items that start in that gap
// take the cores its next request needs.
const interactiveGrace = 100 * time.Millisecond

func (s *Server) beginInteractive() { s.interactive.Add(1) }

func (s *Server) endInteractive() {
	s.interactiveEnded.Store(time.Now().UnixNano())
	s.interactive.Add(-1)
}

// interactiveBusy reports whether interactive requests are in flight or
// one ended within interactiveGrace: job items wait while it holds.
func (s *Server) interactiveBusy() bool {
	return s.interactive.Load() > 0 || time.Now().UnixNano()-s.interactiveEnded.Load() < int64(interactiveGrace)
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
	if opts.Admission == nil {
		opts.Admission = admission.New(admission.Limits{})
	}
	opts.HeaderTimeout = orDefault(opts.HeaderTimeout, DefaultHeaderTimeout)
	opts.BodyTimeout = orDefault(opts.BodyTimeout, DefaultBodyTimeout)
	opts.WriteTimeout = orDefault(opts.WriteTimeout, DefaultWriteTimeout)
	opts.IdleTimeout = orDefault(opts.IdleTimeout, DefaultIdleTimeout)
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	opts.Jobs.TTL = min(orDefault(opts.Jobs.TTL, DefaultJobTTL), jobs.MaxTTL)
	opts.Jobs.Memory = orDefault(opts.Jobs.Memory, DefaultJobMemory)
	lim := &opts.Jobs.Limits
	lim.MaxItems = orDefault(lim.MaxItems, jobs.DefaultLimits.MaxItems)
	lim.MaxBytes = orDefault(lim.MaxBytes, jobs.DefaultLimits.MaxBytes)
	lim.MaxRatio = orDefault(lim.MaxRatio, jobs.DefaultLimits.MaxRatio)
	opts.Metrics.watch(opts.Admission)
	s := &Server{opts: opts, matting: matting.NewRegistry(opts.Registry), alpha: matting.NewAlphaMatter(opts.AlphaMatting),
		cors: newCORS(opts.CORSOrigins), streamsStop: make(chan struct{})}
	s.grpc = s.newGRPCServer()
	s.http = &fasthttp.Server{
		Handler: s.handle,
		Name:    "imgserve",
		// The body is read by handle, after admission, so that a refused
		// request costs neither the memory nor the time of its upload.
		StreamRequestBody: true,
		// ReadTimeout covers the request line and headers; once they are
		// in, the body gets BodyTimeout of its own. A body limit of one
		// byte here makes fasthttp hand the request over after the first
		// byte of its body instead of the first 8 KiB; it streams the rest.
		ReadTimeout: opts.HeaderTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: opts.BodyTimeout, MaxRequestBodySize: 1}
		},
		WriteTimeout:                 opts.WriteTimeout,
		IdleTimeout:                  opts.IdleTimeout,
		Concurrency:                  opts.MaxConnections,
		DisablePreParseMultipartForm: true, // fasthttp would spill large files to disk
		NoDefaultContentType:         true,
		Logger:                       connLogger{opts.Logger},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			writeError(ctx, newError(400, "bad_request", "malformed HTTP request"))
		},
	}
	return s
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// connLogger routes fasthttp's connection-level messages (a client that sent
// too much, a broken connection) into the server's log at debug level.
type connLogger struct{ log *slog.Logger }

func (l connLogger) Printf(format string, args ...any) {
	l.log.Debug("connection", "msg", fmt.Sprintf(format, args...))
}

// Serve accepts HTTP connections on ln until Shutdown, over TLS when the
// options give a certificate.
func (s *Server) Serve(ln net.Listener) error {
	if s.opts.TLS != nil {
		cfg := s.opts.TLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, cfg)
	}
	s.startJobs()
	return s.http.Serve(ln)
}

// Admission is the server's admission controller, to share with the gRPC
// service.
func (s *Server) Admission() *admission.Controller { return s.opts.Admission }

// Shutdown drains the server, HTTP and gRPC: new requests get 503
// (UNAVAILABLE) at once, requests in flight finish, then open gRPC streams
// end, and the listeners and idle connections close. When ctx ends first
// it returns at once with an error naming the requests cut off (InFlight
// lists them); the caller decides whether to exit.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			// Close the listeners and idle connections without waiting for
			// the busy ones.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			s.stopGRPC(done)
			s.http.ShutdownWithContext(done)
			go s.stopJobs() // the process exits: unfinished items stay for other replicas
			return fmt.Errorf("%d requests still in flight: %w", s.inflight.Load(), ctx.Err())
		case <-tick.C:
		}
	}
	s.stopGRPC(ctx)
	s.stopJobs()
	return s.http.ShutdownWithContext(ctx)
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// InFlight lists the admitted requests that have not ended, oldest first.
func (s *Server) InFlight() []admission.InFlightRequest { return s.opts.Admission.InFlight() }

func init() {
	addFeature(
		Feature{Method: "GET", Pattern: "/v2/health/live", KServe: true, Access: AccessOpen, Probe: true, Handle: (*Server).live},
		Feature{Method: "GET", Pattern: "/v2/health/ready", KServe: true, Access: AccessOpen, Probe: true, Handle: (*Server).ready},
		Feature{Method: "GET", Pattern: "/metrics", Access: AccessMetrics, Probe: true, Handle: (*Server).metrics},
	)
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	id := requestID(ctx.Request.Header.Peek("X-Request-Id"))
	if id == "" {
		id = strconv.FormatUint(s.nextID.Add(1), 10)
	}
	ctx.Response.Header.Set("X-Request-Id", id)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)

	method := string(ctx.Method())
	r, params, err := s.match(method, string(ctx.Path()))
	fail := writeError
	if r.KServe {
		fail = writeKServeError
	}
	var (
		ticket  *admission.Ticket
		inBytes int
		read    bool // the body has been read, or read as far as it could be
	)
	switch allowed := s.cors.apply(ctx); {
	case method == "OPTIONS":
		s.options(ctx, r, allowed)
	case err != nil:
		if err == errMethodAllowed {
			ctx.Response.Header.Set("Allow", allowHeader(r.methods))
		}
		fail(ctx, err)
	case s.draining.Load() && !r.Probe:
		fail(ctx, errDraining)
	default:
		if err = s.authorize(ctx, r); err == nil && !r.Probe {
			if ticket, err = s.opts.Admission.Enter(id, r.name()); err == nil {
				read = true
				inBytes, err = s.readBody(ctx, ticket)
			}
		}
		if err != nil {
			fail(ctx, err)
			break
		}
		if s.serve(ctx, r, params, ticket, fail) {
			ticket = nil // the response's stream writer ends it
		}
	}
	ticket.Done()
	if !read || ctx.Response.StatusCode() >= 400 {
		s.discardBody(ctx)
	}

	code := ctx.Response.StatusCode()
	s.opts.Metrics.http.WithLabelValues(r.name(), strconv.Itoa(code)).Inc()
	// A streamed response (events, a job's results) is written after this
	// line: its size is not known yet, and asking for its body would read
	// the whole stream into memory before a byte of it is sent.
	outBytes := -1
	if !ctx.Response.IsBodyStream() {
		outBytes = len(ctx.Response.Body())
	}
	// Privacy: sizes, timings and ids only; never bodies, images or queries.
	// The model is logged only when it is a configured one. (The request
	// body is not asked for: one left unread would be read now.)
	s.opts.Logger.Info("request", "id", id, "method", method, "route", r.name(),
		"model", s.opts.Metrics.modelLabel(params.model), "status", code, "in_bytes", inBytes,
		"out_bytes", outBytes, "ms", float64(time.Since(start).Microseconds())/1000)
}

// requestID accepts a client's X-Request-Id when it is short printable
// ASCII: it is echoed in headers and logs, where control characters could
// forge lines.
func requestID(b []byte) string {
	if len(b) == 0 || len(b) > 128 {
		return ""
	}
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return ""
		}
	}
	return string(b)
}

type requestContextKey struct{}

// requestState is what serve keeps of a request for streamRequest.
type requestState struct {
	cancel   context.CancelFunc
	ticket   *admission.Ticket
	streamed bool
}

type requestStateKey struct{}

// serve runs a handler within the request's context: the deadline, the
// client's connection (a client that goes away cancels it) and the
// admission ticket. A panic becomes a 500, so one bad request cannot take
// the server down. It reports whether the handler handed the context and
// ticket over to a body stream writer (streamRequest).
func (s *Server) serve(ctx *fasthttp.RequestCtx, r route, p routeParams, t *admission.Ticket, fail func(*fasthttp.RequestCtx, error)) (streamed bool) {
	rctx, cancel := context.WithTimeout(admission.WithTicket(context.Background(), t), s.opts.RequestTimeout)
	st := &requestState{cancel: cancel, ticket: t}
	defer func() {
		if streamed = st.streamed; !streamed {
			cancel()
		}
	}()
	if !r.Probe {
		defer watchDisconnect(ctx.Conn(), cancel)()
	}
	if !r.Probe && !r.Background {
		s.beginInteractive()
		defer s.endInteractive()
	}
	ctx.SetUserValue(requestContextKey{}, rctx)
	ctx.SetUserValue(requestStateKey{}, st)
	defer func() {
		if v := recover(); v != nil {
			recovered.Report("http.handler", v)
			st.streamed = false // the error replaces any stream
			fail(ctx, newError(500, "internal", "internal error"))
		}
	}()
	r.Handle(s, ctx, p)
	return
}

// streamRequest hands the request's context (deadline and admission
// ticket) over to a body stream writer, which runs after the handler
// returns: the work it does stays admitted and under the deadline until
// it calls done. The writer must call done exactly once; a client that
// goes away shows as a failed flush, which should cancel.
func streamRequest(ctx *fasthttp.RequestCtx) (rctx context.Context, cancel context.CancelFunc, done func()) {
	st, _ := ctx.UserValue(requestStateKey{}).(*requestState)
	if st == nil { // not served through the front door (a test calling a handler)
		rctx, cancel := context.WithCancel(context.Background())
		return rctx, cancel, cancel
	}
	st.streamed = true
	return requestContext(ctx), st.cancel, func() {
		st.cancel()
		st.ticket.Done()
	}
}

// requestContextFrom bounds a request that already has a context (a gRPC
// call's, which ends with the client's deadline or cancellation, or an
// HTTP request's from requestContext) by the server's deadline and the
// client's own timeout.
func (s *Server) requestContextFrom(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 || timeout > s.opts.RequestTimeout {
		timeout = s.opts.RequestTimeout
	}
	return context.WithTimeout(parent, timeout)
}

// requestContext is the context of the request being served: its
// deadline, cancellation when the client goes away, and its admission
// ticket. Every stage of a request's work takes it.
func requestContext(ctx *fasthttp.RequestCtx) context.Context {
	if c, ok := ctx.UserValue(requestContextKey{}).(context.Context); ok {
		return c
	}
	return context.Background()
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

// errUnauthorized answers 401 with the scheme to use.
func errUnauthorized(msg string) *apiError {
	return newError(http.StatusUnauthorized, "unauthorized", msg)
}

// authorize checks the API key a route needs.
func (s *Server) authorize(ctx *fasthttp.RequestCtx, r route) error {
	err := s.checkKey(string(ctx.Request.Header.Peek("Authorization")), string(ctx.Request.Header.Peek("X-Api-Key")), r.Access)
	if err != nil {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="imgserve"`)
	}
	return err
}

// checkKey checks a key given as an authorization value ("Bearer <key>",
// an HTTP header or gRPC metadata) or, for routes that take it, as
// x-api-key, against what the access requires.
func (s *Server) checkKey(authorization, apiKey string, acc Access) error {
	keys := s.opts.Keys
	if !keys.Enabled() || acc == AccessOpen || (acc == AccessMetrics && s.opts.MetricsOpen) {
		return nil
	}
	token, ok := access.Bearer(authorization)
	if !ok && acc == AccessKeyOrHeader && apiKey != "" {
		token, ok = apiKey, true
	}
	if !ok {
		return errUnauthorized("an API key is required: send Authorization: Bearer <key>")
	}
	if _, ok := keys.Check(token); !ok {
		return errUnauthorized("invalid API key")
	}
	return nil
}

// checkLoad refuses at once a request for a model whose queue would make
// it wait past the shedding budget or its deadline, before its input is
// decoded; Submit checks again when it queues.
func (s *Server) checkLoad(ctx context.Context, model string) error {
	m, ok := s.opts.Registry.Get(model)
	if !ok {
		return nil // the pipeline reports the unknown model
	}
	if st := m.State(); st.Scheduler != nil {
		return st.Scheduler.CheckLoad(ctx)
	}
	return nil
}

// Admit is the front door for a transport other than HTTP, such as the
// KServe gRPC service, so that every request passes the same checks:
// draining (503), the API key (401; authorization is the value of an
// Authorization header or gRPC "authorization" metadata, "Bearer <key>"),
// and admission (429). It returns the request's context, carrying the
// admission ticket and the server's deadline (or ctx's, if sooner), and
// the function that ends the request. Within it, code reserves memory with
// admission.Reserve before allocating, checks KServe tensors against the
// model's State().Limits, and asks State().Scheduler.CheckLoad before
// costly work; ErrorStatus maps any error on the way to a status.
//
// A gRPC unary interceptor needs only
//
//	md, _ := metadata.FromIncomingContext(ctx)
//	ctx, done, err := srv.Admit(ctx, first(md["authorization"]), id, info.FullMethod)
//	if err != nil { return nil, status.Error(codeFor(server.ErrorStatus(err))) }
//	defer done()
//	return handler(ctx, req)
func (s *Server) Admit(ctx context.Context, authorization, id, route string) (context.Context, func(), error) {
	return s.admit(ctx, authorization, id, route, AccessKey, false)
}

// admit is Admit for a route's access and kind: a probe is not admitted
// (it reads no body, and answers while the server drains), but it is
// counted in flight, so that a drain waits for it.
func (s *Server) admit(ctx context.Context, authorization, id, route string, acc Access, probe bool) (context.Context, func(), error) {
	none := func() {}
	if s.draining.Load() && !probe {
		return ctx, none, errDraining
	}
	if err := s.checkKey(authorization, "", acc); err != nil {
		return ctx, none, err
	}
	var t *admission.Ticket
	if !probe {
		var err error
		if t, err = s.opts.Admission.Enter(id, route); err != nil {
			return ctx, none, err
		}
	}
	s.inflight.Add(1)
	if !probe {
		s.beginInteractive()
	}
	rctx, cancel := context.WithTimeout(admission.WithTicket(ctx, t), s.opts.RequestTimeout)
	return rctx, func() {
		cancel()
		t.Done()
		s.inflight.Add(-1)
		if !probe {
			s.endInteractive()
		}
	}, nil
}

// Status is how a transport answers an error: the HTTP status, the
// machine-readable code of the task API, the message, and for 429 and 503
// how long the client should wait before retrying.
type Status struct {
	HTTP       int
	Code       string
	Message    string
	RetryAfter time.Duration
}

// ErrorStatus classifies any error the way the HTTP routes answer it, for
// other transports to map onto their own codes (gRPC: 400 InvalidArgument,
// 401 Unauthenticated, 404 NotFound, 413 and 429 ResourceExhausted, 503
// Unavailable, 504 DeadlineExceeded, 499 Canceled, 500 Internal).
func ErrorStatus(err error) Status {
	ae := classify(err)
	st := Status{HTTP: ae.status, Code: ae.code, Message: ae.msg}
	if ae.status == http.StatusTooManyRequests || ae.status == http.StatusServiceUnavailable {
		st.RetryAfter = max(ae.retryAfter, time.Second)
	}
	return st
}
