package main

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// startHint says what to do about a start failure the operating system
// refused, which the error alone does not: a port below 1024 without the
// capability to bind it, a port already taken, a data directory the user
// may not create. "" when it has nothing to add.
func startHint(err error) string {
	var op *net.OpError
	isListen := errors.As(err, &op) && op.Op == "listen"
	switch {
	case isListen && errors.Is(err, syscall.EACCES):
		return "ports below 1024 need root or the CAP_NET_BIND_SERVICE capability: under systemd, AmbientCapabilities=CAP_NET_BIND_SERVICE (see deploy/systemd/gojinn-node.service); or listen on a port from 1024 up"
	case isListen && errors.Is(err, syscall.EADDRINUSE):
		return "another process listens there (find it with `ss -ltnup`), or an earlier gojinn-node is still stopping; choose another address or stop that process"
	case errors.Is(err, os.ErrPermission):
		return "the user the node runs as may not use that path: create the data directory first, owned by that user (`install -d -o gojinn -g gojinn -m 700 /var/lib/gojinn`), or set data_dir (--data) to a directory it owns; TLS files must be readable by it"
	}
	return ""
}
