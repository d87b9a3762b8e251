package cluster

import "time"

// Status describes a node for `gojinn-node status` and GET /v1/status.
type Status struct {
	// NodeID is the node's stable Raft server ID.
	NodeID string `json:"node_id"`
	// Version is the gojinn-node build version.
	Version string `json:"version"`
	// RaftState is "Leader", "Follower", "Candidate" or "Shutdown".
	RaftState string `json:"raft_state"`
	// Leader is the leader's Raft address, empty when there is none.
	Leader string `json:"leader"`
	// Term, CommitIndex and AppliedIndex come from Raft.
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// Voters is the number of voting servers in the configuration.
	Voters int `json:"voters"`
	// Functions is the number of registered functions.
	Functions int `json:"functions"`
	// StartedAt is when the node started.
	StartedAt time.Time `json:"started_at"`
}
