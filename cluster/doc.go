// Package cluster will own membership (memberlist), the Raft node and FSM,
// voter management, leader forwarding and the cluster API. It is empty until
// the cluster issue; the runtime and edge do not depend on it.
package cluster
