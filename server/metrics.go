package server

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warden-llm/warden/runtime/sched"
)

// Metrics are the server's Prometheus series. Other parts of Warden (the
// backend supervisor, the audit writer, GPU telemetry) register their own
// collectors on Registry.
type Metrics struct {
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	ttft        *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	inFlight    *prometheus.GaugeVec
	rateLimited *prometheus.CounterVec
	queueWait   *prometheus.HistogramVec
	findings    *prometheus.CounterVec
	shed        prometheus.Counter
	banned      prometheus.Counter

	// The children of the per-request series, looked up once per label
	// set rather than on every request (see seriesOf).
	series     sync.Map // seriesKey → *requestSeries
	nSeries    atomic.Int64
	inFlights  sync.Map // endpoint → prometheus.Gauge
	queueWaits sync.Map // model → prometheus.Observer
}

// maxCachedSeries bounds each cache of series children; label sets past
// it are looked up on every use, as without a cache.
const maxCachedSeries = 4096

type seriesKey struct{ endpoint, model, key string }

// requestSeries holds one label set's children. Each is made on first
// use: a child made is a series exported (at zero), which must not
// appear before the request that counts in it.
type requestSeries struct {
	key                 seriesKey
	ok                  atomic.Pointer[prometheus.Counter] // status 200
	duration, ttft      atomic.Pointer[prometheus.Observer]
	tokensIn, tokensOut atomic.Pointer[prometheus.Counter]
}

// seriesOf returns the children of a request's label set.
func (m *Metrics) seriesOf(endpoint, model, keyID string) *requestSeries {
	k := seriesKey{endpoint, model, keyID}
	if v, ok := m.series.Load(k); ok {
		return v.(*requestSeries)
	}
	rs := &requestSeries{key: k}
	if m.nSeries.Load() < maxCachedSeries {
		if v, loaded := m.series.LoadOrStore(k, rs); loaded {
			return v.(*requestSeries)
		}
		m.nSeries.Add(1)
	}
	return rs
}

// child returns *p, making it with mk on first use. Two callers racing
// make the same child: a vector returns one child per label set.
func child[T any](p *atomic.Pointer[T], mk func() T) T {
	if c := p.Load(); c != nil {
		return *c
	}
	c := mk()
	p.Store(&c)
	return c
}

// cachedChild is child for the caches keyed by one label.
func cachedChild[T any](m *sync.Map, label string, mk func() T) T {
	if v, ok := m.Load(label); ok {
		return v.(T)
	}
	c := mk()
	m.LoadOrStore(label, c) // bounded by the routes and the models served
	return c
}

// NewMetrics makes the server's series on a new registry, with the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	m := &Metrics{
		Registry: r,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_requests_total", Help: "API requests answered, by endpoint, model and status.",
		}, []string{"endpoint", "model", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "warden_request_duration_seconds", Help: "Time from the request to its answer (for streams, the last event).", Buckets: buckets,
		}, []string{"endpoint", "model"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "warden_time_to_first_token_seconds", Help: "Time from the request to the backend's first token.", Buckets: buckets,
		}, []string{"endpoint", "model"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_tokens_total", Help: "Tokens by direction (in: prompt, out: completion), key and model.",
		}, []string{"direction", "key", "model"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warden_in_flight_requests", Help: "Requests being served, by endpoint.",
		}, []string{"endpoint"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_rate_limited_total", Help: "Requests refused with 429, by the limit they hit.",
		}, []string{"limit"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "warden_queue_wait_seconds", Help: "Time requests waited for a backend slot, by model.",
			Buckets: append([]float64{.0005, .001, .0025}, buckets...),
		}, []string{"model"}),
	}
	m.findings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_safety_findings_total", Help: "Safety filter findings acted on, by direction, category and action.",
	}, []string{"direction", "category", "action"})
	m.shed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "warden_shed_total", Help: "Requests refused with 503 past server.max_rps, before any key lookup.",
	})
	m.banned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "warden_auth_ban_refusals_total", Help: "Requests refused (429, then 403) from addresses past server.auth_fail_limit failed authentications a minute.",
	})
	r.MustRegister(m.requests, m.duration, m.ttft, m.tokens, m.inFlight, m.rateLimited, m.queueWait, m.findings, m.shed, m.banned)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// observe records one answered request; complete calls it with what goes
// into the completion record.
func (m *Metrics) observe(endpoint, model, keyID string, o outcome, elapsed, ttft time.Duration) {
	if m == nil {
		return
	}
	rs := m.seriesOf(endpoint, model, keyID)
	if o.status == http.StatusOK {
		child(&rs.ok, func() prometheus.Counter { return m.requests.WithLabelValues(endpoint, model, "200") }).Inc()
		child(&rs.duration, func() prometheus.Observer { return m.duration.WithLabelValues(endpoint, model) }).Observe(elapsed.Seconds())
		if ttft > 0 {
			child(&rs.ttft, func() prometheus.Observer { return m.ttft.WithLabelValues(endpoint, model) }).Observe(ttft.Seconds())
		}
	} else {
		m.requests.WithLabelValues(endpoint, model, strconv.Itoa(o.status)).Inc()
	}
	if o.usage.PromptTokens > 0 {
		child(&rs.tokensIn, func() prometheus.Counter { return m.tokens.WithLabelValues("in", keyID, model) }).Add(float64(o.usage.PromptTokens))
	}
	if o.usage.CompletionTokens > 0 {
		child(&rs.tokensOut, func() prometheus.Counter { return m.tokens.WithLabelValues("out", keyID, model) }).Add(float64(o.usage.CompletionTokens))
	}
}

// trackInFlight counts the requests of its group while they run.
func (s *Server) trackInFlight(c *gin.Context) {
	if s.cfg.Metrics == nil {
		c.Next()
		return
	}
	m, path := s.cfg.Metrics, c.FullPath()
	g := cachedChild(&m.inFlights, path, func() prometheus.Gauge { return m.inFlight.WithLabelValues(path) })
	g.Inc()
	defer g.Dec()
	c.Next()
}

// watchBodies exports the request body bytes in flight, read at scrape
// time.
func (m *Metrics) watchBodies(inFlight func() int64) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "warden_request_body_bytes_in_flight",
		Help: "Request body bytes reserved against the per-IP budget, by requests not yet answered.",
	}, func() float64 { return float64(inFlight()) }))
}

func (s *Server) metricsHandler(c *gin.Context) {
	s.cfg.Metrics.Handler().ServeHTTP(c.Writer, c.Request)
}

// WatchQueue exports the scheduler's per-model slots, requests in flight
// and requests waiting, read at scrape time.
func (m *Metrics) WatchQueue(stats func() sched.Stats) {
	m.Registry.MustRegister(queueCollector{stats})
}

type queueCollector struct{ stats func() sched.Stats }

var (
	queueDepth    = prometheus.NewDesc("warden_queue_depth", "Requests waiting for a backend slot, by model.", []string{"model"}, nil)
	queueInFlight = prometheus.NewDesc("warden_backend_in_flight", "Requests holding a backend slot, by model.", []string{"model"}, nil)
	queueSlots    = prometheus.NewDesc("warden_backend_slots", "Backend slots, by model (models with requests only).", []string{"model"}, nil)
)

func (queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDepth
	ch <- queueInFlight
	ch <- queueSlots
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	for model, st := range c.stats().Models {
		ch <- prometheus.MustNewConstMetric(queueDepth, prometheus.GaugeValue, float64(st.Queued), model)
		ch <- prometheus.MustNewConstMetric(queueInFlight, prometheus.GaugeValue, float64(st.InFlight), model)
		ch <- prometheus.MustNewConstMetric(queueSlots, prometheus.GaugeValue, float64(st.Slots), model)
	}
}

// WatchGPU exports the latest GPU sample as gauges, read at scrape time.
func (m *Metrics) WatchGPU(g GPUReporter) {
	m.Registry.MustRegister(gpuCollector{g})
}

type gpuCollector struct{ g GPUReporter }

var (
	gpuLabels  = []string{"gpu", "name"}
	gpuMemUsed = prometheus.NewDesc("warden_gpu_memory_used_bytes", "GPU memory in use.", gpuLabels, nil)
	gpuMemTot  = prometheus.NewDesc("warden_gpu_memory_total_bytes", "GPU memory in all.", gpuLabels, nil)
	gpuUtil    = prometheus.NewDesc("warden_gpu_utilization_ratio", "GPU busy time (kind=gpu) and memory-controller busy time (kind=memory), 0-1.", append(gpuLabels, "kind"), nil)
	gpuTemp    = prometheus.NewDesc("warden_gpu_temperature_celsius", "GPU temperature.", gpuLabels, nil)
	gpuPower   = prometheus.NewDesc("warden_gpu_power_watts", "GPU power draw.", gpuLabels, nil)
	gpuProc    = prometheus.NewDesc("warden_gpu_process_memory_bytes", "GPU memory used by a process of the backend.", append(gpuLabels, "pid"), nil)
	gpuUp      = prometheus.NewDesc("warden_gpu_available", "1 when NVML reports GPUs, 0 without (no driver, no device).", nil, nil)
)

func (gpuCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{gpuMemUsed, gpuMemTot, gpuUtil, gpuTemp, gpuPower, gpuProc, gpuUp} {
		ch <- d
	}
}

func (c gpuCollector) Collect(ch chan<- prometheus.Metric) {
	snap, ok := c.g.Latest()
	up := 0.0
	if ok && len(snap.Devices) > 0 {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(gpuUp, prometheus.GaugeValue, up)
	for _, d := range snap.Devices {
		l := []string{strconv.Itoa(d.Index), d.Name}
		gauge := func(desc *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, append(l, extra...)...)
		}
		gauge(gpuMemUsed, float64(d.MemoryUsed))
		gauge(gpuMemTot, float64(d.MemoryTotal))
		gauge(gpuUtil, float64(d.GPUUtil)/100, "gpu")
		gauge(gpuUtil, float64(d.MemUtil)/100, "memory")
		gauge(gpuTemp, float64(d.TemperatureC))
		gauge(gpuPower, float64(d.PowerMilliwatts)/1000)
		for _, p := range d.Processes {
			gauge(gpuProc, float64(p.UsedMemory), strconv.Itoa(p.PID))
		}
	}
}
