package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Start failures the operating system refused come with what to do.
func TestStartHint(t *testing.T) {
	// A port in use, for real.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = net.Listen("tcp", ln.Addr().String())
	if h := startHint(fmt.Errorf("admin api: listen on %s: %w", ln.Addr(), err)); !strings.Contains(h, "another process listens there") {
		t.Errorf("address in use (%v): hint %q", err, h)
	}
	// A directory that may not be created: a read-only parent, unless
	// root (who may write anywhere) runs the test; the error is then built
	// as the kernel reports it to other users.
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o500); err != nil {
		t.Fatal(err)
	}
	err = os.MkdirAll(filepath.Join(parent, "data"), 0o700)
	if err == nil {
		err = &os.PathError{Op: "mkdir", Path: filepath.Join(parent, "data"), Err: os.ErrPermission}
	}
	if h := startHint(fmt.Errorf("data directory: %w", err)); !strings.Contains(h, "install -d") {
		t.Errorf("data directory not writable (%v): hint %q", err, h)
	}
	// A privileged port, as the kernel refuses it to a user without the
	// capability (root binds it, so the error is built).
	eacces := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errEACCES)}
	if h := startHint(fmt.Errorf("edge: listen on https address :443: %w", eacces)); !strings.Contains(h, "CAP_NET_BIND_SERVICE") {
		t.Errorf("privileged port: hint %q", h)
	}
	if h := startHint(fmt.Errorf("something else")); h != "" {
		t.Errorf("unrelated error: hint %q, want none", h)
	}
}

var errEACCES = syscall.EACCES
