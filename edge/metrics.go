package edge

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/gojinn/gojinn/internal/promlabel"
	"github.com/gojinn/gojinn/runtime"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the edge's Prometheus series. Labels stay bounded: the
// protocol, the status code, the function's name (functions are
// registered by operators), an outcome from a fixed set, the TLS
// transport and handshake result, and a served certificate's name (from
// configuration, routes or certificate files); never paths, SNI names,
// client addresses or other request data. A removed function's series
// are deleted by ForgetFunction or Prune.
type Metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	invokes    *prometheus.CounterVec
	reqBytes   *prometheus.CounterVec
	respBytes  *prometheus.CounterVec
	cpu        *prometheus.CounterVec
	handshakes *prometheus.CounterVec // counted through ServerConfig.Metrics
	certs      *certExpiryCollector   // reads the TLS given to ReportCertificates

	// The series of the common case, looked up once: a successful
	// invocation of a function (by name) and a 200 by protocol. A label
	// lookup hashes the values under a lock; six per request cost ~0.4 µs
	// over HTTP/3 (docs/benchmarks.md).
	okSeries sync.Map // function name -> *okSeries
	ok200    [3]prometheus.Counter
	// okMu orders filling okSeries against ForgetFunction, so the cache
	// never keeps series the vecs no longer have: a redeployed function's
	// successes would count into those, unseen.
	okMu sync.Mutex
}

// okSeries are one function's series for successful invocations.
type okSeries struct {
	duration                prometheus.Observer
	invokes, reqBytes, resp prometheus.Counter
	cpu                     prometheus.Counter
}

// Outcomes of an invocation, as the outcome label names them.
const (
	OutcomeOK          = "ok"
	OutcomeTimeout     = "timeout"
	OutcomeCPU         = "cpu_budget"
	OutcomeMemory      = "memory"
	OutcomeTrap        = "trap"
	OutcomeBadResponse = "bad_response"
	OutcomeRejected    = "rejected" // busy, too large, deploying, canceled, node memory
	OutcomeError       = "error"
)

// NewMetrics registers the edge's series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_edge_requests_total", Help: "HTTP requests answered by the edge, by protocol and status code.",
		}, []string{"protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gojinn_function_duration_seconds", Help: "Invocation time as the edge sees it, by function and outcome.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"function", "outcome"}),
		invokes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_invocations_total", Help: "Invocations by function and outcome.",
		}, []string{"function", "outcome"}),
		reqBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_function_request_bytes_total", Help: "Request body bytes passed to functions.",
		}, []string{"function"}),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_function_response_bytes_total", Help: "Response body bytes returned by functions.",
		}, []string{"function"}),
		cpu: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_function_cpu_seconds_total", Help: "CPU time used by invocations, measured on the guest's thread (busy time for the first millisecond of a call without a CPU budget).",
		}, []string{"function"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_tls_handshakes_total", Help: "Server-side TLS handshakes on the HTTPS listeners, by transport (tcp, quic) and result (ok, error).",
		}, []string{"transport", "result"}),
		certs: newCertExpiryCollector(),
	}
	// Every combination exists from the start, so rate() and alerts see
	// zero rather than no series.
	for _, tr := range []string{transportTCP, transportQUIC} {
		for _, res := range []string{handshakeOK, handshakeError} {
			m.handshakes.WithLabelValues(tr, res)
		}
	}
	for i, major := range []int{1, 2, 3} {
		m.ok200[i] = m.requests.WithLabelValues(protoLabel(major), "200")
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.invokes, m.reqBytes, m.respBytes, m.cpu, m.handshakes, m.certs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("edge: registering metrics: %w", err)
		}
	}
	return m, nil
}

// ReportCertificates makes gojinn_tls_certificate_expiry_timestamp_seconds
// report the certificates t serves, read from t at each scrape; nil stops
// the reporting. Handshakes are counted by the Server whose
// ServerConfig.Metrics is m.
func (m *Metrics) ReportCertificates(t *TLS) {
	if m == nil {
		return
	}
	m.certs.tls.Store(t)
}

// Outcome names an invocation error for the outcome label.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, runtime.ErrTimeout):
		return OutcomeTimeout
	case errors.Is(err, runtime.ErrCPUBudget):
		return OutcomeCPU
	case errors.Is(err, runtime.ErrMemoryLimit):
		return OutcomeMemory
	case errors.Is(err, runtime.ErrTrap), errors.Is(err, runtime.ErrExit):
		return OutcomeTrap
	case errors.Is(err, runtime.ErrBadResponse):
		return OutcomeBadResponse
	case errors.Is(err, runtime.ErrBusy), errors.Is(err, runtime.ErrRequestTooLarge), errors.Is(err, runtime.ErrNodeMemory),
		errors.Is(err, runtime.ErrCanceled), errors.Is(err, runtime.ErrUnknownFunction):
		return OutcomeRejected
	}
	return OutcomeError
}

// protoLabel keeps the protocol label to three values.
func protoLabel(major int) string {
	switch major {
	case 3:
		return "h3"
	case 2:
		return "h2"
	}
	return "h1"
}

func (m *Metrics) request(major, code int) {
	if m == nil {
		return
	}
	if code == 200 && major >= 1 && major <= 3 {
		m.ok200[major-1].Inc()
		return
	}
	m.requests.WithLabelValues(protoLabel(major), strconv.Itoa(code)).Inc()
}

func (m *Metrics) invocation(function string, err error, d time.Duration, in int, res *runtime.Result) {
	if m == nil {
		return
	}
	if err == nil && res != nil {
		s := m.seriesOK(function)
		s.duration.Observe(d.Seconds())
		s.invokes.Inc()
		s.reqBytes.Add(float64(in))
		if res.Response != nil {
			s.resp.Add(float64(len(res.Response.Body)))
		}
		s.cpu.Add(res.CPUTime.Seconds())
		return
	}
	outcome := Outcome(err)
	m.duration.WithLabelValues(function, outcome).Observe(d.Seconds())
	m.invokes.WithLabelValues(function, outcome).Inc()
	m.reqBytes.WithLabelValues(function).Add(float64(in))
	var ie *runtime.InvokeError
	switch {
	case res != nil:
		if res.Response != nil {
			m.respBytes.WithLabelValues(function).Add(float64(len(res.Response.Body)))
		}
		m.cpu.WithLabelValues(function).Add(res.CPUTime.Seconds())
	case errors.As(err, &ie) && ie.CPUTime > 0:
		// A failed call used CPU too, often the most (a timeout, the
		// CPU budget): it counts.
		m.cpu.WithLabelValues(function).Add(ie.CPUTime.Seconds())
	}
}

// seriesOK returns function's series for successful invocations. The
// names are those of routed functions, so the cache stays as bounded as
// the series themselves; ForgetFunction drops a name from both.
func (m *Metrics) seriesOK(function string) *okSeries {
	if s, ok := m.okSeries.Load(function); ok {
		return s.(*okSeries)
	}
	m.okMu.Lock()
	defer m.okMu.Unlock()
	if s, ok := m.okSeries.Load(function); ok {
		return s.(*okSeries)
	}
	s := &okSeries{
		duration: m.duration.WithLabelValues(function, OutcomeOK),
		invokes:  m.invokes.WithLabelValues(function, OutcomeOK),
		reqBytes: m.reqBytes.WithLabelValues(function),
		resp:     m.respBytes.WithLabelValues(function),
		cpu:      m.cpu.WithLabelValues(function),
	}
	m.okSeries.Store(function, s)
	return s
}

// byFunction are the vecs with a function label.
func (m *Metrics) byFunction() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{m.duration.MetricVec, m.invokes.MetricVec, m.reqBytes.MetricVec, m.respBytes.MetricVec, m.cpu.MetricVec}
}

// ForgetFunction deletes every series labelled with function: call it
// when the function is removed, after its routes are gone. A request
// still running then counts into new series when it ends; Prune, run
// periodically, deletes those too.
func (m *Metrics) ForgetFunction(function string) {
	if m == nil {
		return
	}
	m.okMu.Lock()
	defer m.okMu.Unlock()
	m.okSeries.Delete(function)
	l := prometheus.Labels{"function": function}
	for _, v := range m.byFunction() {
		v.DeletePartialMatch(l)
	}
}

// Prune deletes the series of every function keep refuses (ForgetFunction
// for each): the node passes the functions its registry holds, so series
// of removed functions go even when a request ended after their removal.
// keep is called without locks held and should read the current state.
func (m *Metrics) Prune(keep func(function string) bool) {
	if m == nil {
		return
	}
	names := map[string]struct{}{}
	for _, v := range m.byFunction() {
		promlabel.Values(v, "function", names)
	}
	for name := range names {
		if !keep(name) {
			m.ForgetFunction(name)
		}
	}
}
