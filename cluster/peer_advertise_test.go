package cluster

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A peer API listening on every address advertises the host Raft
// advertises, with its own port: "[::]:7948" (what the default
// peer_listen ":7948" used to advertise) cannot be dialled by other
// nodes, whose forwarded writes, module fetches and readiness checks then
// went to themselves.
func TestPeerAdvertiseFromRaftHost(t *testing.T) {
	for _, tc := range []struct {
		listen, raftBind, raftAdv, want, err string
	}{
		{listen: "[::]:7948", raftBind: "10.0.0.1:7947", want: "10.0.0.1:7948"},
		{listen: "0.0.0.0:7948", raftBind: "0.0.0.0:7947", raftAdv: "203.0.113.7:7947", want: "203.0.113.7:7948"},
		{listen: "[::]:7948", raftBind: "[2001:db8::1]:7947", want: "[2001:db8::1]:7948"},
		{listen: "10.0.0.2:7948", raftBind: "10.0.0.1:7947", want: "10.0.0.2:7948"},
		{listen: "[::]:7948", raftBind: "0.0.0.0:7947", err: "set the peer API's advertised address (gojinn-node: cluster.peer_advertise or --advertise)"},
		{listen: "[::]:7948", raftBind: "node1.example:7947", err: "cannot be derived from the Raft address"},
	} {
		got, err := peerAdvertise(tc.listen, Config{RaftBind: tc.raftBind, RaftAdvertise: tc.raftAdv})
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s with raft %s/%s: %q, %v; want an error with %q", tc.listen, tc.raftBind, tc.raftAdv, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s with raft %s/%s: %q, %v; want %q", tc.listen, tc.raftBind, tc.raftAdv, got, err, tc.want)
		}
	}

	// An agent whose peer API listens on ":0" advertises Raft's host.
	dir := t.TempDir()
	cfg := agentConfigFor(t, dir)
	cfg.PeerListen = ":0"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	host, port, err := net.SplitHostPort(a.PeerAddr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("the agent advertises its peer API as %q, want 127.0.0.1 (Raft's host) and its port", a.PeerAddr())
	}
	if info, err := a.client.Info(ctx, "https://"+a.PeerAddr()); err != nil || info.NodeID != a.store.node.ID() {
		t.Fatalf("the advertised peer API %s answers %+v, %v", a.PeerAddr(), info, err)
	}
}
