package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		{[]string{"functions", "show"}, "usage: gojinn-node functions show NAME"},
		{[]string{"functions", "rollback", "a", "b"}, "usage: gojinn-node functions rollback NAME"},
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
