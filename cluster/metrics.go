package cluster

import (
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the node's Raft, membership and runtime state as
// Prometheus gauges, read at scrape time: no goroutine, no bookkeeping on
// the request path beyond the KV counters (kv_metrics.go: atomic adds in
// the Store's KV methods and the apply batcher).
type Collector struct {
	node   *Node
	agent  *Agent          // nil without a cluster
	engine *runtime.Engine // nil: no runtime series

	raftState, term, commit, applied, lastContact, members, sandboxes, idle, inflight, functions *prometheus.Desc
	kv                                                                                           kvDescs
}

// NewCollector returns a collector for node (and agent's membership, and
// engine's functions, when set).
func NewCollector(node *Node, agent *Agent, engine *runtime.Engine) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &Collector{
		node: node, agent: agent, engine: engine,
		raftState:   d("gojinn_raft_state", "1 for the node's current Raft state.", "state"),
		term:        d("gojinn_raft_term", "The node's current Raft term."),
		commit:      d("gojinn_raft_commit_index", "The index of the last committed Raft entry."),
		applied:     d("gojinn_raft_applied_index", "The index of the last Raft entry applied to this node's state."),
		lastContact: d("gojinn_raft_last_contact_seconds", "Seconds since a follower last heard from the leader (0 on the leader)."),
		members:     d("gojinn_cluster_members", "Gossip members by status.", "status"),
		sandboxes:   d("gojinn_active_sandboxes", "Live instances of a function (pooled: idle and busy; isolated: busy).", "function"),
		idle:        d("gojinn_idle_sandboxes", "Idle pooled instances of a function.", "function"),
		inflight:    d("gojinn_inflight_invocations", "Invocations of a function running now.", "function"),
		functions:   d("gojinn_functions_loaded", "Functions loaded in this node's runtime."),
		kv:          newKVDescs(),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.raftState, c.term, c.commit, c.applied, c.lastContact, c.members, c.sandboxes, c.idle, c.inflight, c.functions, c.kv.ops, c.kv.batch} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	r := c.node.raft
	state := r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		g(c.raftState, v, s.String())
	}
	g(c.term, float64(r.CurrentTerm()))
	g(c.commit, float64(r.CommitIndex()))
	g(c.applied, float64(r.AppliedIndex()))
	last := 0.0
	if state != raft.Leader {
		if lc := r.LastContact(); !lc.IsZero() {
			last = time.Since(lc).Seconds()
		}
	}
	g(c.lastContact, last)
	c.node.kvMetrics.collect(c.kv, ch)
	if c.agent != nil {
		counts := map[MemberStatus]int{StatusAlive: 0, StatusLeaving: 0, StatusLeft: 0, StatusDead: 0}
		for _, m := range c.agent.Members() {
			counts[m.Status]++
		}
		for s, n := range counts {
			g(c.members, float64(n), string(s))
		}
	}
	if c.engine != nil {
		fns := c.engine.Functions()
		g(c.functions, float64(len(fns)))
		for _, f := range fns {
			st := f.Stats()
			live := float64(st.Instances)
			if f.Mode() == runtime.ModeIsolated {
				live = float64(st.InFlight) // one fresh sandbox per running invocation
			}
			g(c.sandboxes, live, f.Name())
			g(c.idle, float64(st.Idle), f.Name())
			g(c.inflight, float64(st.InFlight), f.Name())
		}
	}
}
