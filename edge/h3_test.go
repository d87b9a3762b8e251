package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// partialHeaders is the start of a request stream that never completes:
// a HEADERS frame (type 0x01) announcing 100 bytes (a two-byte varint),
// none of which follow.
var partialHeaders = []byte{0x01, 0x40, 0x64}

// requestStreamGoroutines counts the goroutines in quic-go's HTTP/3
// request stream handler: one per request stream the server holds.
func requestStreamGoroutines() int { return goroutinesIn("(*RawServerConn).HandleRequestStream(") }

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte(fn))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitUntil polls cond until it holds or d has passed, and reports
// whether it held.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// streamErrorCode returns the code of the stream reset err reports, or -1.
func streamErrorCode(err error) int64 {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return int64(se.ErrorCode)
	}
	return -1
}

// An HTTP/3 client that opens request streams, sends part of a HEADERS
// frame on each and keeps the connection alive with pings holds each
// stream only until ReadHeaderTimeout: the server resets it
// (H3_REQUEST_INCOMPLETE) and its goroutine ends, while the connection
// stays open. quic-go reads headers with no deadline of its own and stops
// the connection's idle timer while a stream is open, so without the
// edge's deadline the streams are held for as long as the client pings.
func TestHTTP3IncompleteHeadersEndAtReadHeaderTimeout(t *testing.T) {
	const headerTimeout = 500 * time.Millisecond
	s := startServer(t, edge.ServerConfig{ReadHeaderTimeout: headerTimeout}, protoHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, s.h3Addr, &tls.Config{RootCAs: s.pool, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{KeepAlivePeriod: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	before := requestStreamGoroutines()

	const streams = 8
	type reset struct {
		after time.Duration
		err   error
	}
	resets := make(chan reset, streams)
	for i := range streams {
		str, err := qc.OpenStream()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if _, err := str.Write(partialHeaders); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		start := time.Now()
		go func() {
			_, err := str.Read(make([]byte, 1))
			resets <- reset{time.Since(start), err}
		}()
	}
	// The server holds a goroutine per stream while it waits for the
	// headers (the streams still count if they are already reset).
	waitUntil(headerTimeout/2, func() bool { return requestStreamGoroutines() >= before+streams })

	const slack = 2 * time.Second // a loaded machine, the race detector
	for range streams {
		select {
		case r := <-resets:
			if code := streamErrorCode(r.err); code != int64(http3.ErrCodeRequestIncomplete) {
				t.Fatalf("a stream with incomplete headers ended with %v, want a reset with H3_REQUEST_INCOMPLETE", r.err)
			}
			if r.after > headerTimeout+slack {
				t.Errorf("a stream with incomplete headers was reset after %v, read header timeout %v", r.after, headerTimeout)
			}
		case <-time.After(headerTimeout + 5*time.Second):
			t.Fatalf("streams with incomplete headers are still open %v after the %v read header timeout (%d server goroutines hold them)",
				headerTimeout+5*time.Second, headerTimeout, requestStreamGoroutines()-before)
		}
	}
	if !waitUntil(5*time.Second, func() bool { return requestStreamGoroutines() <= before }) {
		t.Errorf("%d request stream goroutines remain after the streams were reset", requestStreamGoroutines()-before)
	}
	if err := context.Cause(qc.Context()); err != nil {
		t.Errorf("the connection was closed (%v); only its streams should be", err)
	}
}

// quic-go reads the type of a client's unidirectional stream with no
// deadline, so a client can open streams whose type never arrives. They
// hold a goroutine each, at most 16 a connection (MaxIncomingUniStreams),
// and only while the connection lives: with no request stream open, the
// HTTP/3 idle timer closes it after IdleTimeout even though the client's
// keep-alives keep the QUIC connection itself alive.
func TestHTTP3UnidirectionalStreamsWithoutTypeEndAtIdleTimeout(t *testing.T) {
	const idle = time.Second
	s := startServer(t, edge.ServerConfig{IdleTimeout: idle}, protoHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := goroutinesIn("(*RawServerConn).HandleUnidirectionalStream(")
	start := time.Now()
	qc, err := quic.DialAddr(ctx, s.h3Addr, &tls.Config{RootCAs: s.pool, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{KeepAlivePeriod: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	const streams = 16
	for i := range streams {
		str, err := qc.OpenUniStreamSync(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		// The first byte of a two-byte stream type varint.
		if _, err := str.Write([]byte{0x40}); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if !waitUntil(idle/2, func() bool {
		return goroutinesIn("(*RawServerConn).HandleUnidirectionalStream(") >= before+streams
	}) {
		t.Logf("the server held %d of the %d streams before the idle timeout", goroutinesIn("(*RawServerConn).HandleUnidirectionalStream(")-before, streams)
	}
	select {
	case <-qc.Context().Done():
		var appErr *quic.ApplicationError
		if err := context.Cause(qc.Context()); !errors.As(err, &appErr) || !appErr.Remote || appErr.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeNoError) {
			t.Fatalf("the connection ended with %v, want the server's close with H3_NO_ERROR", err)
		}
		if d := time.Since(start); d < idle {
			t.Errorf("the server closed the connection after %v, before its %v idle timeout", d, idle)
		}
	case <-time.After(idle + 10*time.Second):
		t.Fatalf("a connection with only typeless unidirectional streams is still open %v after the %v idle timeout", idle+10*time.Second, idle)
	}
	if !waitUntil(5*time.Second, func() bool {
		return goroutinesIn("(*RawServerConn).HandleUnidirectionalStream(") <= before
	}) {
		t.Errorf("%d unidirectional stream goroutines remain after the connection closed",
			goroutinesIn("(*RawServerConn).HandleUnidirectionalStream(")-before)
	}
}

// At shutdown an HTTP/3 connection's request in flight finishes and is
// answered in full; a request stream opened meanwhile is rejected with
// H3_REQUEST_REJECTED (which clients may retry elsewhere); then the server
// closes the connection with H3_NO_ERROR, without waiting for the grace
// period.
func TestHTTP3ShutdownRejectsNewStreamsAndCloses(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	const grace = 20 * time.Second
	s := startServer(t, edge.ServerConfig{ShutdownGrace: grace, ReadHeaderTimeout: 300 * time.Millisecond}, h)
	var mu sync.Mutex
	var conn *quic.Conn
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.pool},
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			c, err := quic.DialAddr(ctx, addr, tlsCfg, cfg)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && conn == nil {
				conn = c
			}
			return c, err
		},
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	type result struct {
		body string
		err  error
	}
	inFlight := make(chan result, 1)
	go func() {
		resp, err := client.Get(s.httpsURL + "/slow")
		if err != nil {
			inFlight <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		inFlight <- result{string(b), err}
	}()
	<-started
	mu.Lock()
	qc := conn
	mu.Unlock()

	shutStart := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// A stream the server accepted before its drain began waits for its
	// headers and ends at the read header timeout; once the drain has
	// begun, new streams are rejected at once.
	rejected := waitUntil(10*time.Second, func() bool {
		str, err := qc.OpenStream()
		if err != nil {
			t.Fatalf("opening a stream during the drain: %v", err)
		}
		_, _ = str.Write(partialHeaders)
		_, err = str.Read(make([]byte, 1))
		return streamErrorCode(err) == int64(http3.ErrCodeRequestRejected)
	})
	if !rejected {
		t.Error("no stream opened during the drain was rejected with H3_REQUEST_REJECTED")
	}
	select {
	case <-qc.Context().Done():
		t.Fatalf("the connection closed with a request in flight: %v", context.Cause(qc.Context()))
	default:
	}

	close(release)
	if r := <-inFlight; r.err != nil || r.body != "done" {
		t.Errorf("in-flight request: %q, %v; want the whole answer", r.body, r.err)
	}
	select {
	case <-qc.Context().Done():
		var appErr *quic.ApplicationError
		if err := context.Cause(qc.Context()); !errors.As(err, &appErr) || !appErr.Remote || appErr.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeNoError) {
			t.Errorf("the connection ended with %v, want the server's H3_NO_ERROR", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not close the drained connection")
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(shutStart); d > grace/2 {
		t.Errorf("shutdown took %v with a %v grace period; it should end when the connection is drained", d, grace)
	}
}
