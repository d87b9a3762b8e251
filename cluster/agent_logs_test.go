package cluster

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// Three agents over real sockets, each holding the lines of the
// invocations it ran: GET /v1/functions/{name}/logs?nodes=all on one of
// them returns every node's lines, fetched over the peer API (mutual
// TLS), merged by time, each naming its node; limit and trace_id apply
// across nodes. Without nodes=all the answer stays this node's.
func TestAgentsClusterLogs(t *testing.T) {
	first, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	seed := []string{first.PeerAddr()}
	var agents = []*testAgent{first}
	for range 2 {
		a, err := startTestAgent(t, t.TempDir(), seed, first.JoinTokenCreated)
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	waitFor(t, 30*time.Second, "3 alive members with known peer API addresses", func() bool {
		alive := 0
		for _, m := range first.Members() {
			if _, ok := first.peers.PeerURL(m.Name); ok && m.Status == StatusAlive {
				alive++
			}
		}
		return alive == 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := storage.Spec{Mode: storage.ModePooled}
	spec.SHA256, spec.Size = putBlob(t, first.Store(), wat(t))
	if _, err := first.Store().Deploy(ctx, "fn", spec); err != nil {
		t.Fatal(err)
	}
	// Line i runs on node i%3, a millisecond after line i-1.
	base := time.Now().UTC().Add(-time.Minute)
	ids := make([]string, len(agents))
	for i, a := range agents {
		ids[i] = a.Store().Node().ID()
	}
	for i := range 9 {
		rec := logRec("fn", i, traceA)
		if i >= 6 {
			rec.TraceID = traceB
		}
		rec.Time = base.Add(time.Duration(i) * time.Millisecond)
		agents[i%3].logs.Log(rec)
	}

	handler, err := NewAPI(APIConfig{
		Registry: first.Store(), Blobs: first.Store().Blobs(), TokenHash: HashToken(testToken),
		Logs: first.logs, NodeID: ids[0], PeerLogs: first.PeerLogs,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	c := NewClient(srv.URL, testToken, srv.Client())

	lines, err := collect(t, c, "fn", LogOptions{AllNodes: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msgs(lines), "line 0,line 1,line 2,line 3,line 4,line 5,line 6,line 7,line 8"; got != want {
		t.Fatalf("nodes=all: %s, want %s", got, want)
	}
	for i, l := range lines {
		if l.Node != ids[i%3] {
			t.Errorf("%s: node %q, want %q (node %d)", l.Message, l.Node, ids[i%3], i%3)
		}
	}
	if lines, err = collect(t, c, "fn", LogOptions{AllNodes: true, Limit: 4}); err != nil || msgs(lines) != "line 5,line 6,line 7,line 8" {
		t.Errorf("nodes=all, limit 4: %s (%v), want the newest four of all nodes", msgs(lines), err)
	}
	if lines, err = collect(t, c, "fn", LogOptions{AllNodes: true, TraceID: traceB}); err != nil || msgs(lines) != "line 6,line 7,line 8" {
		t.Errorf("nodes=all, trace %s: %s (%v)", traceB, msgs(lines), err)
	}
	if lines, err = collect(t, c, "fn", LogOptions{}); err != nil || msgs(lines) != "line 0,line 3,line 6" || lines[0].Node != "" {
		t.Errorf("this node only: %s (%v)", msgs(lines), err)
	}
	if _, err := collect(t, c, "fn", LogOptions{AllNodes: true, Follow: true}); err == nil || !strings.Contains(err.Error(), "nodes=all cannot follow") {
		t.Errorf("nodes=all with follow: %v, want a 400 saying they do not combine", err)
	}
	if _, err := collect(t, c, "nothing", LogOptions{AllNodes: true}); !errors.Is(err, storage.ErrFunctionNotFound) {
		t.Errorf("nodes=all for a function nobody knows: %v, want not found", err)
	}
}

// A node that does not answer leaves a note (source node) before the
// merged lines, naming it and why.
func TestAPIClusterLogsNote(t *testing.T) {
	h, _ := newLogHarness(t, func(c *APIConfig) {
		c.NodeID = "n1"
		c.PeerLogs = func(_ context.Context, name string, _ url.Values) []NodeLogs {
			return []NodeLogs{
				{Node: "n2", Lines: []runtime.LogRecord{logRec(name, 9, "")}},
				{Node: "n3", Err: errors.New("connection refused")},
			}
		}
	})
	lines, err := collect(t, h.client, "fn", LogOptions{AllNodes: true, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || lines[0].Source != LogSourceNode || lines[0].Node != "n3" ||
		!strings.Contains(lines[0].Message, "node n3 did not answer") || !strings.Contains(lines[0].Message, "connection refused") {
		t.Fatalf("want a note about n3 first: %+v", lines)
	}
	if msgs(lines[1:]) != "line 5,line 9" || lines[1].Node != "n1" || lines[2].Node != "n2" {
		t.Errorf("merged lines: %s (%q, %q), want line 5 of n1 then line 9 of n2", msgs(lines[1:]), lines[1].Node, lines[2].Node)
	}
}
