// Package cluster is a node's control plane: a Raft node (one voter for
// now) whose state machine is the storage.Registry (Node, Store); the
// reconciler that makes the local runtime and the edge's route table serve
// what the registry says (Reconciler); and the token-protected admin HTTP
// API with its Go client (NewAPI, Client). Membership, peers and leader
// forwarding are not built yet. DESIGN.md explains the Raft node and the
// registry.
package cluster
