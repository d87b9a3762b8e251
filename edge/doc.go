// Package edge is a node's HTTP front: listeners for HTTP/1.1 and HTTP/2
// over TLS and HTTP/3 over QUIC on one port, plus plain HTTP (Server); TLS
// certificates from an internal CA, ACME through CertMagic, or files (TLS);
// the router that maps host, path and method to a function (Router); and
// the handler that turns a request into a guest-protocol invocation and its
// errors into HTTP statuses (Handler). It knows nothing of Raft; DESIGN.md
// says why it is built this way.
package edge
