package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// refusedWrite asserts err is a write refused for want of a leader: it
// matches ErrUnavailable (503 + Retry-After at the API) and tells the
// caller to retry.
func refusedWrite(t *testing.T, who string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s accepted a write", who)
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("%s's write error %q: want ErrUnavailable saying to retry", who, err)
	}
}

// A leader cut off from the others (a minority of one) steps down and
// refuses writes, while the majority elects a new leader and accepts
// them; after healing, the old leader follows the new one and the write
// it refused never appears.
func TestClusterPartitionedLeader(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	old := h.waitLeader()
	h.Partition(old.i)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := old.store.Deploy(ctx, "x", putModule(t, old.store, "cut-off-leader"))
	cancel()
	refusedWrite(t, "the cut-off leader", err)
	if old.store.node.IsLeader() {
		t.Fatal("the cut-off leader still leads after its lease ran out")
	}
	nl := h.waitLeader(old)
	var f *hnode
	for _, n := range h.nodes {
		if n != old && n != nl {
			f = n
		}
	}
	// A write on the majority's follower reaches the new leader.
	v, err := h.deploy(f, "tiny", wat(t), storage.Route{Path: "/tiny/*"})
	if err != nil {
		t.Fatalf("the majority refused a write: %v", err)
	}
	if old.store.node.IsLeader() {
		t.Fatal("two leaders")
	}
	if _, ok := old.store.Function("tiny"); ok {
		t.Fatal("the cut-off node saw a write during the partition")
	}
	h.Heal()
	h.servesEverywhere("tiny", v.Version)
	if code, _ := h.get(old, "/tiny/x"); code != 200 {
		t.Fatalf("the old leader answered %d after healing", code)
	}
	for _, n := range h.nodes {
		if _, ok := n.store.Function("x"); ok {
			t.Fatalf("node %d: the write the cut-off leader refused appeared later", n.i)
		}
	}
}

// Rollback and remove sent to followers (a voter and a non-voter) are
// forwarded to the leader and take effect on every node.
func TestClusterRollbackAndRemoveForwarded(t *testing.T) {
	h := newHarness(t, false)
	for i := range 4 {
		h.Start(i < 3)
	}
	l := h.waitLeader()
	var voter, nonVoter *hnode
	for _, n := range h.nodes[:3] {
		if n != l {
			voter = n
			break
		}
	}
	nonVoter = h.nodes[3]
	v1, err := h.deploy(l, "tiny", wat(t), storage.Route{Path: "/one/*"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := h.deploy(l, "tiny", wat(t), storage.Route{Path: "/two/*"})
	if err != nil {
		t.Fatal(err)
	}
	h.servesEverywhere("tiny", v2.Version)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if voter.store.node.IsLeader() {
		t.Fatal("the follower became leader; the test would not forward")
	}
	got, err := voter.store.Rollback(ctx, "tiny", v1.Version)
	if err != nil || got.Version != v1.Version {
		t.Fatalf("rollback on a follower: %+v, %v", got, err)
	}
	h.servesEverywhere("tiny", v1.Version)
	for _, n := range h.nodes {
		if f, _ := n.store.Function("tiny"); f.Active != v1.Version {
			t.Fatalf("node %d: active version %d after the rollback, want %d", n.i, f.Active, v1.Version)
		}
		if code, _ := h.get(n, "/one/x"); code != 200 {
			t.Fatalf("node %d answered %d on the rolled-back version's route", n.i, code)
		}
		if code, _ := h.get(n, "/two/x"); code != 404 {
			t.Fatalf("node %d answered %d on the newer version's route after the rollback", n.i, code)
		}
	}

	if err := nonVoter.store.Remove(ctx, "tiny"); err != nil {
		t.Fatalf("remove on a non-voter: %v", err)
	}
	for _, n := range h.nodes {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d to drop the removed function", n.i), func() bool {
			_, ok := n.store.Function("tiny")
			code, _ := h.get(n, "/one/x")
			return !ok && code == 404
		})
	}
	if _, err := voter.store.Rollback(ctx, "tiny", v1.Version); !errors.Is(err, storage.ErrFunctionNotFound) {
		t.Fatalf("rollback of a removed function through a follower: %v; want ErrFunctionNotFound", err)
	}
}
