package edge

import (
	"context"
	"net/http"
	"time"
)

// Read and write deadlines (DESIGN.md, "Read and write deadlines").
//
// net/http arms a connection's (HTTP/1.1) or stream's (HTTP/2) write
// deadline, WriteTimeout after the request arrived, and http3.Server arms
// none; Server.h3Deadlines arms both of HTTP/3's the same way. The write
// deadline would then bound the function's run time too, so Handler lifts
// it while the function runs and arms it again, from the end of the run,
// before it writes the answer: writeTimeout bounds writing, and the
// runtime's own limits bound the run.

// timeouts are what Handler needs of a Server's timeouts. The Server puts
// them in the context of every request it serves (one value per listener
// or QUIC connection, so a request costs nothing), where Handler finds
// them.
type timeouts struct{ write time.Duration }

type timeoutsKey struct{}

// withTimeouts returns ctx carrying t.
func withTimeouts(ctx context.Context, t *timeouts) context.Context {
	return context.WithValue(ctx, timeoutsKey{}, t)
}

// writeTimeout returns the write timeout of the Server serving r, or 0
// when r did not come through a Server (tests, httptest): then no write
// deadline is known to be armed, and none is touched.
func writeTimeout(r *http.Request) time.Duration {
	if t, ok := r.Context().Value(timeoutsKey{}).(*timeouts); ok {
		return t.write
	}
	return 0
}

// h3Deadlines gives HTTP/3 requests the deadlines net/http gives HTTP/1.1
// and HTTP/2 ones: reading the request (its body) must end ReadTimeout
// after the request arrived, writing the response WriteTimeout after it.
// Without them a client that declares a body and stops sending it, or
// stops reading the answer, holds the request's handler and buffers until
// the QUIC idle timeout, which any packet of the client's resets.
func (s *Server) h3Deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		rc := http.NewResponseController(w)
		// quic-go's response writer supports both; an error means the
		// stream is gone, which the handler will find out.
		_ = rc.SetReadDeadline(now.Add(s.cfg.ReadTimeout))
		_ = rc.SetWriteDeadline(now.Add(s.cfg.WriteTimeout))
		next.ServeHTTP(w, r)
	})
}

// liftWriteDeadline removes w's write deadline before a function runs
// (d is the Server's write timeout, 0 when none is known). It must come
// before the deadline passes: net/http does not extend an HTTP/2 stream's
// deadline once it has fired (the stream is reset then).
func liftWriteDeadline(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		// An error means the writer has no deadline to lift.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	}
}

// armWriteDeadline gives writing the answer d from now, once the function
// has run (d as for liftWriteDeadline).
func armWriteDeadline(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
	}
}
