package edge

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// goroutineID parses the current goroutine's id from its stack header
// ("goroutine 42 [running]:"); tests only.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

func request(major int) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.ProtoMajor = major
	return r
}

// TestWorkersServeHTTP2And3OnLongLivedGoroutines checks that HTTP/2 and
// HTTP/3 requests run on a worker, not the request's goroutine, that
// workers are reused (20 sequential requests, 4 workers at most: none runs
// inline), and that HTTP/1.x stays inline. Which worker takes a request
// is not fixed: one that has just answered may not be waiting yet.
func TestWorkersServeHTTP2And3OnLongLivedGoroutines(t *testing.T) {
	ws := newWorkers(4)
	defer stopWorkers(t, ws)
	var ran uint64
	h := ws.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran = goroutineID()
		w.Header().Set("X-Proto", strconv.Itoa(r.ProtoMajor))
		w.WriteHeader(http.StatusTeapot)
	}))
	for _, major := range []int{1, 2, 3} {
		seen := map[uint64]bool{}
		for range 20 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, request(major))
			if rec.Code != http.StatusTeapot || rec.Header().Get("X-Proto") != strconv.Itoa(major) {
				t.Fatalf("HTTP/%d: got %d %v; want the handler's 418", major, rec.Code, rec.Header())
			}
			onCaller := ran == goroutineID()
			if onCaller != (major == 1) {
				t.Fatalf("HTTP/%d: ran on the caller's goroutine: %v", major, onCaller)
			}
			seen[ran] = true
		}
		if major > 1 && len(seen) > 4 {
			t.Errorf("HTTP/%d: 20 sequential requests ran on %d goroutines; want at most the 4 workers", major, len(seen))
		}
	}
}

// TestWorkersBoundedNeverQueue checks that with every worker busy a
// request is served on its own goroutine at once instead of waiting.
func TestWorkersBoundedNeverQueue(t *testing.T) {
	ws := newWorkers(2)
	defer stopWorkers(t, ws)
	release := make(chan struct{})
	var started sync.WaitGroup
	h := ws.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			started.Done()
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	var done sync.WaitGroup
	for range 2 {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			r := request(3)
			r.URL.Path = "/block"
			h.ServeHTTP(httptest.NewRecorder(), r)
		}()
	}
	started.Wait()
	finished := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, request(3))
		finished <- rec.Code
	}()
	select {
	case code := <-finished:
		if code != http.StatusNoContent {
			t.Errorf("third request: %d, want 204", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("with both workers busy, a third request waited for them")
	}
	ws.mu.Lock()
	n := ws.n
	ws.mu.Unlock()
	if n != 2 {
		t.Errorf("%d workers started; want the cap of 2", n)
	}
	close(release)
	done.Wait()
}

// TestWorkersRaisePanicsOnTheCaller checks that a handler's panic reaches
// the request's goroutine (where net/http and quic-go recover it) with the
// worker's stack, that http.ErrAbortHandler arrives unchanged, and that
// the worker survives.
func TestWorkersRaisePanicsOnTheCaller(t *testing.T) {
	ws := newWorkers(1)
	defer stopWorkers(t, ws)
	var worker uint64
	h := ws.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		worker = goroutineID()
		switch r.URL.Path {
		case "/boom":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(http.StatusOK)
	}))
	recovered := func(path string) (v any) {
		defer func() { v = recover() }()
		r := request(2)
		r.URL.Path = path
		h.ServeHTTP(httptest.NewRecorder(), r)
		return nil
	}
	v := recovered("/boom") // the first request starts the worker
	err, ok := v.(error)
	if !ok || !strings.Contains(err.Error(), "handler panic: boom") || !strings.Contains(err.Error(), "workers_internal_test.go") {
		t.Fatalf("recovered %v; want an error naming the panic with the handler's stack", v)
	}
	first := worker
	if first == goroutineID() {
		t.Fatal("the first request ran on the caller's goroutine")
	}
	// A request reaches the worker only once it waits for the next one,
	// which can be just after the caller has its answer: until then
	// requests run inline. Retry until one lands on the worker.
	onWorker := func(path string) any {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v := recovered(path)
			if worker == first {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no request reached the worker again after a panic", path)
			}
		}
	}
	if v := onWorker("/abort"); v != http.ErrAbortHandler { //nolint:errorlint // identity is the contract
		t.Fatalf("recovered %v; want http.ErrAbortHandler itself", v)
	}
	if v := onWorker("/"); v != nil {
		t.Fatalf("a plain request after two panics panicked with %v", v)
	}
}

// TestWorkersStop checks that stop waits for a request in progress, ends
// every worker, and that requests after it are still served (inline).
func TestWorkersStop(t *testing.T) {
	before := runtime.NumGoroutine()
	ws := newWorkers(8)
	blocked, entered, release := holdAt("/slow", http.StatusAccepted)
	h := ws.wrap(blocked)
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), request(3))
	}
	slow := goServe(h, "/slow")
	<-entered
	stopped := make(chan struct{})
	go func() { stopWorkers(t, ws); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a request was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-stopped
	if code := <-slow; code != http.StatusAccepted {
		t.Errorf("request in progress at stop: %d, want 202", code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, request(3))
	if rec.Code != http.StatusAccepted {
		t.Errorf("request after stop: %d, want 202", rec.Code)
	}
	waitGoroutines(t, before, "after stop: a worker outlived stop")
}

// deep uses about 7 KiB of stack, as the node's HTTP/3 request path does
// (quic-go, routing, and wazero's call into the guest).
//
//go:noinline
func deep(n int) byte {
	var frame [700]byte
	frame[n%len(frame)] = byte(n)
	if n == 0 {
		return frame[0]
	}
	return deep(n-1) + frame[(n*7)%len(frame)]
}

// BenchmarkWorkers compares serving a request whose path needs a grown
// stack on a fresh goroutine per request, as HTTP/2 and HTTP/3 servers
// do (the stack is grown, copying every frame, on each request), with
// handing it to a worker. Run: go test -run '^$' -bench Workers ./edge/
func BenchmarkWorkers(b *testing.B) {
	var sink byte
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { sink += deep(9) })
	r := request(3)
	for _, c := range []struct {
		name string
		h    func(ws *workers) http.Handler
	}{
		{"fresh-goroutine", func(*workers) http.Handler { return h }},
		{"worker", func(ws *workers) http.Handler { return ws.wrap(h) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			ws := newWorkers(4)
			defer stopWorkers(b, ws)
			handler := c.h(ws)
			done := make(chan struct{})
			for b.Loop() {
				go func() {
					handler.ServeHTTP(nil, r)
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
	_ = sink
}

// goServe serves a request for path with h on a new goroutine and sends
// its status on the channel it returns.
func goServe(h http.Handler, path string) <-chan int {
	code := make(chan int, 1)
	go func() {
		r, rec := request(3), httptest.NewRecorder()
		r.URL.Path = path
		h.ServeHTTP(rec, r)
		code <- rec.Code
	}()
	return code
}

// holdAt returns a handler answering status, which holds the first request
// for path until release is closed; entered is closed when it arrives.
func holdAt(path string, status int) (h http.Handler, entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			close(entered)
			<-release
		}
		w.WriteHeader(status)
	}), entered, release
}

// waitGoroutines fails the test unless, within 10 s, the process is back
// to at most before goroutines; when says at what point and what outlived it.
func waitGoroutines(t *testing.T, before int, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines %s (%d before)", n, when, before)
	}
}

// stopWorkers stops ws, failing the test if that takes 10 s.
func stopWorkers(t testing.TB, ws *workers) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ws.stop(ctx); err != nil {
		t.Errorf("stopping the workers: %v", err)
	}
}

// TestWorkersStopBounded checks that stop gives up on a worker whose
// request outlives its context, naming why, and that the worker still
// exits once the request ends.
func TestWorkersStopBounded(t *testing.T) {
	before := runtime.NumGoroutine()
	ws := newWorkers(4)
	blocked, entered, release := holdAt("/stuck", http.StatusOK)
	h := ws.wrap(blocked)
	h.ServeHTTP(httptest.NewRecorder(), request(3)) // an idle worker
	served := goServe(h, "/stuck")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ws.stop(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still busy") {
		t.Fatalf("stop with a request stuck past its context: %v; want an error saying workers are still busy", err)
	}
	close(release)
	<-served
	waitGoroutines(t, before, "once the stuck request ended: a worker (or stop's helpers) outlived it")
}
