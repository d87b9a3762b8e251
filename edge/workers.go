package edge

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// workers serve HTTP/2 and HTTP/3 requests on long-lived goroutines.
//
// net/http's HTTP/2 server and quic-go's HTTP/3 server start a goroutine
// per request. A new goroutine gets a small stack (4 KiB here) and the
// request path is deeper than that: quic-go's stream handling, the router,
// and wazero's call into the guest (one wazero frame alone is over 2 KiB).
// The runtime then grows the stack by copying it and adjusting every frame
// on it, which cost about 2 us per HTTP/3 request in profiles of the node
// benchmark: more than routing, request conversion and the runtime's host
// side together. Workers keep their grown stacks; the request's own
// goroutine only hands the request over and waits. HTTP/1.1 keeps serving
// on its connection's goroutine, which lives for the whole connection and
// grows once.
//
// A request is handed over only when a worker is idle, or a new one may
// start (at most max); otherwise it is served on its own goroutine as
// before, so a burst never queues behind the workers and a handler that
// blocks (a slow client) cannot starve the others.
type workers struct {
	// jobs is unbuffered: a send succeeds only into an idle worker. A nil
	// job stops the worker that receives it.
	jobs chan *workerJob
	wg   sync.WaitGroup
	// closing tells a worker that finishes a request to exit.
	closing atomic.Bool

	mu      sync.Mutex
	n, max  int
	stopped bool
}

// maxWorkers caps the workers of one server. Each holds a grown stack
// (8 KiB, shrunk by the garbage collector while idle), so 256 cost at most
// a few MiB; requests beyond that many at once are served on their own
// goroutines.
const maxWorkers = 256

// workerJob is one request on its way to a worker and back.
type workerJob struct {
	h    http.Handler
	w    http.ResponseWriter
	r    *http.Request
	done chan struct{} // buffered (1), reused with the job
	// panicked holds what the handler panicked with, wrapped with the
	// worker's stack unless it is http.ErrAbortHandler.
	panicked any
}

var workerJobs = sync.Pool{New: func() any { return &workerJob{done: make(chan struct{}, 1)} }}

func newWorkers(max int) *workers {
	return &workers{jobs: make(chan *workerJob), max: max}
}

// wrap returns h serving HTTP/2 and HTTP/3 requests on the workers.
func (ws *workers) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor < 2 || !ws.serve(h, w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

// serve runs h on a worker and waits for it. It returns false, having done
// nothing, when no worker is free and no new one may start. A panic in h
// is raised again here, on the request's own goroutine, where the HTTP
// server expects it.
func (ws *workers) serve(h http.Handler, w http.ResponseWriter, r *http.Request) bool {
	j := workerJobs.Get().(*workerJob)
	j.h, j.w, j.r = h, w, r
	select {
	case ws.jobs <- j:
	default:
		if !ws.start(j) {
			j.h, j.w, j.r = nil, nil, nil
			workerJobs.Put(j)
			return false
		}
	}
	<-j.done
	p := j.panicked
	j.h, j.w, j.r, j.panicked = nil, nil, nil, nil
	workerJobs.Put(j)
	if p != nil {
		panic(p)
	}
	return true
}

// start starts a worker with j as its first job, unless max are running
// or the workers are stopped.
func (ws *workers) start(j *workerJob) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.stopped || ws.n >= ws.max {
		return false
	}
	ws.n++
	ws.wg.Add(1)
	go ws.loop(j)
	return true
}

func (ws *workers) loop(j *workerJob) {
	defer ws.wg.Done()
	for j != nil {
		j.run()
		if ws.closing.Load() {
			return
		}
		j = <-ws.jobs // a plain receive: cheaper than a select per request
	}
}

func (j *workerJob) run() {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // net/http compares it the same way
				j.panicked = v
			} else {
				j.panicked = fmt.Errorf("edge: handler panic: %v\n%s", v, debug.Stack())
			}
		}
		j.done <- struct{}{}
	}()
	j.h.ServeHTTP(j.w, j.r)
}

// stop ends the workers: idle ones at once, busy ones when their request
// is done. It waits for them until ctx ends, and reports the ones still
// busy then (they exit when their request ends). Requests after stop are
// served on their own goroutines.
func (ws *workers) stop(ctx context.Context) error {
	ws.mu.Lock()
	ws.stopped = true // start refuses new workers
	ws.mu.Unlock()
	ws.closing.Store(true)
	exited := make(chan struct{})
	go func() {
		ws.wg.Wait()
		close(exited)
	}()
	// Until every worker has exited, offer a nil job to whichever waits
	// for a request, including one that finished a request just before
	// closing was set. This goroutine ends with the last worker.
	go func() {
		for {
			select {
			case ws.jobs <- nil:
			case <-exited:
				return
			}
		}
	}()
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("edge: request workers still busy: %w", context.Cause(ctx))
	}
}
