package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// adminClient serves a's admin API (members and force-leave wired as
// gojinn-node wires them) and returns a client for it.
func adminClient(t *testing.T, a *Agent) *Client {
	t.Helper()
	const token = "force-leave-test-token"
	h, err := NewAPI(APIConfig{
		Registry: a.Store(), Blobs: a.Store().Blobs(), TokenHash: sha256.Sum256([]byte(token)),
		Members: a.MemberInfos, ForceLeave: a.ForceLeave,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return NewClient(srv.URL, token, srv.Client())
}

// noAutopilotRemoval keeps the autopilot from removing a silent server by
// itself during the test, so only a force-leave does.
func noAutopilotRemoval(c *AgentConfig) { c.Autopilot.DeadServerTimeout = time.Hour }

// wantAPIError checks err is the API's answer with status and code, and
// returns its message.
func wantAPIError(t *testing.T, what string, err error, status int, code string) string {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
		t.Fatalf("%s: %v (%#v), want %d %s", what, err, ae, status, code)
	}
	return ae.Message
}

// A voter killed without leaving (its machine lost for good) is forced
// out from a surviving follower: the follower forwards the Raft change to
// the leader, both survivors drop it from the Raft configuration and from
// their members lists, and they still commit writes. Before that, a live
// member and an unknown name are refused.
func TestForceLeaveDeadVoter(t *testing.T) {
	first := newRestartable(t, noAutopilotRemoval)
	first.mustStart()
	join := func(c *AgentConfig) { c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated }
	second, third := newRestartable(t, noAutopilotRemoval), newRestartable(t, noAutopilotRemoval)
	second.mustStart(join)
	third.mustStart(join)
	all := []*restartable{first, second, third}
	waitFor(t, 30*time.Second, "3 voters, 3 alive members everywhere", func() bool {
		for _, a := range all {
			if len(voterIDs(t, a.Agent)) != 3 || aliveCount(a.Agent) != 3 {
				return false
			}
		}
		return true
	})
	leader := leaderAgent(t, []*Agent{first.Agent, second.Agent, third.Agent})
	var followers []*restartable
	for _, a := range all {
		if a.Agent != leader {
			followers = append(followers, a)
		}
	}
	victim, via := followers[0], followers[1]
	victimID := victim.nodeID()
	survivors := []*Agent{leader, via.Agent}
	api := adminClient(t, via.Agent)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Refusals: a live member (the leader), an unknown name.
	_, err := api.RemoveMember(ctx, leader.Store().Node().ID())
	msg := wantAPIError(t, "force-leave of the live leader", err, http.StatusConflict, CodeMemberAlive)
	if !strings.Contains(msg, "is alive") || !strings.Contains(msg, "leave_on_shutdown") {
		t.Errorf("the refusal does not say what was wrong and what to do: %s", msg)
	}
	_, err = api.RemoveMember(ctx, "no-such-node")
	wantAPIError(t, "force-leave of an unknown name", err, http.StatusNotFound, CodeMemberNotFound)

	// The victim dies without leaving.
	victim.close()
	waitFor(t, 15*time.Second, "the survivors to see the victim dead", func() bool {
		for _, a := range survivors {
			if m, ok := memberNamed(a.Members(), victimID); !ok || m.Status != StatusDead {
				return false
			}
		}
		return true
	})
	if !inConfigIDs(t, leader, victimID) {
		t.Fatal("the victim left the Raft configuration before the force-leave; the test needs it there")
	}

	res, err := api.RemoveMember(ctx, victimID)
	if err != nil {
		t.Fatalf("force-leave of the dead voter: %v", err)
	}
	if !res.RemovedFromRaft || res.RaftRole != "voter" || res.Status != string(StatusDead) || res.Name != victimID {
		t.Fatalf("force-leave answered %+v", res)
	}
	for _, a := range survivors {
		waitFor(t, 10*time.Second, "the survivors' Raft configuration and members without the victim", func() bool {
			if inConfigIDs(t, a, victimID) || len(servers(t, a)) != 2 {
				return false
			}
			for _, m := range a.MemberInfos() {
				if m.Name == victimID {
					return false
				}
			}
			return true
		})
	}
	list, err := api.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.Name == victimID {
			t.Fatalf("GET /v1/members still lists the force-left node: %+v", list)
		}
	}
	// Two voters of two commit, through either survivor.
	for _, a := range survivors {
		if _, err := a.Store().KVPut(ctx, "fl", "after", []byte(a.Store().Node().ID()), KVWriteOptions{}); err != nil {
			t.Fatalf("a write through %s after the force-leave: %v", a.Store().Node().ID(), err)
		}
	}
	// Gone now: a second force-leave finds nothing.
	_, err = api.RemoveMember(ctx, victimID)
	wantAPIError(t, "a second force-leave", err, http.StatusNotFound, CodeMemberNotFound)
}

// With one voter (max_voters 1), a dead non-voter is forced out of Raft
// by the leader itself; the dead only voter cannot be: 409 last_voter.
func TestForceLeaveRefusesTheLastVoter(t *testing.T) {
	oneVoter := func(c *AgentConfig) {
		noAutopilotRemoval(c)
		c.Autopilot.MaxVoters = 1
	}
	first := newRestartable(t, oneVoter)
	first.mustStart()
	join := func(c *AgentConfig) { c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated }
	second, third := newRestartable(t, oneVoter), newRestartable(t, oneVoter)
	second.mustStart(join)
	third.mustStart(join)
	waitFor(t, 30*time.Second, "1 voter, 3 servers, 3 alive members", func() bool {
		return len(voterIDs(t, first.Agent)) == 1 && len(servers(t, first.Agent)) == 3 &&
			aliveCount(first.Agent) == 3 && aliveCount(second.Agent) == 3
	})
	if !first.Store().Node().IsLeader() {
		t.Fatal("the bootstrap node is not the only voter and leader")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A dead non-voter, forced out through the leader's own API.
	thirdID := third.nodeID()
	third.close()
	waitFor(t, 15*time.Second, "the leader to see the non-voter dead", func() bool {
		m, ok := memberNamed(first.Members(), thirdID)
		return ok && m.Status == StatusDead
	})
	res, err := adminClient(t, first.Agent).RemoveMember(ctx, thirdID)
	if err != nil || !res.RemovedFromRaft || res.RaftRole != "non-voter" {
		t.Fatalf("force-leave of the dead non-voter = %+v, %v", res, err)
	}
	if inConfigIDs(t, first.Agent, thirdID) {
		t.Fatal("the non-voter is still in the Raft configuration")
	}

	// The only voter dies: the survivor refuses to remove it.
	firstID := first.nodeID()
	first.close()
	waitFor(t, 15*time.Second, "the survivor to see the only voter dead", func() bool {
		m, ok := memberNamed(second.Members(), firstID)
		return ok && m.Status == StatusDead
	})
	_, err = adminClient(t, second.Agent).RemoveMember(ctx, firstID)
	msg := wantAPIError(t, "force-leave of the only voter", err, http.StatusConflict, CodeLastVoter)
	if !strings.Contains(msg, "only voter") || !strings.Contains(msg, "restore a backup") {
		t.Errorf("the refusal does not say what was wrong and what to do: %s", msg)
	}
	if !inConfigIDs(t, second.Agent, firstID) {
		t.Fatal("the refused force-leave changed the Raft configuration")
	}
}

// aliveCount is how many members a sees alive.
func aliveCount(a *Agent) int {
	n := 0
	for _, m := range a.Members() {
		if m.Status == StatusAlive {
			n++
		}
	}
	return n
}

// inConfigIDs reports whether a's Raft configuration lists id.
func inConfigIDs(t *testing.T, a *Agent, id string) bool {
	for _, s := range servers(t, a) {
		if s.ID == id {
			return true
		}
	}
	return false
}

// DELETE /v1/members/{name} takes a node ID or, when one member alone has
// it, a node_name (the NAME column of `gojinn-node members`; only the
// NODE column's ID worked before).
func TestMemberIDFromNodeName(t *testing.T) {
	members := []MemberInfo{
		{Name: "8f2c1a", NodeName: "n1"},
		{Name: "77aa01", NodeName: "n2"},
		{Name: "0b3c9d", NodeName: "twin"},
		{Name: "5e6f70", NodeName: "twin"},
		{Name: "n3", NodeName: "n9"},
		{Name: "c0ffee", NodeName: "n3"},
	}
	for name, want := range map[string]string{
		"8f2c1a": "8f2c1a", // an ID
		"n2":     "77aa01", // a unique node_name
		"twin":   "twin",   // two members have it: not resolved
		"n3":     "n3",     // an ID wins over another member's node_name
		"nobody": "nobody",
	} {
		if got := memberID(members, name); got != want {
			t.Errorf("memberID(%q) = %q, want %q", name, got, want)
		}
	}
}
