// Command imgserve serves image models (background removal, inpainting,
// captioning, CLIP embeddings, image generation) over HTTP on ONNX Runtime.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/index/pgstore"
	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
	"github.com/imgserve/imgserve/jobs"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/catalog"
	"github.com/imgserve/imgserve/models/matting"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server"
	"github.com/imgserve/imgserve/server/access"
	"github.com/imgserve/imgserve/server/admission"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `imgserve: an inference server for image AI on ONNX Runtime.

Usage:
  imgserve [flags]

It serves the models named in its configuration (embedded defaults, or
--config) from --models-dir. Fetch the runtime and models first with
scripts/fetch-models.sh (add --gpu for the CUDA build that --device cuda
needs). A model whose file is missing is reported as unavailable, with the
command that fetches it; the server still starts. --device cuda checks at
start-up for the NVIDIA driver, CUDA 13 and cuDNN 9, and names what is
missing.

Endpoints: KServe v2 under /v2 (and over gRPC on --grpc-addr), the task API
under /v1 (OpenAI's /v1/images/generations and /v1/images/edits among it),
rembg's /api/remove, IOPaint's /api/v1/inpaint, GET /v1/models and GET
/metrics. GET /openapi.json describes every route (OpenAPI 3.1); GET / is
a playground page that tries each model in a browser (--playground=false
turns it off). See README.md.

Every request, HTTP or gRPC, passes one front door: API keys (--api-keys),
a bound on requests in flight (--max-inflight) and a memory budget they
reserve from before decoding (--memory-budget), and per-model load
shedding by expected queue wait (--queue-wait-budget). What does not fit
gets 429 (RESOURCE_EXHAUSTED) with Retry-After at once.

Batch jobs (POST /v1/jobs) run many images under one task at a lower
priority than single requests. A job and its results are erased
--job-ttl after its last change (15m by default, 1h at most); what jobs
hold is bounded by --jobs-memory. They live in this process, or with
--jobs-redis in a Redis shared by replicas, which must keep nothing on
disk (save "" and appendonly no); there the items of a replica that died
are taken over by another --jobs-claim-after (30s) after it stopped
renewing them.

Flags:
`

type options struct {
	addr           string
	grpcAddr       string
	modelsDir      string
	ortLib         string
	ortCUDALib     string
	config         string
	device         string
	maxBodySize    int
	requestTimeout time.Duration
	drainTimeout   time.Duration
	logFormat      string
	indexSnapshot  string
	indexPostgres  string
	indexLimits    index.Limits
	indexMemoryMiB int64
	compactMiB     int64
	alphaMiB       int

	apiKeys         string
	metricsOpen     bool
	tlsCert, tlsKey string
	corsOrigins     string
	headerTimeout   time.Duration
	bodyTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	maxConnections  int
	playground      bool
	maxInFlight     int
	memoryBudget    int64
	queueWait       time.Duration

	jobTTL     time.Duration
	jobsMemory int64
	jobsRedis  string
	claimAfter time.Duration
	jobWorkers int
}

// sizeFlag is a byte count flag that takes units (512MiB, 2GiB).
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil || *f.n == 0 {
		return ""
	}
	return admission.Size(*f.n)
}

func (f sizeFlag) Set(s string) error {
	n, err := admission.ParseSize(s)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	home := paths.Home()
	var o options
	fs := flag.NewFlagSet("imgserve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:8081", "listen address of the KServe v2 gRPC service; empty turns it off")
	fs.StringVar(&o.modelsDir, "models-dir", paths.Models(home), "folder of model files ($IMGSERVE_HOME/models)")
	fs.StringVar(&o.ortLib, "ort-lib", paths.ORTLib(home), "ONNX Runtime CPU build, for --device cpu ($IMGSERVE_HOME/lib/libonnxruntime.so.1)")
	fs.StringVar(&o.ortCUDALib, "ort-cuda-lib", paths.ORTCUDALib(home), "ONNX Runtime CUDA build's core library, its provider libraries beside it, for --device cuda ($IMGSERVE_HOME/lib/cuda/libonnxruntime.so; scripts/fetch-models.sh --gpu)")
	fs.StringVar(&o.config, "config", "", "model configuration YAML (default: the embedded one, see models/defaults.yaml)")
	fs.StringVar(&o.device, "device", "cpu", "where models run: cpu, cuda, cuda:N, or auto (cuda:0 when this host can run it, else cpu, saying why)")
	fs.IntVar(&o.maxBodySize, "max-body-size", server.DefaultMaxBodySize, "largest request body in bytes (413 above)")
	fs.DurationVar(&o.requestTimeout, "request-timeout", time.Minute, "deadline for one request (504 after)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM or SIGINT, how long in-flight requests may take to finish; at this limit the process exits, logging the requests cut off")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.indexSnapshot, "index-snapshot", "", "opt-in: keep the search collections (vectors, ids and metadata, never images) durable in this snapshot file plus an append-only log beside it (FILE.log.N); off when empty")
	fs.StringVar(&o.indexPostgres, "index-postgres", "", "keep the search collections in PostgreSQL with pgvector (postgres://user:pass@host/db), shared by every replica; excludes --index-snapshot")
	fs.IntVar(&o.indexLimits.MaxCollections, "index-max-collections", 1000, "most collections (0: no limit; 409 past it)")
	fs.IntVar(&o.indexLimits.MaxItems, "index-max-items", 10_000_000, "most items in one collection (0: no limit; 409 past it)")
	fs.Int64Var(&o.compactMiB, "index-compact-mib", index.CompactBytes>>20, "with --index-snapshot: compact the log into a new snapshot once it reaches this size (and the snapshot's)")
	fs.Int64Var(&o.indexMemoryMiB, "index-max-memory", 8192, "most MiB of vectors, graphs, ids and metadata held in process (0: no limit; 409 past it)")
	fs.IntVar(&o.alphaMiB, "alpha-matting-memory", int(matting.DefaultAlphaLimits.MaxBytes>>20), "MiB one alpha matting may use (413 above); it reserves them from --memory-budget like any other work")
	fs.StringVar(&o.apiKeys, "api-keys", "", "file of accepted API keys as SHA-256 hex, one per line (printf %s \"$KEY\" | sha256sum); when set, every route but the health probes needs Authorization: Bearer <key> (gRPC: authorization metadata)")
	fs.BoolVar(&o.metricsOpen, "metrics-open", false, "with --api-keys, serve /metrics without a key")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) for HTTPS and gRPC over TLS; with --tls-key")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key for HTTPS and gRPC over TLS; with --tls-cert")
	fs.StringVar(&o.corsOrigins, "cors-origins", "", "comma-separated origins browsers may call from (https://app.example.com), or * for any; none by default")
	fs.DurationVar(&o.headerTimeout, "header-timeout", server.DefaultHeaderTimeout, "time for a request line and headers to arrive; slower connections are closed")
	fs.DurationVar(&o.bodyTimeout, "body-timeout", server.DefaultBodyTimeout, "time for a request body to arrive (408 after)")
	fs.DurationVar(&o.writeTimeout, "write-timeout", server.DefaultWriteTimeout, "time to write a response")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "how long an idle keep-alive connection stays open")
	fs.IntVar(&o.maxConnections, "max-connections", server.DefaultMaxConnections, "open connections at most; past it new ones get 503")
	fs.IntVar(&o.maxInFlight, "max-inflight", admission.DefaultMaxInFlight, "requests admitted at once, HTTP and gRPC together; past it 429")
	fs.Var(sizeFlag{&o.memoryBudget}, "memory-budget", "memory admitted requests may reserve together (bodies, decoded images, tensors), such as 2GiB; past it 429 (default a quarter of the machine's or cgroup's memory)")
	fs.BoolVar(&o.playground, "playground", true, "serve the playground page at / (try each model in a browser); --playground=false turns it off")
	fs.DurationVar(&o.queueWait, "queue-wait-budget", 5*time.Second, "load shedding: refuse a request (429) whose expected wait in its model's queue exceeds this or its deadline; 0 turns shedding off (a model's batching.max_queue_wait overrides it)")
	fs.DurationVar(&o.jobTTL, "job-ttl", server.DefaultJobTTL, "how long a batch job and its results are kept after its last change, at most 1h")
	o.jobsMemory = server.DefaultJobMemory
	fs.Var(sizeFlag{&o.jobsMemory}, "jobs-memory", "memory batch jobs may hold together, inputs and results (such as 2GiB); a job that does not fit is refused up front (413 when it never could, 429 with Retry-After when others must expire first)")
	fs.StringVar(&o.jobsRedis, "jobs-redis", "", "keep batch jobs in Redis (redis://host:port/db), shared by every replica, instead of in this process; the Redis must keep nothing on disk (save \"\" and appendonly no), or the server refuses to start")
	fs.DurationVar(&o.claimAfter, "jobs-claim-after", jobs.DefaultClaimAfter, "with --jobs-redis: how long an item may stay with a replica that stopped renewing it (it died) before another replica takes it over; a live replica renews its items every third of this. At most half of --job-ttl")
	fs.IntVar(&o.jobWorkers, "job-workers", 0, "batch job items this process runs at once (0: twice the cores)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.jobTTL > jobs.MaxTTL {
		return o, fmt.Errorf("--job-ttl %v is over 1h: imgserve promises that uploads and results are deleted within the hour", o.jobTTL)
	}
	if o.jobTTL <= 0 {
		return o, errors.New("--job-ttl must be positive")
	}
	if o.claimAfter <= 0 {
		return o, errors.New("--jobs-claim-after must be positive")
	}
	if o.jobsRedis != "" && o.claimAfter > o.jobTTL/2 {
		return o, fmt.Errorf("--jobs-claim-after %v is over half of --job-ttl %v: a dead replica's items must be taken over well before their job expires", o.claimAfter, o.jobTTL)
	}
	if o.jobsMemory <= 0 || o.jobWorkers < 0 {
		return o, errors.New("--jobs-memory must be positive and --job-workers not negative")
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.indexSnapshot != "" && o.indexPostgres != "" {
		return o, errors.New("--index-snapshot and --index-postgres exclude each other: PostgreSQL is itself durable")
	}
	if o.indexLimits.MaxCollections < 0 || o.indexLimits.MaxItems < 0 || o.indexMemoryMiB < 0 {
		return o, errors.New("index limits must not be negative")
	}
	if o.compactMiB < 1 {
		return o, errors.New("--index-compact-mib must be at least 1")
	}
	o.indexLimits.MaxMemory = o.indexMemoryMiB << 20
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return o, errors.New("--tls-cert and --tls-key go together")
	}
	if o.memoryBudget == 0 {
		o.memoryBudget = admission.DefaultBudget()
	}
	return o, nil
}

func run(args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "imgserve:", err)
		return 2
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, nil)
	if o.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(handler)
	// Recovered panics in the server's goroutines log through the default.
	slog.SetDefault(log)
	if err := serve(o, log); err != nil {
		if errors.Is(err, inference.ErrCUDAUnavailable) {
			// A list of what the GPU host lacks, one line each: a log
			// field would fold it into one escaped line.
			fmt.Fprintln(stderr, "imgserve:", err)
			return 1
		}
		log.Error("imgserve stopped", "err", err)
		return 1
	}
	return 0
}

// logStart says which ONNX Runtime build and device serve, and on a GPU
// which GPU and which CUDA libraries.
func logStart(log *slog.Logger, asked inference.Device, s inference.Started) {
	if s.Fallback != "" {
		log.Warn("no usable GPU: serving on the CPU", "device", asked.String(), "onnxruntime_lib", s.Library, "reason", s.Fallback)
		return
	}
	if !s.Device.CUDA {
		return
	}
	g := s.GPU
	attrs := []any{"device", s.Device.String(), "name", g.Name, "memory", fmt.Sprintf("%.1f GiB", float64(g.TotalMemory)/(1<<30))}
	if g.FreeMemory > 0 {
		attrs = append(attrs, "free", fmt.Sprintf("%.1f GiB", float64(g.FreeMemory)/(1<<30)))
	}
	attrs = append(attrs, "compute_capability", g.ComputeCapability, "driver_cuda", g.DriverCUDA, "onnxruntime_lib", s.Library)
	log.Info("GPU", attrs...)
	libs := make([]string, 0, len(s.CUDALibraries))
	for name := range s.CUDALibraries {
		libs = append(libs, name)
	}
	slices.Sort(libs)
	for _, name := range libs {
		log.Info("CUDA library", "name", name, "path", s.CUDALibraries[name])
	}
}

// openIndex opens the collections' backend: PostgreSQL, a durable store
// (snapshot plus log), or by default memory only, which ends with the
// process.
func openIndex(o options, log *slog.Logger) (index.Backend, error) {
	switch {
	case o.indexPostgres != "":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgstore.Open(ctx, o.indexPostgres, pgstore.Options{Logger: log, Limits: o.indexLimits})
	case o.indexSnapshot != "":
		index.CompactBytes = o.compactMiB << 20
		s, err := index.OpenStore(o.indexSnapshot, o.indexLimits, log)
		if err != nil {
			return nil, fmt.Errorf("opening the index: %w", err)
		}
		return s, nil
	}
	s := index.NewStore()
	s.SetLimits(o.indexLimits)
	return s, nil
}

func serve(o options, log *slog.Logger) error {
	device, err := inference.ParseDevice(o.device)
	if err != nil {
		return err
	}
	cfg, err := models.LoadConfig(o.config)
	if err != nil {
		return err
	}
	var keys *access.Keys
	if o.apiKeys != "" {
		if keys, err = access.LoadKeys(o.apiKeys); err != nil {
			return err
		}
	}
	var tlsConfig *tls.Config
	if o.tlsCert != "" {
		if tlsConfig, err = access.TLSConfig(o.tlsCert, o.tlsKey); err != nil {
			return err
		}
	}
	// A Redis that persists is refused before anything loads.
	var jobStore jobs.Backend
	if o.jobsRedis != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := jobs.OpenRedis(ctx, o.jobsRedis, jobs.RedisOptions{TTL: o.jobTTL, Budget: o.jobsMemory, ClaimAfter: o.claimAfter})
		cancel()
		if err != nil {
			return err
		}
		defer r.Close()
		jobStore = r
	}
	rt, started, err := inference.Start(inference.Libraries{
		CPU:       o.ortLib,
		CUDA:      o.ortCUDALib,
		FetchCUDA: catalog.Script + " --gpu",
	}, device)
	if err != nil {
		return err
	}
	logStart(log, device, started)

	store, err := openIndex(o, log)
	if err != nil {
		rt.Close()
		return err
	}
	var metrics *server.Metrics
	reg := models.NewRegistry(cfg, models.Options{
		ModelsDir:    o.modelsDir,
		Runtime:      rt,
		Observer:     func(model string) inference.Observer { return metrics.Observer(model) },
		Logger:       log,
		FetchCommand: catalog.FetchCommandIfListed,
		// Load shedding for models whose batching sets no max_queue_wait.
		QueueWaitBudget: o.queueWait,
	})
	metrics = server.NewMetrics(reg)
	srv := server.New(server.Options{
		Registry:       reg,
		Metrics:        metrics,
		Logger:         log,
		MaxBodySize:    o.maxBodySize,
		RequestTimeout: o.requestTimeout,
		Version:        version,
		Index:          store,
		AlphaMatting:   matting.AlphaLimits{MaxBytes: int64(o.alphaMiB) << 20},
		Admission:      admission.New(admission.Limits{MaxInFlight: o.maxInFlight, MemoryBudget: o.memoryBudget}),
		Keys:           keys,
		MetricsOpen:    o.metricsOpen,
		CORSOrigins:    splitList(o.corsOrigins),
		TLS:            tlsConfig,
		HeaderTimeout:  o.headerTimeout,
		BodyTimeout:    o.bodyTimeout,
		WriteTimeout:   o.writeTimeout,
		IdleTimeout:    o.idleTimeout,
		MaxConnections: o.maxConnections,
		Jobs:           server.JobOptions{Backend: jobStore, TTL: o.jobTTL, Memory: o.jobsMemory, Workers: o.jobWorkers},
		Playground:     o.playground,
	})
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		store.Close()
		rt.Close()
		return err
	}
	var grpcLn net.Listener
	if o.grpcAddr != "" {
		if grpcLn, err = net.Listen("tcp", o.grpcAddr); err != nil {
			ln.Close()
			return fmt.Errorf("gRPC: %w", err)
		}
	}
	// Signals are caught before anyone can learn the address: a SIGTERM
	// right after "listening" must drain, not kill.
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	grpcAt := "off"
	if grpcLn != nil {
		grpcAt = grpcLn.Addr().String()
		go func() {
			if err := srv.ServeGRPC(grpcLn); err != nil {
				served <- fmt.Errorf("gRPC: %w", err)
			}
		}()
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	log.Info("imgserve listening", "addr", ln.Addr().String(), "device", rt.Device().String(), "grpc_addr", grpcAt,
		"scheme", scheme, "onnxruntime", rt.Version(), "models_dir", o.modelsDir, "decoders", preprocess.Decoders(),
		"resize_kernels", preprocess.ResizeKernels(),
		"api_keys", keys.Len(), "max_inflight", o.maxInFlight, "memory_budget", admission.Size(o.memoryBudget),
		"queue_wait_budget", o.queueWait.String(), "job_ttl", o.jobTTL.String(), "jobs_memory", admission.Size(o.jobsMemory),
		"jobs_store", jobsStoreName(o))

	// Models load after the listener is up, so liveness answers at once and
	// readiness turns 200 when every present model has loaded and warmed up.
	loaded := make(chan struct{})
	go func() {
		reg.Load()
		close(loaded)
		log.Info("imgserve ready")
	}()

	select {
	case err := <-served:
		return err
	case <-stop.Done():
	}
	if err := drain(o, log, srv, reg, store, loaded); err != nil {
		// Sessions may still be running or loading: the runtime is left to
		// the process's exit.
		return err
	}
	rt.Close()
	return nil
}

// drain stops the server within --drain-timeout, a hard limit: requests
// still in flight then are cut off (and logged, by id and route), and the
// process exits without waiting for them or for the models' queues.
func drain(o options, log *slog.Logger, srv *server.Server, reg *models.Registry, store index.Backend, loaded <-chan struct{}) error {
	log.Info("draining", "timeout", o.drainTimeout.String())
	ctx, done := context.WithTimeout(context.Background(), o.drainTimeout)
	defer done()
	err := srv.Shutdown(ctx)
	if err == nil {
		// The models' queues are empty once no request is in flight; a
		// model still loading is not waited for past the limit.
		closed := make(chan struct{})
		go func() {
			select {
			case <-loaded:
				reg.Close()
			case <-ctx.Done():
			}
			close(closed)
		}()
		select {
		case <-closed:
		case <-ctx.Done():
			err = fmt.Errorf("closing the models: %w", ctx.Err())
		}
	}
	if err != nil {
		cut := srv.InFlight()
		for _, r := range cut {
			log.Warn("drain timeout cut off a request", "id", r.ID, "route", r.Route,
				"age_ms", r.Age.Milliseconds(), "reserved_bytes", r.Reserved)
		}
		log.Error("drain timeout reached: exiting", "timeout", o.drainTimeout.String(), "cut_off", len(cut))
	}
	// The collections change only through requests, and none is answered
	// any more: closing the index (its snapshot, its connections) keeps
	// what it holds even after a cut-off.
	if serr := store.Close(); serr != nil {
		return errors.Join(err, fmt.Errorf("closing the index: %w", serr))
	}
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	log.Info("imgserve stopped cleanly")
	return nil
}

// jobsStoreName says where jobs live, without the Redis URL's password.
func jobsStoreName(o options) string {
	if o.jobsRedis == "" {
		return "memory"
	}
	return "redis"
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
