package server

import (
	"bytes"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/models"
)

// Metrics are Triton's inference series under imgserve's names, plus HTTP
// and gRPC request counts, in the Prometheus text format.
type Metrics struct {
	reg       *prometheus.Registry
	success   *prometheus.CounterVec
	failure   *prometheus.CounterVec
	queue     *prometheus.HistogramVec
	compute   *prometheus.HistogramVec
	batchSize *prometheus.HistogramVec
	execCount *prometheus.CounterVec
	http      *prometheus.CounterVec
	grpc      *prometheus.CounterVec
}

// Latency buckets from 100µs to about 100s.
var durationBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 16)

// NewMetrics registers the series. pending reads each model's queue length
// at scrape time.
func NewMetrics(reg *models.Registry) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
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
	}
	m.reg.MustRegister(m.success, m.failure, m.queue, m.compute, m.batchSize, m.execCount, m.http, m.grpc,
		&pendingCollector{models: reg},
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
	m.failure.WithLabelValues(model, reason).Inc()
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

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pendingDesc }

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.models.Models() {
		st := m.State()
		if st.Scheduler == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.Scheduler.Pending()), m.Config.Name)
	}
}
