package edge

import (
	"context"
	"net"
	"sync"

	"github.com/quic-go/quic-go"
)

// limitListener caps concurrent TCP connections at n: Accept waits for a
// slot, so excess connections queue in the kernel backlog instead of
// consuming memory and goroutines.
func limitListener(ln net.Listener, n int) net.Listener {
	return &tcpLimitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type tcpLimitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *tcpLimitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *tcpLimitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// quicLimitListener caps concurrent QUIC connections: a connection beyond
// the cap is closed at once with an application error, since QUIC has no
// accept backlog to queue it in.
type quicLimitListener struct {
	*quic.EarlyListener
	sem chan struct{}
}

// errCodeBusy is the HTTP/3 error code H3_EXCESSIVE_LOAD (RFC 9114).
const errCodeBusy quic.ApplicationErrorCode = 0x107

func (l *quicLimitListener) Accept(ctx context.Context) (*quic.Conn, error) {
	for {
		c, err := l.EarlyListener.Accept(ctx)
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			// The slot is freed when the connection ends; quic-go closes
			// the context then, so this goroutine ends with the connection.
			go func() {
				<-c.Context().Done()
				<-l.sem
			}()
			return c, nil
		default:
			_ = c.CloseWithError(errCodeBusy, "too many connections")
		}
	}
}
