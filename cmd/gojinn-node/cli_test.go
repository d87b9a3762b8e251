package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// `functions show` names every limit a deploy set, sizes exactly (8500
// KiB is not "8 MiB"), in the form the deploy flags read back.
func TestLimitsText(t *testing.T) {
	l := storage.Limits{
		MemoryBytes: 8500 << 10, Timeout: storage.Duration(5 * time.Second), CPUTime: storage.Duration(time.Second),
		MaxRequestBody: 20 << 20, MaxResponseBody: 1000, MaxInstances: 3, QueueTimeout: storage.Duration(2 * time.Second),
	}
	got := limitsText(l)
	want := "memory 8500 KiB, timeout 5s, cpu 1s, request body 20 MiB, response body 1000 B, instances 3, queue 2s"
	if got != want {
		t.Fatalf("limitsText = %q, want %q", got, want)
	}
	if got := limitsText(storage.Limits{}); got != "defaults" {
		t.Fatalf("no limits: %q", got)
	}
	for _, n := range []int64{1, 1000, 1 << 10, 8500 << 10, 64 << 20, 3 << 30, 3<<30 + 1} {
		var b byteSize
		if err := b.Set(bytesText(n)); err != nil || int64(b) != n {
			t.Errorf("bytesText(%d) = %q reads back as %d (%v)", n, bytesText(n), b, err)
		}
	}
	if s := bytesText(64 << 20); !strings.HasSuffix(s, "MiB") {
		t.Errorf("bytesText(64 MiB) = %q", s)
	}
}

// A deploy whose spec breaks a rule is refused before the module is
// uploaded (the node is not even dialled here), and messages name the
// flag the user typed beside the API field.
func TestCLIDeploySpecErrorsNameFlags(t *testing.T) {
	mod := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(mod, []byte("\x00asm\x01\x00\x00\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	notWasm := filepath.Join(t.TempDir(), "main.go")
	short := filepath.Join(t.TempDir(), "short.wasm")
	if os.WriteFile(notWasm, []byte("package main\n"), 0o600) != nil || os.WriteFile(short, []byte("\x00a"), 0o600) != nil {
		t.Fatal("write test files")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "fast"}, `--mode (spec.mode) "fast" must be`},
		{[]string{"--memory", "1KiB"}, "--memory (spec.limits.memory_bytes) 1024 is outside"},
		{[]string{"--mode", "isolated", "--reset", "copy"}, `--reset (spec.reset) "copy" needs mode`},
		{[]string{"--route", "/ok", "--route", "/a%41"}, `--route #2 (spec.routes[1]): path "/a%41" has a '%'`},
		{[]string{"--env", "A=x\x00y"}, `--env (spec.env) value of "A" must not contain NUL`},
		{[]string{"--queue-timeout", "-1s"}, "--queue-timeout (spec.limits.queue_timeout) must not be negative"},
		{[]string{"--env", "K=1", "--env", "J=2", "--env", "K=3"}, "--env K is given twice"},
		{[]string{"--route", "/a", "--route", "GET /a"}, `--route #2 (spec.routes[1]) "GET /a" matches requests --route #1 (spec.routes[0]) "/a" already matches`},
		{[]string{"--file", notWasm}, notWasm + " is not a WebAssembly module"},
		{[]string{"--file", short}, short + " is not a WebAssembly module"},
	} {
		var out, errb bytes.Buffer
		file := mod
		if len(c.args) == 2 && c.args[0] == "--file" {
			file, c.args = c.args[1], nil
		}
		args := append([]string{"deploy", "fn", file, "--addr", "http://127.0.0.1:1", "--token", "gjn_x"}, c.args...)
		if code := run(context.Background(), args, &out, &errb); code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("deploy %v: exit %d, stderr %q, want %q", c.args, code, errb.String(), c.want)
		}
		if strings.Contains(errb.String(), "connection refused") || strings.Contains(errb.String(), "sent ") {
			t.Errorf("deploy %v: the node was contacted: %q", c.args, errb.String())
		}
	}
	// A node's message is rewritten the same way; others pass unchanged.
	if got := flagNames(errors.New(`invalid: spec.limits.timeout 20m exceeds 15m; spec.routes[0].path "x" must start with '/'`)).Error(); got !=
		`invalid: --timeout (spec.limits.timeout) 20m exceeds 15m; --route #1 (spec.routes[0].path) "x" must start with '/'` {
		t.Errorf("flagNames: %q", got)
	}
	if got := flagNames(errors.New(`spec.routes[0].methods[1] "get" is not upper-case`)).Error(); got != `--route #1 (spec.routes[0].methods[1]) "get" is not upper-case` {
		t.Errorf("flagNames, nested index: %q", got)
	}
	plain := errors.New("no spec here")
	if got := flagNames(plain); got != plain {
		t.Errorf("flagNames changed an error without spec fields: %v", got)
	}
}
