package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

func kvGuest(t testing.TB, command bool) []byte {
	return runtimetest.BuildGo(t, "runtime/testdata/guests/kv", !command)
}

// kvEngine starts an engine whose guests use kv (nil: none).
func kvEngine(t testing.TB, kv runtime.KV) *runtime.Engine {
	return newEngine(t, func(c *runtime.Config) { c.KV = kv })
}

// call invokes target and returns status, body and the X-Version header.
func call(t *testing.T, f *runtime.Function, target string) (int, string, string) {
	t.Helper()
	res, err := invoke(t, f, get(target))
	if err != nil {
		var ie *runtime.InvokeError
		if errors.As(err, &ie) {
			t.Fatalf("GET %s: %v\n%s", target, err, ie.Stderr)
		}
		t.Fatalf("GET %s: %v", target, err)
	}
	r := res.Response
	return r.StatusOrDefault(), string(r.Body), r.HeaderMap().Get("X-Version")
}

// Every host function through the SDK, in every mode: put, get (local and
// linearizable), compare-and-set with the current version on a conflict,
// TTL, list pages and all keys, delete, and the size limits.
func TestKVHostFunctions(t *testing.T) {
	kv := runtime.NewMemKV()
	kv.MaxValueBytes = 1000
	kv.MaxKeyBytes = 32
	e := kvEngine(t, kv)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "kv-" + mc.name, Module: kvGuest(t, mc.cmd), Mode: mc.mode, Reset: mc.reset})
			expect := func(target string, status int, body string) string {
				t.Helper()
				st, b, ver := call(t, f, target)
				if st != status || (body != "" && b != body) {
					t.Fatalf("GET %s: %d %q, want %d %q", target, st, b, status, body)
				}
				return ver
			}
			expect("/get?k=a", 404, "")
			_, v1, _ := call(t, f, "/put?k=a&v=one")
			if ver := expect("/get?k=a", 200, "one"); ver != v1 {
				t.Fatalf("get version %s, put answered %s", ver, v1)
			}
			expect("/get?k=a&lin=1", 200, "one")
			// The function's own namespace by name is the same one.
			expect("/get?k=a&ns=kv-"+mc.name, 200, "one")

			if ver := expect("/put?k=a&v=two&cas=0", 409, ""); ver != v1 {
				t.Fatalf("conflict reports version %s, want the current %s", ver, v1)
			}
			_, v2, _ := call(t, f, "/put?k=a&v=two&cas="+v1)
			expect("/get?k=a", 200, "two")
			expect("/put?k=a&v=three&cas="+v1, 409, "")
			expect("/put?k=new&v=x&cas=0", 200, "")
			if v2 == v1 {
				t.Fatal("a write did not change the version")
			}

			expect("/put?k=b&v=2", 200, "")
			expect("/put?k=c&v=3", 200, "")
			expect("/list?limit=2", 200, "b|a,b")
			expect("/list?limit=2&cursor=b", 200, "|c,new")
			expect("/list?prefix=n", 200, "|new")
			expect("/all", 200, "a,b,c,new")
			expect("/delete?k=b", 200, "deleted")
			expect("/delete?k=b", 200, "deleted") // deleting a missing key is fine
			expect("/get?k=b", 404, "")

			expect("/put?k=t&v=x&ttl=1", 200, "")
			deadline := time.Now().Add(10 * time.Second)
			for {
				if st, _, _ := call(t, f, "/get?k=t"); st == 404 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("a key with a 1 ms TTL never expired")
				}
				time.Sleep(5 * time.Millisecond)
			}

			expect("/put?k=big&size=1000", 200, "")
			if _, body, _ := call(t, f, "/put?k=big&size=1001"); !strings.Contains(body, "1001 bytes") {
				t.Fatalf("too large: %q", body)
			}
			expect("/put?k=big&size=1001", 413, "")
			expect("/get?k="+strings.Repeat("k", 33), 400, "")
			expect("/put?k=&v=x", 400, "")
			expect("/get?k=x&ns="+strings.Repeat("n", 64), 400, "")
		})
	}
}

// A function may use its own namespace and the ones shared with it.
func TestKVNamespaceAccess(t *testing.T) {
	kv := runtime.NewMemKV()
	e := kvEngine(t, kv)
	f := load(t, e, runtime.FunctionSpec{Name: "reader", Module: kvGuest(t, false), Mode: runtime.ModePooled})
	st, body, _ := call(t, f, "/get?k=a&ns=owner")
	if st != 403 || !strings.Contains(body, `"reader" may not use namespace "owner"`) {
		t.Fatalf("foreign namespace: %d %q", st, body)
	}
	if st, _, _ := call(t, f, "/put?k=a&v=x&ns=owner"); st != 403 {
		t.Fatalf("write to a foreign namespace: %d", st)
	}
	if st, _, _ := call(t, f, "/list?ns=owner"); st != 403 {
		t.Fatalf("list of a foreign namespace: %d", st)
	}
	if _, err := kv.Put(context.Background(), "owner", "a", []byte("shared"), 0, runtime.KVNoCAS); err != nil {
		t.Fatal(err)
	}
	kv.Share("owner", "reader")
	if st, body, _ := call(t, f, "/get?k=a&ns=owner"); st != 200 || body != "shared" {
		t.Fatalf("shared namespace: %d %q", st, body)
	}
}

// Without a KV the module loads and every call answers "not available".
func TestKVNotConfigured(t *testing.T) {
	e := kvEngine(t, nil)
	for _, mc := range []modeCase{allModes[0], allModes[2]} {
		f := load(t, e, runtime.FunctionSpec{Name: "nokv-" + mc.name, Module: kvGuest(t, mc.cmd), Mode: mc.mode})
		for _, target := range []string{"/get?k=a", "/put?k=a&v=b", "/delete?k=a", "/list"} {
			st, body, _ := call(t, f, target)
			if st != 503 || !strings.Contains(body, "KV is not available on this node") {
				t.Fatalf("%s %s: %d %q", mc.name, target, st, body)
			}
		}
	}
}

// Bad pointers trap that invocation with a message naming the argument;
// lengths over the limits and bad arguments are error codes; the function
// serves the next request.
func TestKVPointerAbuse(t *testing.T) {
	e := kvEngine(t, runtime.NewMemKV())
	traps := map[string]string{
		"key":         "get: key (16 bytes at 0xffffff00) is outside linear memory",
		"namespace":   "get: namespace (8 bytes at 0xffffff00) is outside linear memory",
		"version":     "get: version_ptr (8 bytes at 0xffffff00) is outside linear memory",
		"value":       "put: value (16 bytes at 0xffffff00) is outside linear memory",
		"put-version": "put: version_ptr (8 bytes at 0xfffffffc) is outside linear memory",
		"prefix":      "list: prefix (4 bytes at 0xffffff00) is outside linear memory",
		"read":        "result_read: destination (64 bytes at 0xffffff00) is outside linear memory",
		"wrap":        "get: key (32 bytes at 0xfffffff0) is outside linear memory",
	}
	codes := map[string]string{"huge-key": "-4", "bad-flags": "-4", "bad-ttl": "-4", "bad-cas": "-4"}
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "abuse-" + mc.name, Module: kvGuest(t, mc.cmd), Mode: mc.mode, Reset: mc.reset})
			for what, want := range traps {
				_, err := invoke(t, f, get("/abuse/"+what))
				if !errors.Is(err, runtime.ErrTrap) || !strings.Contains(err.Error(), "gojinn_kv_v1."+want) {
					t.Fatalf("%s: %v, want a trap saying %q", what, err, want)
				}
				if st, body, _ := call(t, f, "/put?k=after&v="+what); st != 200 || body == "" {
					t.Fatalf("after the %s trap: %d %q", what, st, body)
				}
			}
			for what, want := range codes {
				if st, body, _ := call(t, f, "/abuse/"+what); st != 200 || body != want {
					t.Fatalf("%s: %d %q, want status %s", what, st, body, want)
				}
			}
		})
	}
}

// A pooled instance's next request never sees the result buffer of the
// one before (a value, a listing or an error message).
func TestKVNoResultLeak(t *testing.T) {
	kv := runtime.NewMemKV()
	e := kvEngine(t, kv)
	f := load(t, e, runtime.FunctionSpec{Name: "leak", Module: kvGuest(t, false), Mode: runtime.ModePooled, Limits: runtime.Limits{MaxInstances: 1}})
	call(t, f, "/put?k=secret&v=hunter2")
	for _, before := range []string{"/get?k=secret", "/list", "/get?k=missing", "/get?k=x&ns=other"} {
		call(t, f, before)
		if st, body, _ := call(t, f, "/abuse/result-len"); st != 200 || body != "0" {
			t.Fatalf("after %s the next request's result_len is %q", before, body)
		}
	}
}

// slowKV blocks every read until its context ends.
type slowKV struct{ *runtime.MemKV }

func (slowKV) Get(ctx context.Context, _, _ string, _ bool) ([]byte, uint64, error) {
	<-ctx.Done()
	return nil, 0, fmt.Errorf("%w: %w", runtime.ErrKVUnavailable, ctx.Err())
}

// A KV call that does not answer is ended by the invocation's timeout, or
// by the caller going away.
func TestKVCallHonoursLimits(t *testing.T) {
	e := kvEngine(t, slowKV{runtime.NewMemKV()})
	for _, mc := range []modeCase{allModes[0], allModes[2]} {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "slow-" + mc.name, Module: kvGuest(t, mc.cmd), Mode: mc.mode, Limits: runtime.Limits{Timeout: 300 * time.Millisecond}})
			start := time.Now()
			res, err := invoke(t, f, get("/get?k=a"))
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("the invocation took %v with a 300ms timeout", took)
			}
			if err == nil && res.Response.StatusOrDefault() != 503 {
				t.Fatalf("got %d %q, want a timeout or 503", res.Response.StatusOrDefault(), res.Response.Body)
			} else if err != nil && !errors.Is(err, runtime.ErrTimeout) {
				t.Fatalf("got %v, want ErrTimeout", err)
			}

			f = load(t, e, runtime.FunctionSpec{Name: "slow-" + mc.name, Module: kvGuest(t, mc.cmd), Mode: mc.mode, Limits: runtime.Limits{Timeout: time.Minute}})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start = time.Now()
			res, err = f.Invoke(ctx, get("/get?k=a"))
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("a canceled invocation took %v", took)
			}
			if err == nil && res.Response.StatusOrDefault() != 503 {
				t.Fatalf("canceled: %d %q", res.Response.StatusOrDefault(), res.Response.Body)
			}
		})
	}
}

// Imports from gojinn_kv_v1 and wasi_snapshot_preview1 must name a
// function it has with its signature; other modules are refused. A WASI
// command is instantiated only at its first request, so these are the
// checks that keep it from deploying and then failing every request.
func TestKVImportChecks(t *testing.T) {
	e := kvEngine(t, nil)
	for name, want := range map[string]string{
		"kv-import-unknown":   "gojinn_kv_v1.frobnicate, which this node does not provide",
		"kv-import-badsig":    "gojinn_kv_v1.get has the wrong signature",
		"kv-import-othermod":  "env.now, which this node does not provide (host modules: wasi_snapshot_preview1, gojinn_kv_v1, gojinn_log_v1)",
		"wasi-import-unknown": "wasi_snapshot_preview1.sock_open, which is not a WASI preview 1 function",
		"wasi-import-badsig":  "wasi_snapshot_preview1.fd_write has the wrong signature [i32] -> [i32] (WASI preview 1 has [i32 i32 i32 i32] -> [i32])",
	} {
		_, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "imp", Module: wat(t, name)})
		if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// BenchmarkKVGet measures a pooled Go guest answering from KV: one get of
// a 100-byte value through the SDK, against a request that makes no KV
// call (404).
func BenchmarkKVGet(b *testing.B) {
	kv := runtime.NewMemKV()
	if _, err := kv.Put(context.Background(), "bench", "a", make([]byte, 100), 0, runtime.KVNoCAS); err != nil {
		b.Fatal(err)
	}
	e := kvEngine(b, kv)
	f := load(b, e, runtime.FunctionSpec{Name: "bench", Module: kvGuest(b, false), Mode: runtime.ModePooled})
	for _, target := range []string{"/none", "/get?k=a"} {
		b.Run(strings.TrimPrefix(target, "/"), func(b *testing.B) {
			req := get(target)
			b.ReportAllocs()
			for b.Loop() {
				res, err := f.Invoke(context.Background(), req)
				if err != nil || res.Response.StatusOrDefault() >= 500 {
					b.Fatal(res, err)
				}
			}
		})
	}
}
