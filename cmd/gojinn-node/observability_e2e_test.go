package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// A CPU budget through a real node, as an operator sees it: a guest that
// spins is stopped at its budget (503, the reason in the dev body), the
// node's log has one failure line and one access line for the request,
// each with the function, its version, the request id, the caller's trace
// id and the node's name, and /metrics counts a cpu_budget outcome; a
// guest that sleeps for four times the budget is not charged for it.
func TestCPUBudgetThroughTheNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the abuse guest; make test runs it")
	}
	dir := t.TempDir()
	mod := writeModule(t, dir, "abuse.wasm", runtimetest.BuildGo(t, "runtime/testdata/guests/abuse", true))
	n := startDev(t, filepath.Join(dir, "data"), "")
	n.cli(0, "deploy", "spin", mod, "--mode", "pooled", "--route", "/sleep", "--route", "/loop", "--cpu", "100ms", "--timeout", "20s")

	const tid = "5bf92f3577b34da6a3ce929d0e0e4736"
	get := func(path string) (int, string, time.Duration) {
		start := time.Now()
		code, body := n.getTraced("http://"+n.http+path, tid)
		return code, body, time.Since(start)
	}
	if code, body, took := get("/sleep?n=400"); code != 200 || body != "slept" || took < 400*time.Millisecond {
		t.Fatalf("sleeping 400ms under a 100ms CPU budget: %d %q after %v", code, body, took)
	}
	sleepCPU, _ := metricValue(n.scrape(), "gojinn_function_cpu_seconds_total", map[string]string{"function": "spin"})
	if sleepCPU >= 0.1 {
		t.Errorf("the sleep was charged %vs of CPU", sleepCPU)
	}
	code, body, took := get("/loop")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "CPU time") {
		t.Fatalf("an endless loop under a 100ms CPU budget: %d %q", code, body)
	}
	if took > 10*time.Second {
		t.Fatalf("the loop ran %v under a 100ms CPU budget and a 20s timeout", took)
	}

	host, _ := os.Hostname()
	var failed, access map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for failed == nil || access == nil {
		for _, line := range strings.Split(n.stderr.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["trace_id"] != tid {
				continue
			}
			switch {
			case rec["msg"] == "invocation failed":
				failed = rec
			case rec["msg"] == "request" && rec["path"] == "/loop":
				access = rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure and access lines with trace id %s in the node's log:\n%s", tid, n.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, rec := range map[string]map[string]any{"failure": failed, "access": access} {
		for k, want := range map[string]any{"function": "spin", "version": "1", "node": host, "status": 503.0} {
			if rec[k] != want {
				t.Errorf("%s line: %s = %v, want %v (%v)", name, k, rec[k], want, rec)
			}
		}
		if id, _ := rec["request_id"].(string); id == "" {
			t.Errorf("%s line has no request_id: %v", name, rec)
		}
	}
	if failed["request_id"] != access["request_id"] {
		t.Errorf("the failure and access lines name different requests: %v, %v", failed["request_id"], access["request_id"])
	}
	if msg, _ := failed["err"].(string); !strings.Contains(msg, "CPU time") {
		t.Errorf("the failure line does not say the CPU budget ran out: %v", failed)
	}

	fam := n.scrape()
	if v, ok := metricValue(fam, "gojinn_invocations_total", map[string]string{"function": "spin", "outcome": "cpu_budget"}); v != 1 {
		t.Errorf("gojinn_invocations_total{outcome=cpu_budget} = %v (present %v), want 1", v, ok)
	}
	if v, _ := metricValue(fam, "gojinn_invocations_total", map[string]string{"function": "spin", "outcome": "ok"}); v != 1 {
		t.Errorf("gojinn_invocations_total{outcome=ok} = %v, want 1 (the sleep)", v)
	}
	// The loop that ran out of its budget is charged what it used: a
	// failed call's CPU counts (only successful ones did).
	if v, _ := metricValue(fam, "gojinn_function_cpu_seconds_total", map[string]string{"function": "spin"}); v-sleepCPU < 0.1 {
		t.Errorf("the loop that used its 100ms CPU budget was charged %vs", v-sleepCPU)
	}
}
