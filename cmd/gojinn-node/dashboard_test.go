package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// dashboardPath is the Grafana dashboard shipped for gojinn-node.
var dashboardPath = filepath.Join("..", "..", "docs", "grafana-dashboard.json")

// recordingRegisterer registers with a real registry (so clashes fail as
// they would in the node) and keeps the collectors, whose descriptions
// the test reads: a registry cannot be asked for its descriptions, and
// gathering shows no series of a vector that has no children yet.
type recordingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// series is what the code registers under one metric name.
type series struct {
	labels    map[string]bool
	histogram bool
}

var (
	descNameRE   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabelsRE = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// registeredSeries builds the collectors node.go registers on /metrics
// and returns every metric name they describe, with its labels.
func registeredSeries(t *testing.T) map[string]series {
	t.Helper()
	reg := &recordingRegisterer{Registerer: prometheus.NewRegistry()}
	// As startNode does; Describe needs no node, agent or engine.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		cluster.NewCollector(nil, nil, nil))
	reg.MustRegister(nodeGauges(&node{})...)
	if _, err := edge.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	out := map[string]series{}
	defer func() {
		for name := range constHistograms {
			s, ok := out[name]
			if !ok {
				t.Errorf("constHistograms names %s, which nothing registers", name)
			}
			s.histogram = true
			out[name] = s
		}
	}()
	for _, c := range reg.collectors {
		_, hist := c.(*prometheus.HistogramVec)
		if _, ok := c.(prometheus.Histogram); ok {
			hist = true
		}
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			m := descNameRE.FindStringSubmatch(s)
			if m == nil {
				t.Fatalf("cannot read the metric name from %s (did client_golang change Desc.String?)", s)
			}
			labels := map[string]bool{}
			if l := descLabelsRE.FindStringSubmatch(s); l != nil && l[1] != "" {
				for _, name := range strings.Split(l[1], ",") {
					name = strings.TrimSuffix(strings.TrimPrefix(name, "c("), ")")
					labels[name] = true
				}
			}
			out[m[1]] = series{labels: labels, histogram: hist}
		}
	}
	return out
}

// constHistograms are histograms that a collector builds at scrape time
// (prometheus.MustNewConstHistogram): a Desc does not say its type.
var constHistograms = map[string]bool{"gojinn_kv_batch_size": true}

// The dashboard's JSON, as much of it as the test reads.
type dashPanel struct {
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *dashDS        `json:"datasource"`
	Targets    []dashTarget   `json:"targets"`
	Panels     []dashPanel    `json:"panels"` // a collapsed row's
	GridPos    map[string]int `json:"gridPos"`
}

type dashDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashTarget struct {
	Expr         string  `json:"expr"`
	LegendFormat string  `json:"legendFormat"`
	Datasource   *dashDS `json:"datasource"`
}

type dashboard struct {
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *dashDS         `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

// metricPrefixes are the namespaces of the series a node exports: its
// own and those of the Go and process collectors.
var (
	metricRE    = regexp.MustCompile(`\b(?:gojinn|go|process)_[a-zA-Z0-9_:]*`)
	stringRE    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	groupingRE  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	selectorRE  = regexp.MustCompile(`\{([^}]*)\}`)
	matcherRE   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	legendVarRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// targetLabels are attached by Prometheus at scrape time.
var targetLabels = []string{"instance", "job"}

// resolve maps a series name in a query to the registered metric it
// belongs to: histogram series end in _bucket, _sum and _count.
func resolve(reg map[string]series, name string) (string, bool) {
	if _, ok := reg[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && reg[base].histogram {
			return base, true
		}
	}
	return "", false
}

// checkQuery fails t unless every metric q names is registered and every
// label it groups by, matches on or shows in legend is one those metrics
// carry (or a target label, or le on a histogram's buckets).
func checkQuery(t *testing.T, reg map[string]series, where, q, legend string, used map[string]bool) {
	t.Helper()
	bare := stringRE.ReplaceAllString(q, `""`)
	names := metricRE.FindAllString(bare, -1)
	if len(names) == 0 {
		t.Errorf("%s: %q names no gojinn, go or process series", where, q)
		return
	}
	allowed := map[string]bool{}
	for _, l := range targetLabels {
		allowed[l] = true
	}
	for _, n := range names {
		base, ok := resolve(reg, n)
		if !ok {
			t.Errorf("%s: %s is not registered by the node (edge/metrics.go, runtime/metrics.go, cluster/metrics.go, Go and process collectors)", where, n)
			continue
		}
		used[base] = true
		for l := range reg[base].labels {
			allowed[l] = true
		}
		if strings.HasSuffix(n, "_bucket") {
			allowed["le"] = true
		}
	}
	var labels []string
	for _, m := range groupingRE.FindAllStringSubmatch(bare, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	for _, sel := range selectorRE.FindAllStringSubmatch(bare, -1) {
		for _, m := range matcherRE.FindAllStringSubmatch(sel[1], -1) {
			labels = append(labels, m[1])
		}
	}
	for _, m := range legendVarRE.FindAllStringSubmatch(legend, -1) {
		labels = append(labels, m[1])
	}
	for _, l := range labels {
		if !allowed[l] {
			t.Errorf("%s: label %q is not a label of %v in %q", where, l, names, q)
		}
	}
}

// TestDashboard keeps docs/grafana-dashboard.json in step with the code:
// every series and label a panel or variable queries is one the node
// registers, every gojinn series has a panel, and every panel reads the
// dashboard's Prometheus data source variable.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, schemaVersion %d: want a uid and schemaVersion 36 or later", d.UID, d.SchemaVersion)
	}
	reg := registeredSeries(t)
	used := map[string]bool{}

	const dsRef = "${datasource}"
	hasDS := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			if json.Unmarshal(v.Query, &q) == nil && q == "prometheus" && v.Name == "datasource" {
				hasDS = true
			}
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s: query: %v", v.Name, err)
			}
			if v.Datasource == nil || v.Datasource.UID != dsRef {
				t.Errorf("variable %s: datasource %+v, want uid %s", v.Name, v.Datasource, dsRef)
			}
			checkQuery(t, reg, "variable "+v.Name, q.Query, "", used)
		}
	}
	if !hasDS {
		t.Error(`no data source variable named "datasource" of type prometheus`)
	}

	var panels []dashPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	exprs := 0
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		where := "panel " + p.Title
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != dsRef {
			t.Errorf("%s: datasource %+v, want prometheus %s", where, p.Datasource, dsRef)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != dsRef {
				t.Errorf("%s: a query's datasource is %+v, want %s", where, tg.Datasource, dsRef)
			}
			checkQuery(t, reg, where, tg.Expr, tg.LegendFormat, used)
			exprs++
		}
	}
	if exprs == 0 {
		t.Fatal("the dashboard has no queries")
	}

	var missing []string
	for name := range reg {
		if strings.HasPrefix(name, "gojinn_") && !used[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("series the node registers but no panel shows: %v; add them to %s", missing, dashboardPath)
	}
}
