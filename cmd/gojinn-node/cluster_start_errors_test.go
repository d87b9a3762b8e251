package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

// A cluster node that cannot start says why once: the agent's errors do
// not carry the "cluster: " the node puts before them (they read
// "cluster: cluster: ..." before). Each case fails inside the cluster
// agent, after the configuration was accepted.
func TestClusterStartErrorsSayClusterOnce(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// A well-formed token of some cluster, for a seed nobody runs.
	ca, _, err := cluster.BootstrapIdentity(t.TempDir(), "seed", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := cluster.NewJoinToken(ca)
	for _, tc := range []struct {
		name    string
		cluster string            // the [cluster] table
		prepare func(data string) // edits the data directory first
		want    string
	}{
		{
			name:    "peer port in use",
			cluster: "peer_listen = \"" + busy.Addr().String() + "\"\n",
			want:    "peer API listen on " + busy.Addr().String(),
		},
		{
			name:    "unreachable seed",
			cluster: "peer_listen = \"127.0.0.1:0\"\njoin = [\"127.0.0.1:1\"]\njoin_retry_max = 1\njoin_token = \"" + tok.Encode() + "\"\n",
			want:    "no seed enrolled this node",
		},
		{
			name:    "enrolled without a certificate",
			cluster: "peer_listen = \"127.0.0.1:0\"\n",
			prepare: func(data string) {
				if err := os.MkdirAll(filepath.Join(data, "cluster"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(data, "cluster", "enrolled"), []byte("enrolled\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "enrolled into an existing cluster",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := writeNodeConfig(t, dir, "", "[cluster]\nenabled = true\ngossip_bind = \"127.0.0.1:0\"\nprofile = \"local\"\n"+tc.cluster)
			if tc.prepare != nil {
				tc.prepare(filepath.Join(dir, "data"))
			}
			var out bytes.Buffer
			errb := &lockedBuffer{} // gossip may log after a failed start returned
			code := runEnv(context.Background(), []string{"agent", "--config", conf}, &out, errb, func(string) string { return "" })
			msg := errb.String()
			if code != 1 || !strings.Contains(msg, tc.want) {
				t.Fatalf("exit %d, want 1 with %q in:\n%s", code, tc.want, msg)
			}
			if strings.Contains(msg, "cluster: cluster:") {
				t.Fatalf("the start error says \"cluster: cluster:\":\n%s", msg)
			}
			if !strings.Contains(msg, `"cluster: `) {
				t.Fatalf("the start error no longer names the cluster part at all:\n%s", msg)
			}
		})
	}
}

// A cluster member's data directory started without cluster mode (a
// restart that forgot --cluster or cluster.enabled) is refused: the node
// ran Raft alone over plain TCP, elected a leader with other such nodes
// and took writes the cluster never saw. agent and dev both refuse it.
func TestClusterDataDirWithoutClusterModeRefused(t *testing.T) {
	for _, mark := range []string{"node certificate", "enrolled mark"} {
		t.Run(mark, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			cdir := filepath.Join(data, "cluster")
			if mark == "node certificate" {
				if _, _, err := cluster.BootstrapIdentity(cdir, "n1", nil, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.MkdirAll(cdir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(cdir, "enrolled"), []byte("enrolled\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			conf := writeNodeConfig(t, dir, "", "")
			for _, args := range [][]string{{"agent", "--config", conf}, {"dev", "--data", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--admin", "127.0.0.1:0"}} {
				var out bytes.Buffer
				errb := &lockedBuffer{}
				// A node that starts runs until the context ends.
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				code := runEnv(ctx, args, &out, errb, func(string) string { return "" })
				cancel()
				msg := errb.String()
				if code != 1 || !strings.Contains(msg, "this data directory belongs to a cluster member") || !strings.Contains(msg, "--cluster") {
					t.Fatalf("%s: exit %d, want 1 saying the data directory belongs to a cluster member and to start it with --cluster:\n%s", args[0], code, msg)
				}
				if _, err := os.Stat(filepath.Join(data, "raft")); err == nil {
					t.Fatalf("%s: the refused start opened Raft in the member's data directory", args[0])
				}
			}
		})
	}
}
