// Package cluster is a node's control plane: a Raft node whose state
// machine is the storage.Registry (Node, Store), with writes forwarded to
// the leader and KV reads local or linearizable from any node; the agent
// that joins nodes through gossip (memberlist) and an mTLS peer API
// (Agent); the reconciler that makes the local runtime and the edge's
// route table serve what the registry says (Reconciler); and the
// token-protected admin HTTP API with its Go client (NewAPI, Client).
// DESIGN.md explains each part.
package cluster
