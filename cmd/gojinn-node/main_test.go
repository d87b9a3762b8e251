package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// The dev node serves the hello example over a real socket, refuses an
// oversized body with a clear 413 and carries on.
func TestDevServesHello(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "hello.wasm")
	if err := os.WriteFile(mod, runtimetest.BuildGo(t, "examples/hello", true), 0o644); err != nil {
		t.Fatal(err)
	}
	n := startDev(t, filepath.Join(dir, "data"), mod)
	url := "http://" + n.http + "/"
	if code, body, _ := n.get(n.plainClient, url+"?name=dev"); code != 200 || body != "Hello, dev!\n" {
		t.Fatalf("got %d %q", code, body)
	}
	resp, err := n.plainClient.Post(url, "text/plain", strings.NewReader(strings.Repeat("x", 11<<20)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(body), "exceeds") {
		t.Fatalf("oversized body: %d %q", resp.StatusCode, body)
	}
	if code, body, _ := n.get(n.plainClient, url+"?name=after"); code != 200 || body != "Hello, after!\n" {
		t.Fatalf("after 413: %d %q", code, body)
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage") {
		t.Fatalf("no args: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errb.String())
	}
	errb.Reset()
	free := []string{"--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--admin", "127.0.0.1:0"}
	code := run(context.Background(), append([]string{"dev", "--module", "/nonexistent.wasm", "--data", t.TempDir()}, free...), &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "make examples") {
		t.Fatalf("missing module: %d %q", code, errb.String())
	}
	errb.Reset()
	mod := filepath.Join(t.TempDir(), "bad.wasm")
	os.WriteFile(mod, []byte("not wasm"), 0o644)
	code = run(context.Background(), append([]string{"dev", "--module", mod, "--data", t.TempDir()}, free...), &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "invalid module") {
		t.Fatalf("bad module: %d %q", code, errb.String())
	}
}

// Usage errors of the client subcommands exit 2 with the usage problem,
// before the CLI looks for a token or a node: here there is neither.
func TestCLIUsageErrors(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"functions", "bogus"}, `unknown subcommand "bogus"`},
		{[]string{"functions", "show"}, "show takes one function NAME (got 0 arguments)"},
		{[]string{"functions", "rollback", "a", "b"}, "rollback takes one function NAME (got 2 arguments)"},
		{[]string{"functions", "list", "extra"}, `list takes no arguments (got "extra")`},
		{[]string{"functions", "versions", "."}, `function name "."`},
		{[]string{"functions", "show", ""}, `function name ""`},
		{[]string{"functions", "show", "hello", "--to", "2"}, "--to is for rollback only, not show"},
		{[]string{"deploy", "hello", "hello.wasm", "--memory", "99999999999GiB"}, "too large"},
		{[]string{"deploy", "hello", "hello.wasm", "--memory", "lots"}, "is not a size"},
	} {
		var out, errb bytes.Buffer
		code := runEnv(context.Background(), append(c.args, "--data", t.TempDir()), &out, &errb, noEnv)
		if code != 2 || !strings.Contains(errb.String(), c.want) || strings.Contains(errb.String(), "no admin token") {
			t.Errorf("gojinn-node %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), code, errb.String(), c.want)
		}
	}
}

// runEnv is run with env as the environment, where an empty value counts
// as unset.
func runEnv(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	return runLookup(ctx, args, stdout, stderr, envLookup(env))
}

// envLookup turns a getenv-style function into a lookup for which an empty
// value is unset.
func envLookup(env func(string) string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v := env(k)
		return v, v != ""
	}
}

// TestUsageHidesSecrets checks that a token taken from the environment
// never appears in the usage output a mistyped flag prints.
func TestUsageHidesSecrets(t *testing.T) {
	const secret = "gjn_usage_secret_value"
	cfgPath := filepath.Join(t.TempDir(), "n.toml")
	if err := os.WriteFile(cfgPath, []byte("data_dir = \""+t.TempDir()+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		switch k {
		case "GOJINN_TOKEN", "GOJINN_CLUSTER_JOIN_TOKEN":
			return secret
		}
		return ""
	}
	for _, args := range [][]string{
		{"deploy", "a", "f.wasm", "--memory", "12xyz"},
		{"functions", "--bogus"},
		{"status", "--bogus"},
		{"agent", "--config", cfgPath, "--bogus"},
	} {
		var out, errb bytes.Buffer
		code := runEnv(context.Background(), args, &out, &errb, env)
		if code != 2 {
			t.Errorf("gojinn-node %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, errb.String())
		}
		if !strings.Contains(errb.String(), "-token") && !strings.Contains(errb.String(), "-join-token") {
			t.Errorf("gojinn-node %s: stderr %q shows no usage with the token flag", strings.Join(args, " "), errb.String())
		}
		if strings.Contains(out.String()+errb.String(), secret) {
			t.Errorf("gojinn-node %s printed the token from the environment: %q", strings.Join(args, " "), errb.String())
		}
	}
}

// TestTokenFileOnlyForLoopback checks that the CLI sends a dev node's
// token file only to an admin address on this machine.
func TestTokenFileOnlyForLoopback(t *testing.T) {
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, cluster.TokenFile), []byte("gjn_from_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr  string
		local bool
	}{
		{"http://127.0.0.1:9090", true},
		{"127.0.0.1:9090", true},
		{"http://localhost:9090", true},
		{"http://[::1]:9090", true},
		{"http://127.1.2.3:9090", true},
		{"http://192.0.2.10:9090", false},
		{"https://admin.example.com", false},
		{"http://localhost.example.com:9090", false},
	} {
		cf := clientFlags{addr: c.addr, data: data}
		cl, err := cf.client()
		if c.local && (err != nil || cl == nil) {
			t.Errorf("%s: %v, want a client with the token file", c.addr, err)
		}
		if !c.local && (err == nil || !strings.Contains(err.Error(), "only sent to a node on this machine")) {
			t.Errorf("%s: err %v, want the token file refused for a remote address", c.addr, err)
		}
		// An explicit token goes anywhere.
		cf.token = "gjn_explicit"
		if _, err := cf.client(); err != nil {
			t.Errorf("%s with --token: %v", c.addr, err)
		}
	}
}

// A node that accepts the CLI's connection but never answers (hung, or
// not a Gojinn node) fails the command after answerWithin instead of
// hanging it.
func TestCLINodeThatNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	defer func(d time.Duration) { answerWithin = d }(answerWithin)
	answerWithin = 300 * time.Millisecond
	for _, args := range [][]string{{"status"}, {"functions"}, {"kv", "get", "ns", "k"}, {"members"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var stderr bytes.Buffer
		code := runEnv(ctx, append(args, "--addr", "http://"+ln.Addr().String(), "--token", "gjn_x"), io.Discard, &stderr, func(string) string { return "" })
		hung := ctx.Err() != nil
		cancel()
		if hung || code != 1 || !strings.Contains(stderr.String(), "timeout awaiting response headers") {
			t.Errorf("%v: exit %d (hung until the test's deadline: %v), stderr %q; want exit 1 on the answer timeout", args, code, hung, stderr.String())
		}
	}
}

// -h and --help print a command's usage and exit 0, like `help`; keygen
// prints no key then. logs -n outside 1..MaxLogLimit is a usage error
// naming -n (0 meant the default, silently).
func TestHelpAndLogsN(t *testing.T) {
	for _, args := range [][]string{{"status", "--help"}, {"deploy", "-h"}, {"functions", "list", "-help"}, {"keygen", "--help"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		if code := runEnv(context.Background(), args, &stdout, &stderr, func(string) string { return "" }); code != 0 {
			t.Errorf("%v: exit %d, want 0\nstderr: %s", args, code, stderr.String())
		}
		if args[0] == "keygen" && (stdout.Len() != 0 || !strings.Contains(stderr.String(), "usage: gojinn-node keygen")) {
			t.Errorf("keygen --help printed %q to stdout, %q to stderr; want only its usage", stdout.String(), stderr.String())
		}
	}
	if code := runEnv(context.Background(), []string{"status", "--bogus"}, io.Discard, io.Discard, func(string) string { return "" }); code != 2 {
		t.Errorf("an unknown flag: exit %d, want 2", code)
	}
	for _, n := range []string{"0", "-1", "10001"} {
		var stderr bytes.Buffer
		code := runEnv(context.Background(), []string{"logs", "hello", "-n", n, "--addr", "http://127.0.0.1:1", "--token", "gjn_x"}, io.Discard, &stderr, func(string) string { return "" })
		if code != 2 || !strings.Contains(stderr.String(), "-n "+n+":") {
			t.Errorf("logs -n %s: exit %d, stderr %q; want 2 naming -n", n, code, stderr.String())
		}
	}
}
