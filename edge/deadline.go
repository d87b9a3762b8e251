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
// none; Server.h3Deadlines arms HTTP/3's read deadline the same way. The
// write deadline would then bound the function's run time too, so Handler
// lifts it while the function runs (HTTP/1.1, HTTP/2) and arms it, from
// the end of the run, before it writes the answer (every protocol):
// writeTimeout bounds writing, and the runtime's own limits bound the run.
// HTTP/3 gets no write deadline at arrival, which would only be lifted:
// each deadline set costs a timer update per request. Its other answers
// (404, 503, a refused body) are small enough for the stream's flow
// control window, so they never wait for the client.

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

// h3Deadlines gives HTTP/3 requests the read deadline net/http gives
// HTTP/1.1 and HTTP/2 ones: reading the request (its body) must end
// ReadTimeout after the request arrived. Without it a client that declares
// a body and stops sending it holds the request's handler and buffers
// until the QUIC idle timeout, which any packet of the client's resets.
// The write deadline is Handler's (writeDeadline.arm).
func (s *Server) h3Deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// quic-go's response writer supports it; an error means the
		// stream is gone, which the handler will find out.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		next.ServeHTTP(w, r)
	})
}

// writeDeadline is the write deadline of one request a function answers:
// see liftWriteDeadline and arm.
type writeDeadline struct {
	rc *http.ResponseController // nil: no Server's timeout known, deadlines left alone
	d  time.Duration            // the Server's write timeout
}

// liftWriteDeadline removes the write deadline net/http armed when r
// arrived (HTTP/1.1 and HTTP/2; HTTP/3 has none then) before a function
// runs. It must come before the deadline passes: net/http does not extend
// an HTTP/2 stream's deadline once it has fired (the stream is reset
// then).
func liftWriteDeadline(w http.ResponseWriter, r *http.Request) writeDeadline {
	d := writeTimeout(r)
	if d <= 0 {
		return writeDeadline{}
	}
	wd := writeDeadline{rc: http.NewResponseController(w), d: d}
	if r.ProtoMajor < 3 {
		// An error means the writer has no deadline to lift.
		_ = wd.rc.SetWriteDeadline(time.Time{})
	}
	return wd
}

// arm gives writing the answer the whole write timeout from now, once the
// function has run.
func (wd writeDeadline) arm() {
	if wd.rc != nil {
		_ = wd.rc.SetWriteDeadline(time.Now().Add(wd.d))
	}
}
