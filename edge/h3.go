package edge

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// h3Server serves HTTP/3 on the edge's QUIC listener. It runs the accept
// loops http3.Server.ServeListener would run, over quic-go's
// RawServerConn, so that each request stream gets a read deadline,
// ReadHeaderTimeout from its arrival, before quic-go reads its headers:
// quic-go reads them with none and stops the connection's idle timer
// while a stream is open, so a client that sends part of a HEADERS frame
// and keeps the connection alive would hold the stream's goroutine for
// ever (DESIGN.md, "HTTP/3 request headers"). h3Deadlines replaces the
// deadline with ReadTimeout once the headers are in.
//
// Goroutines: the accept loop (serve, run by Server.goServe); per
// connection, serveConn (the stream accept loop), a unidirectional-stream
// accept loop, one goroutine per request stream (and per unidirectional
// stream, as in quic-go) and, at shutdown, drain. All end with the
// connection; shutdown and close end the connections.
type h3Server struct {
	srv           *http3.Server // handler and settings, for NewRawServerConn
	headerTimeout time.Duration
	logger        *slog.Logger

	grace     context.Context // ends when shutdown starts: stop accepting, drain
	stopGrace context.CancelFunc
	closing   context.Context // ends at close: close every connection
	stopAll   context.CancelFunc

	loopDone  chan struct{} // closed when serve returns
	conns     sync.WaitGroup
	connsOnce sync.Once
	connsDone chan struct{} // closed when every connection's serveConn has returned
}

func newH3Server(srv *http3.Server, headerTimeout time.Duration, logger *slog.Logger) *h3Server {
	h := &h3Server{srv: srv, headerTimeout: headerTimeout, logger: logger,
		loopDone: make(chan struct{}), connsDone: make(chan struct{})}
	h.closing, h.stopAll = context.WithCancel(context.Background())
	h.grace, h.stopGrace = context.WithCancel(h.closing)
	return h
}

// serve accepts connections from ln until shutdown starts or ln fails.
func (h *h3Server) serve(ln http3.QUICListener) error {
	defer close(h.loopDone)
	for {
		conn, err := ln.Accept(h.grace)
		if h.grace.Err() != nil {
			if err == nil {
				_ = conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "server shutting down")
			}
			return http.ErrServerClosed
		}
		if err != nil {
			return err
		}
		h.conns.Add(1)
		go func() {
			defer h.conns.Done()
			h.serveConn(conn)
		}()
	}
}

// serveConn serves one connection's streams until it closes.
func (h *h3Server) serveConn(conn *quic.Conn) {
	hc, err := h.srv.NewRawServerConn(conn)
	if err != nil {
		h.logger.Debug("HTTP/3 connection failed", "remote", conn.RemoteAddr().String(), "err", err)
		_ = conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeInternalError), "")
		return
	}
	var aux, reqs sync.WaitGroup
	defer aux.Wait()
	defer reqs.Wait()
	// The client's control and QPACK streams. quic-go ends each handler
	// with the connection, and caps these streams at 16 a connection
	// (MaxIncomingUniStreams).
	aux.Go(func() {
		for {
			str, err := conn.AcceptUniStream(context.Background())
			if err != nil {
				return
			}
			go hc.HandleUnidirectionalStream(str)
		}
	})
	draining := false
	for {
		ctx := h.grace
		if draining {
			ctx = h.closing
		}
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			if draining || conn.Context().Err() != nil || h.grace.Err() == nil || h.closing.Err() != nil {
				// Closed (by the client, the idle timer or the drain), a
				// forced close, or a stream accept error: no-op if closed.
				_ = hc.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
				return
			}
			draining = true
			aux.Go(func() { h.drain(conn, hc, &reqs) })
			continue
		}
		if draining {
			str.ReleaseStreamCredit()
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestRejected))
			str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestRejected))
			continue
		}
		// quic-go reads the headers with no deadline; a failed read resets
		// the stream (H3_REQUEST_INCOMPLETE) and ends its goroutine.
		_ = str.SetReadDeadline(time.Now().Add(h.headerTimeout))
		reqs.Add(1)
		go func() {
			defer reqs.Done()
			hc.HandleRequestStream(str)
		}()
	}
}

// drain closes a connection at graceful shutdown once its requests have
// ended and their answers had time to arrive. quic-go's RawServerConn
// keeps its control stream to itself, so there is no GOAWAY to send:
// serveConn rejects new streams with H3_REQUEST_REJECTED (clients may
// retry them elsewhere) and drain closes the connection with H3_NO_ERROR.
// A closed QUIC connection drops the data it has not sent or seen
// acknowledged, and quic-go tells nobody when an answer is acknowledged,
// so drain waits three probe timeouts (RFC 9002: smoothed RTT + 4 x RTT
// variance + the peer's default 25 ms maximum ACK delay) after the last
// request ended: time for the last flight and a retransmission or two.
// The wait ends early at close or when the connection closes.
func (h *h3Server) drain(conn *quic.Conn, hc *http3.RawServerConn, reqs *sync.WaitGroup) {
	reqs.Wait()
	st := conn.ConnectionStats()
	pto := st.SmoothedRTT + max(4*st.MeanDeviation, time.Millisecond) + 25*time.Millisecond
	t := time.NewTimer(3 * pto)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.closing.Done():
	case <-conn.Context().Done():
	}
	_ = hc.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
}

// shutdown stops accepting connections and streams and waits, until ctx
// ends, for every connection's requests to finish and the connection to
// close.
func (h *h3Server) shutdown(ctx context.Context) error {
	h.stopGrace()
	select {
	case <-h.connsEnded():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close closes every connection, which cancels its requests' contexts,
// and waits for their handlers to return.
func (h *h3Server) close() {
	h.stopAll()
	<-h.connsEnded()
}

// connsEnded waits for the accept loop to return (so no connection is
// added any more) and returns a channel closed once every connection's
// serveConn has returned.
func (h *h3Server) connsEnded() <-chan struct{} {
	<-h.loopDone
	h.connsOnce.Do(func() {
		go func() {
			h.conns.Wait()
			close(h.connsDone)
		}()
	})
	return h.connsDone
}
