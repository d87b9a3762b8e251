package runtime

import (
	"errors"
	"time"

	"github.com/gojinn/gojinn/internal/promlabel"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the runtime's Prometheus series: what happens inside the
// engine, which the edge cannot see (pool waits, instantiations,
// compilations and their cache, evictions, resets). Invocation outcomes,
// durations, bytes and CPU time are the edge's (edge.Metrics), live
// sandbox counts are read at scrape time (cluster.Collector).
//
// Labels stay bounded: a function's name (functions are registered by
// operators) and values from fixed sets. Series of an unloaded function
// are deleted with it (Engine.Unload); so are, at the next
// Engine.PruneMetrics, those of a function that was never loaded (the work
// of a deploy's Engine.Check, a Load that failed for a new name) or that a
// call finishing after the unload counted into. A failed compile is
// counted with an empty function label (absent, once Prometheus has it):
// it is mostly a rejected deploy, of a function that may never exist,
// and the count must outlive the pruning. A nil *Metrics records nothing.
type Metrics struct {
	poolWait       *prometheus.HistogramVec
	instantiations *prometheus.CounterVec
	compilations   *prometheus.CounterVec
	compileTime    *prometheus.HistogramVec
	evictions      *prometheus.CounterVec
	retired        *prometheus.CounterVec
	idleCalls      *prometheus.CounterVec
	idleCPU        *prometheus.CounterVec
	resetTime      *prometheus.HistogramVec
	logLines       *prometheus.CounterVec
	logsDropped    *prometheus.CounterVec

	byFunction []*prometheus.MetricVec // the vecs with a function label
}

// Values of the source label of gojinn_compilations_total: where a
// function's compiled code came from when it was (re)loaded.
const (
	// SourceMemory: another function (or version) with the same module
	// bytes already had it in memory; nothing was compiled.
	SourceMemory = "memory"
	// SourceDisk: the prepared module was in the disk cache (CacheDir),
	// so only wazero's (disk-cached) compile ran.
	SourceDisk = "disk"
	// SourceCompiled: the module was checked, rewritten and compiled.
	SourceCompiled = "compiled"
)

// NewMetrics registers the runtime's series with reg. Give the result to
// one Engine through Config.Metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	fast := []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	m := &Metrics{
		poolWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gojinn_pool_wait_seconds", Help: "Time an invocation of a pooled function waited for a warm instance (or for a new one to be created), by function.",
			Buckets: fast,
		}, []string{"function"}),
		instantiations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_instantiations_total", Help: "Sandboxes (module instances) created, by function and outcome (ok, error).",
		}, []string{"function", "outcome"}),
		compilations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_compilations_total", Help: "Times a function's compiled code was loaded, by function, source (memory: shared with a loaded module, disk: prepared-module cache hit, compiled: cache miss) and outcome (ok; error, counted without the function: mostly rejected deploys).",
		}, []string{"function", "source", "outcome"}),
		compileTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gojinn_compile_seconds", Help: "Time to load a function's compiled code from the disk cache or by compiling, by source.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"source"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_evictions_total", Help: "Idle resources released by the janitor, by function and kind (instance: an idle pooled instance; compiled: a function's compiled code).",
		}, []string{"function", "kind"}),
		retired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_instances_retired_total", Help: "Pooled instances closed after a request instead of being reset, by function and reason (memory_grown: the request grew linear memory past the snapshot).",
		}, []string{"function", "reason"}),
		idleCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_idle_calls_total", Help: "Idle calls made to pooled instances between requests (gojinn_v1_idle, where Go guests collect garbage), by function and outcome (ok, error: the instance was discarded).",
		}, []string{"function", "outcome"}),
		idleCPU: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_idle_cpu_seconds_total", Help: "CPU time the guests' idle calls used, off any request's budget, by function.",
		}, []string{"function"}),
		resetTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gojinn_instance_reset_seconds", Help: "Time to return a pooled instance to its snapshot after a request, by strategy (cow, copy).",
			Buckets: fast,
		}, []string{"strategy"}),
		logLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_guest_log_lines_total", Help: "Guest log lines kept, by function and source (guest: gojinn_log_v1; stdout; stderr).",
		}, []string{"function", "source"}),
		logsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gojinn_guest_log_lines_dropped_total", Help: "Guest log lines dropped by the per-function rate limit (runtime.log_rate, runtime.log_burst), by function.",
		}, []string{"function"}),
	}
	m.byFunction = []*prometheus.MetricVec{m.poolWait.MetricVec, m.instantiations.MetricVec, m.compilations.MetricVec, m.evictions.MetricVec,
		m.retired.MetricVec, m.idleCalls.MetricVec, m.idleCPU.MetricVec, m.logLines.MetricVec, m.logsDropped.MetricVec}
	for _, c := range []prometheus.Collector{m.poolWait, m.instantiations, m.compilations, m.compileTime, m.evictions, m.retired, m.idleCalls, m.idleCPU, m.resetTime, m.logLines, m.logsDropped} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("runtime: registering metrics"), err)
		}
	}
	return m, nil
}

func outcomeLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// waited records how long an invocation of f waited for an instance.
func (f *Function) waited(d time.Duration) {
	m := f.engine.cfg.Metrics
	if m == nil {
		return
	}
	f.poolWaitOnce.Do(func() { f.poolWait = m.poolWait.WithLabelValues(f.spec.Name) })
	f.poolWait.Observe(d.Seconds())
}

func (m *Metrics) instantiated(function string, err error) {
	if m != nil {
		m.instantiations.WithLabelValues(function, outcomeLabel(err)).Inc()
	}
}

func (m *Metrics) compiled(function, source string, d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		function = "" // see Metrics
	}
	m.compilations.WithLabelValues(function, source, outcomeLabel(err)).Inc()
	if source != SourceMemory && err == nil {
		m.compileTime.WithLabelValues(source).Observe(d.Seconds())
	}
}

func (m *Metrics) evicted(function, kind string, n int) {
	if m != nil && n > 0 {
		m.evictions.WithLabelValues(function, kind).Add(float64(n))
	}
}

// retiredGrown counts a pooled instance closed instead of reset because
// its request grew linear memory (memory.grownBy).
func (m *Metrics) retiredGrown(function string) {
	if m != nil {
		m.retired.WithLabelValues(function, "memory_grown").Inc()
	}
}

// idle counts an idle call (Function.maintain) and the CPU time it used.
func (m *Metrics) idle(function string, cpu time.Duration, failed bool) {
	if m != nil {
		outcome := "ok"
		if failed {
			outcome = "error"
		}
		m.idleCalls.WithLabelValues(function, outcome).Inc()
		m.idleCPU.WithLabelValues(function).Add(cpu.Seconds())
	}
}

func (m *Metrics) reset(strategy Reset, d time.Duration) {
	if m != nil {
		m.resetTime.WithLabelValues(string(strategy)).Observe(d.Seconds())
	}
}

func (m *Metrics) logLine(function string, source LogSource) {
	if m != nil {
		m.logLines.WithLabelValues(function, string(source)).Inc()
	}
}

func (m *Metrics) logDropped(function string) {
	if m != nil {
		m.logsDropped.WithLabelValues(function).Inc()
	}
}

// forget deletes the series of an unloaded function.
func (m *Metrics) forget(function string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"function": function}
	for _, v := range m.byFunction {
		v.DeletePartialMatch(l)
	}
}

// PruneMetrics deletes the runtime series (Config.Metrics) of every
// function that keep refuses and that is not loaded (a loaded function
// keeps its series: it holds some of them, see Function.waited). The
// node passes the functions its registry holds, on every registry change
// and periodically: a deploy in progress keeps the series of its check
// and load, and what a rejected deploy's check counted, or a call that
// ended after its function was unloaded, goes. keep is called without
// the engine's locks held and should read the current state.
func (e *Engine) PruneMetrics(keep func(function string) bool) {
	m := e.cfg.Metrics
	if m == nil {
		return
	}
	names := map[string]struct{}{}
	for _, v := range m.byFunction {
		promlabel.Values(v, "function", names)
	}
	var drop []string
	for name := range names {
		if name != "" && !keep(name) { // "": failed compiles, kept for the node
			drop = append(drop, name)
		}
	}
	// Under the lock, so that none of them is loaded before its series go.
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, name := range drop {
		if _, loaded := e.fns[name]; !loaded {
			m.forget(name)
		}
	}
}
