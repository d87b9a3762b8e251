package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ErrInvalidConfig means a Config failed validation.
var ErrInvalidConfig = errors.New("loadgen: invalid config")

// MaxDuration bounds Config.Duration so a mistaken run cannot go on for
// hours.
const MaxDuration = 10 * time.Minute

// MaxConcurrency bounds Config.Concurrency.
const MaxConcurrency = 10000

// Config describes one run.
type Config struct {
	// URL is requested by every worker. Required.
	URL string
	// Client sends the requests; NewH1Client and NewH3Client build
	// suitable ones. Required.
	Client *http.Client
	// Concurrency is the number of workers, each with one request in
	// flight (closed loop). Default 1, at most MaxConcurrency.
	Concurrency int
	// Duration is how long the run lasts. Required, at most MaxDuration.
	Duration time.Duration
	// Method is the request method. Default GET.
	Method string
	// Body is sent with every request. Default none.
	Body []byte
}

// Validate returns the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return fmt.Errorf("%w: URL is empty", ErrInvalidConfig)
	case c.Client == nil:
		return fmt.Errorf("%w: Client is nil; use NewH1Client or NewH3Client", ErrInvalidConfig)
	case c.Concurrency < 0 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("%w: Concurrency %d is outside 0..%d", ErrInvalidConfig, c.Concurrency, MaxConcurrency)
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("%w: Duration %v must be positive and at most %v", ErrInvalidConfig, c.Duration, MaxDuration)
	}
	if _, err := http.NewRequest(c.method(), c.URL, nil); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) method() string {
	if c.Method == "" {
		return http.MethodGet
	}
	return c.Method
}

// Result summarizes a run.
type Result struct {
	// Requests counts requests that completed: a response whose body was
	// read to the end, or a failure. Requests cut off by the end of the
	// run are not counted.
	Requests int64
	// Errors counts completed requests without a 2xx answer: transport
	// and body read failures, and non-2xx statuses.
	Errors int64
	// Duration is the wall time from the first request to the end of
	// the last worker.
	Duration time.Duration
	// RPS is Requests per second of Duration.
	RPS float64
	// P50, P90 and P99 are latency percentiles (to ~1.6%) over requests
	// that got a response, from sending to the end of the body.
	P50, P90, P99 time.Duration
	// Statuses counts responses by status code, 2xx included.
	Statuses map[int]int64
	// FirstError is the first transport or read failure, for diagnosis.
	FirstError error
}

// workerStats is one worker's tally; workers share nothing while running.
type workerStats struct {
	requests, errors int64
	statuses         map[int]int64
	hist             histogram
	firstErr         error
}

// Run sends requests from cfg.Concurrency workers, each waiting for its
// answer before sending the next, until cfg.Duration has passed or ctx
// ends. Every response body is read to the end and closed. Every goroutine
// Run starts has ended when it returns. When ctx ends before cfg.Duration,
// Run returns the partial result with an error wrapping ctx's error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	conc := max(cfg.Concurrency, 1)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	stats := make([]*workerStats, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range stats {
		s := &workerStats{statuses: map[int]int64{}}
		stats[i] = s
		wg.Go(func() { s.loop(runCtx, cfg) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := Result{Duration: elapsed, Statuses: map[int]int64{}}
	var hist histogram
	for _, s := range stats {
		res.Requests += s.requests
		res.Errors += s.errors
		for code, n := range s.statuses {
			res.Statuses[code] += n
		}
		hist.merge(&s.hist)
		if res.FirstError == nil {
			res.FirstError = s.firstErr
		}
	}
	if elapsed > 0 {
		res.RPS = float64(res.Requests) / elapsed.Seconds()
	}
	res.P50, res.P90, res.P99 = hist.percentile(0.50), hist.percentile(0.90), hist.percentile(0.99)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadgen: run ended early after %v: %w", elapsed, err)
	}
	return res, nil
}

// loop is one worker: it owns s and returns when ctx ends.
func (s *workerStats) loop(ctx context.Context, cfg Config) {
	method := cfg.method()
	for ctx.Err() == nil {
		var body io.Reader
		if cfg.Body != nil {
			body = bytes.NewReader(cfg.Body)
		}
		req, err := http.NewRequestWithContext(ctx, method, cfg.URL, body)
		if err != nil { // Validate built the same request; unreachable
			s.fail(err)
			return
		}
		t0 := time.Now()
		resp, err := cfg.Client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return // cut off by the end of the run
			}
			s.fail(err)
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		cerr := resp.Body.Close()
		if err == nil {
			err = cerr
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.fail(fmt.Errorf("reading the body of %s: %w", resp.Status, err))
			continue
		}
		s.hist.record(time.Since(t0))
		s.requests++
		s.statuses[resp.StatusCode]++
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			s.errors++
		}
	}
}

func (s *workerStats) fail(err error) {
	s.requests++
	s.errors++
	if s.firstErr == nil {
		s.firstErr = err
	}
}
