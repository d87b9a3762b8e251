// Package storage owns the replicated data model: the function registry (a
// Raft state machine of immutable snapshots) and the content-addressed store
// of module blobs. It does not talk to the network; the cluster package
// drives it through Raft.
package storage
