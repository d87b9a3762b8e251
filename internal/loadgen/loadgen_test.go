package loadgen

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// waitForGoroutines polls until at most n goroutines run, failing after a
// deadline: everything a run and its servers started must end.
func waitForGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, want <= %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling interval, not a wait for an event
	}
}

func checkBaselineRun(t *testing.T, res Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests in %v: %.0f req/s, p50 %v p90 %v p99 %v, statuses %v",
		res.Requests, res.Duration.Round(time.Millisecond), res.RPS, res.P50, res.P90, res.P99, res.Statuses)
	if res.Requests == 0 || res.Errors != 0 || res.FirstError != nil {
		t.Fatalf("requests %d, errors %d (first: %v)", res.Requests, res.Errors, res.FirstError)
	}
	if res.Statuses[http.StatusOK] != res.Requests {
		t.Errorf("statuses %v, want all %d OK", res.Statuses, res.Requests)
	}
	if res.P50 <= 0 || res.P50 > res.P90 || res.P90 > res.P99 {
		t.Errorf("percentiles out of order: %v %v %v", res.P50, res.P90, res.P99)
	}
	if res.Duration < 900*time.Millisecond || res.RPS <= 0 {
		t.Errorf("duration %v, rps %v", res.Duration, res.RPS)
	}
}

// checkHello makes one request first: it proves the server speaks HTTP
// major with the body we expect, not only that it answers.
func checkHello(t *testing.T, client *http.Client, url string, major int) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != HelloBody || resp.ProtoMajor != major {
		t.Fatalf("got %q over HTTP/%d (%v), want %q over HTTP/%d", body, resp.ProtoMajor, err, HelloBody, major)
	}
}

func TestLoadgenNativeHello(t *testing.T) {
	base := runtime.NumGoroutine()
	url, closeSrv := NativeHello(t)
	client := NewH1Client(4, nil)
	res, err := Run(t.Context(), Config{URL: url, Client: client, Concurrency: 4, Duration: time.Second})
	checkBaselineRun(t, res, err)
	if err := CloseClient(client); err != nil {
		t.Error(err)
	}
	closeSrv()
	waitForGoroutines(t, base)
}

func TestLoadgenBareH3Hello(t *testing.T) {
	url, tlsCfg, closeSrv := BareH3Hello(t)
	client := NewH3Client(tlsCfg)
	checkHello(t, client, url, 3)
	res, err := Run(t.Context(), Config{URL: url, Client: client, Concurrency: 4, Duration: time.Second})
	checkBaselineRun(t, res, err)
	if err := CloseClient(client); err != nil {
		t.Error(err)
	}
	closeSrv()
}

func TestLoadgenNativeH2Hello(t *testing.T) {
	b, err := StartNativeH2Hello()
	if err != nil {
		t.Fatal(err)
	}
	client := NewH2Client(b.ClientTLS)
	checkHello(t, client, b.URL, 2)
	res, err := Run(t.Context(), Config{URL: b.URL, Client: client, Concurrency: 4, Duration: time.Second})
	checkBaselineRun(t, res, err)
	if err := CloseClient(client); err != nil {
		t.Error(err)
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
}

func TestLoadgenCountsStatusesAndBodies(t *testing.T) {
	var n, unread atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, _ := io.ReadAll(r.Body); string(b) != "ping" || r.Method != http.MethodPost {
			unread.Add(1)
		}
		if n.Add(1)%2 == 0 {
			http.Error(w, "nope", http.StatusTeapot)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	client := NewH1Client(2, nil)
	defer CloseClient(client)
	res, err := Run(t.Context(), Config{URL: srv.URL, Client: client, Concurrency: 2, Duration: 100 * time.Millisecond, Method: http.MethodPost, Body: []byte("ping")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 2 || res.Statuses[http.StatusOK]+res.Statuses[http.StatusTeapot] != res.Requests || res.Errors != res.Statuses[http.StatusTeapot] || res.FirstError != nil {
		t.Errorf("result %+v", res)
	}
	if unread.Load() != 0 {
		t.Errorf("%d requests arrived without the method and body", unread.Load())
	}
}

// A run against a server that never answers ends at Duration: in-flight
// requests are cancelled and not counted, and no worker outlives Run.
func TestLoadgenStopsHungRequests(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	client := NewH1Client(3, nil)
	defer CloseClient(client)
	start := time.Now()
	res, err := Run(t.Context(), Config{URL: srv.URL, Client: client, Concurrency: 3, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run took %v", took)
	}
	if res.Requests != 0 || res.Errors != 0 {
		t.Errorf("cut-off requests were counted: %+v", res)
	}
}

func TestLoadgenCallerCancel(t *testing.T) {
	url, closeSrv := NativeHello(t)
	defer closeSrv()
	client := NewH1Client(1, nil)
	defer CloseClient(client)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Run(ctx, Config{URL: url, Client: client, Duration: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestLoadgenConnectionErrors(t *testing.T) {
	url, closeSrv := NativeHello(t)
	closeSrv() // nothing listens on url any more
	client := NewH1Client(1, nil)
	defer CloseClient(client)
	res, err := Run(t.Context(), Config{URL: url, Client: client, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != res.Requests || res.FirstError == nil || len(res.Statuses) != 0 {
		t.Errorf("result %+v", res)
	}
}

func TestLoadgenConfigValidate(t *testing.T) {
	c := &http.Client{}
	for _, cfg := range []Config{
		{Client: c, Duration: time.Second},
		{URL: "http://x/", Duration: time.Second},
		{URL: "http://x/", Client: c},
		{URL: "http://x/", Client: c, Duration: MaxDuration + 1},
		{URL: "http://x/", Client: c, Duration: time.Second, Concurrency: -1},
		{URL: "http://x/", Client: c, Duration: time.Second, Method: "BAD METHOD"},
		{URL: "::", Client: c, Duration: time.Second},
	} {
		if _, err := Run(t.Context(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Run(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestLoadgenHistogram(t *testing.T) {
	var h histogram
	if h.percentile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := h.percentile(c.q)
		if got < c.want || float64(got) > float64(c.want)*(1+1.0/64) {
			t.Errorf("p%v = %v, want %v within 1/64", c.q*100, got, c.want)
		}
	}
	for _, d := range []time.Duration{-1, 0, 1, 63, 64, 65, 127, 128, 1<<40 + 12345, 1<<62 + 1} {
		i := histIndex(d)
		if up := histUpper(i); up < d || (i > 0 && histUpper(i-1) >= max(d, 0)) {
			t.Errorf("%d ns falls in bucket %d with bounds (%v, %v]", d, i, histUpper(i-1), up)
		}
	}
}
