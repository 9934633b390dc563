package server

import (
	"bytes"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/jobs"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/server/admission"
)

// Metrics are Triton's inference series under imgserve's names, plus HTTP
// and gRPC request counts, in the Prometheus text format.
type Metrics struct {
	watched   atomic.Bool
	models    *models.Registry
	reg       *prometheus.Registry
	success   *prometheus.CounterVec
	failure   *prometheus.CounterVec
	queue     *prometheus.HistogramVec
	compute   *prometheus.HistogramVec
	batchSize *prometheus.HistogramVec
	execCount *prometheus.CounterVec
	http      *prometheus.CounterVec
	grpc      *prometheus.CounterVec
	jobItems  *prometheus.CounterVec
	reclaimed *prometheus.CounterVec
}

// Latency buckets from 100µs to about 100s.
var durationBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 16)

// NewMetrics registers the series. pending reads each model's queue length
// at scrape time.
func NewMetrics(reg *models.Registry) *Metrics {
	m := &Metrics{
		models: reg,
		reg:    prometheus.NewRegistry(),
		success: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgserve_inference_request_success_total",
			Help: "Inference requests that completed, per model.",
		}, []string{"model"}),
		failure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgserve_inference_request_failure_total",
			Help: "Inference requests that failed, per model and reason.",
		}, []string{"model", "reason"}),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imgserve_inference_queue_duration_seconds",
			Help:    "Time requests waited in the scheduler queue.",
			Buckets: durationBuckets,
		}, []string{"model"}),
		compute: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imgserve_inference_compute_duration_seconds",
			Help:    "Time of each batch's run, packing and scattering included.",
			Buckets: durationBuckets,
		}, []string{"model"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imgserve_inference_batch_size",
			Help:    "Rows per executed batch.",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64},
		}, []string{"model"}),
		execCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgserve_inference_exec_total",
			Help: "Batches executed, per model.",
		}, []string{"model"}),
		http: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgserve_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		grpc: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgserve_grpc_requests_total",
			Help: "gRPC requests (unary calls and stream messages) by method and status code.",
		}, []string{"method", "code"}),
		jobItems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgserve_job_items_total",
			Help: "Batch job items this process ran, by task and outcome (done or failed).",
		}, []string{"task", "outcome"}),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imgserve_job_items_reclaimed_total",
			Help: "Batch job items this process ran after taking them over from a replica that stopped renewing them (--jobs-redis), by task.",
		}, []string{"task"}),
	}
	m.reg.MustRegister(m.success, m.failure, m.queue, m.compute, m.batchSize, m.execCount, m.http, m.grpc,
		m.jobItems, m.reclaimed,
		&pendingCollector{models: reg}, panicCollector{},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Observer returns the scheduler observer for one model.
func (m *Metrics) Observer(model string) inference.Observer {
	return &modelObserver{
		success:   m.success.WithLabelValues(model),
		failure:   m.failure,
		model:     model,
		queue:     m.queue.WithLabelValues(model),
		compute:   m.compute.WithLabelValues(model),
		batchSize: m.batchSize.WithLabelValues(model),
		execCount: m.execCount.WithLabelValues(model),
	}
}

// rejected counts a request that never reached a scheduler queue.
func (m *Metrics) rejected(model, reason string) {
	m.failure.WithLabelValues(m.modelLabel(model), reason).Inc()
}

// jobItemRan counts a job item this process ran. The task label is one of
// jobs.Tasks: a job's task was checked when it was submitted, and anything
// else read back from a shared store counts under unknownModel's label.
func (m *Metrics) jobItemRan(w jobs.Work, failed bool) {
	task := w.Spec.Task
	if !slices.Contains(jobs.Tasks, task) {
		task = unknownModel
	}
	outcome := "done"
	if failed {
		outcome = "failed"
	}
	m.jobItems.WithLabelValues(task, outcome).Inc()
	if w.Reclaimed {
		m.reclaimed.WithLabelValues(task).Inc()
	}
}

// unknownModel labels requests for a model that is not configured: label
// values come only from the configuration, so a client cannot mint series
// by naming models.
const unknownModel = "_unknown"

// modelLabel is model when it is configured, else unknownModel ("" stays
// "": no model).
func (m *Metrics) modelLabel(model string) string {
	if model == "" || m.models == nil {
		return model
	}
	if _, ok := m.models.Get(model); ok {
		return model
	}
	return unknownModel
}

// watch exports an admission controller's state: the first one given, as
// servers sharing these metrics share their controller.
func (m *Metrics) watch(c *admission.Controller) {
	if c != nil && m.watched.CompareAndSwap(false, true) {
		m.reg.MustRegister(admissionCollector{c})
	}
}

func (m *Metrics) write() ([]byte, error) {
	families, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

type modelObserver struct {
	model     string
	success   prometheus.Counter
	failure   *prometheus.CounterVec
	queue     prometheus.Observer
	compute   prometheus.Observer
	batchSize prometheus.Observer
	execCount prometheus.Counter
}

func (o *modelObserver) ObserveBatch(rows int, compute time.Duration) {
	o.batchSize.Observe(float64(rows))
	o.compute.Observe(compute.Seconds())
	o.execCount.Inc()
}

func (o *modelObserver) ObserveRequest(queue, _ time.Duration, err error) {
	o.queue.Observe(queue.Seconds())
	if err != nil {
		o.failure.WithLabelValues(o.model, reasonOf(err)).Inc()
		return
	}
	o.success.Inc()
}

// pendingCollector reads queue lengths at scrape time instead of tracking a
// gauge on every submit.
type pendingCollector struct{ models *models.Registry }

var pendingDesc = prometheus.NewDesc("imgserve_inference_pending_requests",
	"Requests waiting in the scheduler queue.", []string{"model"}, nil)

var (
	serviceDesc = prometheus.NewDesc("imgserve_inference_service_seconds",
		"Moving average of a batch's run time: the service time load shedding works from.", []string{"model"}, nil)
	waitDesc = prometheus.NewDesc("imgserve_inference_expected_queue_wait_seconds",
		"Expected queue wait of a request arriving now; past the budget requests are shed.", []string{"model"}, nil)
)

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- serviceDesc
	ch <- waitDesc
}

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.models.Models() {
		st := m.State()
		if st.Scheduler == nil {
			continue
		}
		name := m.Config.Name
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.Scheduler.Pending()), name)
		ch <- prometheus.MustNewConstMetric(serviceDesc, prometheus.GaugeValue, st.Scheduler.ServiceTime().Seconds(), name)
		ch <- prometheus.MustNewConstMetric(waitDesc, prometheus.GaugeValue, st.Scheduler.ExpectedWait().Seconds(), name)
	}
}

// panicCollector reads the recovered panics at scrape time.
type panicCollector struct{}

var panicDesc = prometheus.NewDesc("imgserve_panics_total",
	"Panics recovered in the server's goroutines, by place; each failed its request with 500 instead of the process.",
	[]string{"where"}, nil)

func (panicCollector) Describe(ch chan<- *prometheus.Desc) { ch <- panicDesc }

func (panicCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range recovered.Counts() {
		ch <- prometheus.MustNewConstMetric(panicDesc, prometheus.CounterValue, float64(c.N), c.Where)
	}
}

// admissionCollector reads the front door's state at scrape time.
type admissionCollector struct{ c *admission.Controller }

var (
	inflightDesc = prometheus.NewDesc("imgserve_admission_in_flight",
		"Requests admitted and not yet answered.", nil, nil)
	inflightMaxDesc = prometheus.NewDesc("imgserve_admission_in_flight_limit",
		"Most requests admitted at once.", nil, nil)
	reservedDesc = prometheus.NewDesc("imgserve_admission_reserved_bytes",
		"Memory reserved by admitted requests.", nil, nil)
	budgetDesc = prometheus.NewDesc("imgserve_admission_memory_budget_bytes",
		"Memory admitted requests may reserve together.", nil, nil)
	refusedDesc = prometheus.NewDesc("imgserve_admission_refused_total",
		"Requests refused at the front door, by reason.", []string{"reason"}, nil)
)

func (a admissionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{inflightDesc, inflightMaxDesc, reservedDesc, budgetDesc, refusedDesc} {
		ch <- d
	}
}

func (a admissionCollector) Collect(ch chan<- prometheus.Metric) {
	st, lim := a.c.Stats(), a.c.Limits()
	ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(inflightMaxDesc, prometheus.GaugeValue, float64(lim.MaxInFlight))
	ch <- prometheus.MustNewConstMetric(reservedDesc, prometheus.GaugeValue, float64(st.Reserved))
	ch <- prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, float64(lim.MemoryBudget))
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(st.RefusedBusy), "busy")
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(st.RefusedOverBudget), "over_budget")
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(st.RefusedTooCostly), "too_costly")
}
