package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// A guest's KV writes land in the replicated KV, where the CLI reads and
// changes them, and the guest sees the CLI's changes: the counter example
// deployed pooled and isolated, counted through the edge, read back and
// edited with `gojinn-node kv`.
func TestKVEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the counter example; make test runs it")
	}
	dir := t.TempDir()
	pooled := writeModule(t, dir, "counter.pooled.wasm", runtimetest.BuildGo(t, "examples/counter", true))
	command := writeModule(t, dir, "counter.wasm", runtimetest.BuildGo(t, "examples/counter", false))
	n := startDev(t, filepath.Join(dir, "data"), "")
	n.cli(0, "deploy", "counter", pooled, "--mode", "pooled", "--route", "/count/*")
	n.cli(0, "deploy", "tally", command, "--route", "/tally/*")

	count := func(path string) int {
		t.Helper()
		code, body, _ := n.get(n.plainClient, "http://"+n.http+path)
		v, err := strconv.Atoi(body)
		if code != 200 || err != nil {
			t.Fatalf("GET %s: %d %q", path, code, body)
		}
		return v
	}
	for i := 1; i <= 5; i++ {
		if v := count("/count/a"); v != i {
			t.Fatalf("request %d counted %d", i, v)
		}
	}
	for i := 1; i <= 2; i++ {
		if v := count("/tally/x"); v != i {
			t.Fatalf("isolated request %d counted %d", i, v)
		}
	}

	if out := n.cli(0, "kv", "get", "counter", "/count/a"); out != "5" {
		t.Fatalf("kv get: %q, want 5", out)
	}
	if out := n.cli(0, "kv", "get", "tally", "/tally/x"); out != "2" {
		t.Fatalf("kv get tally: %q, want 2", out)
	}
	var e kvEntryJSON
	if err := json.Unmarshal([]byte(n.cli(0, "kv", "get", "counter", "/count/a", "--json", "--linearizable")), &e); err != nil || e.Value == nil || *e.Value != "5" || e.Version == 0 {
		t.Fatalf("kv get --json: %+v %v", e, err)
	}
	if ls := n.cli(0, "kv", "ls", "counter"); !strings.Contains(ls, `"/count/a"`) || strings.Contains(ls, "/tally/") {
		t.Fatalf("kv ls:\n%s", ls)
	}

	// The CLI's writes are what the guest reads next.
	n.cli(0, "kv", "put", "counter", "/count/a", "41")
	if v := count("/count/a"); v != 42 {
		t.Fatalf("after kv put 41 the counter answered %d", v)
	}
	if out := n.cli(1, "kv", "put", "counter", "/count/a", "0", "--cas", "1"); !strings.Contains(out, "conflict") {
		t.Fatalf("kv put with a stale --cas: %q", out)
	}
	n.cli(0, "kv", "rm", "counter", "/count/a")
	if out := n.cli(1, "kv", "get", "counter", "/count/a"); !strings.Contains(out, "not found") {
		t.Fatalf("kv get after rm: %q", out)
	}
	if v := count("/count/a"); v != 1 {
		t.Fatalf("after kv rm the counter answered %d", v)
	}
	n.cli(2, "kv", "frob", "counter")

	// "-" reads the value from stdin.
	var out, errb bytes.Buffer
	c := cli{stdout: &out, stderr: &errb, env: func(string) string { return "" }, stdin: strings.NewReader("from\x00stdin")}
	if code := c.kv(context.Background(), []string{"put", "counter", "bin", "-", "--addr", n.admin, "--token", n.token}); code != 0 {
		t.Fatalf("kv put -: %d %s", code, errb.String())
	}
	if err := json.Unmarshal([]byte(n.cli(0, "kv", "get", "counter", "bin", "--json")), &e); err != nil || e.Value == nil || *e.Value != "from\x00stdin" {
		t.Fatalf("value from stdin: %+v %v", e, err)
	}
}
