// Package storage owns the replicated data model: the function registry (a
// Raft state machine of immutable snapshots) and the content-addressed store
// of module blobs on local disk. It does not talk to the network: the
// cluster package applies registry commands through Raft and writes blobs
// directly.
package storage
