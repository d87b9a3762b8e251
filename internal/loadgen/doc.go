// Package loadgen is a bounded, closed-loop HTTP load generator with
// baseline hello-world servers (net/http over HTTP/1.1, bare quic-go over
// HTTP/3) that benchmarks compare the edge against on loopback.
package loadgen
