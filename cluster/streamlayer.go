package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// RaftALPN is the TLS application protocol of Raft connections. Both ends
// require it, so a Raft connection and a peer API (HTTPS) connection, which
// use the same certificates, can never be mistaken for each other.
const RaftALPN = "gojinn-raft/1"

const (
	// streamHandshakeTimeout bounds the TLS handshake of an accepted
	// connection: a peer that connects and stays silent is dropped.
	streamHandshakeTimeout = 10 * time.Second
	// streamMaxHandshakes bounds handshakes in progress; connections
	// beyond it are closed at once, so a flood cannot pile up goroutines.
	streamMaxHandshakes = 64
	// raftTransportTimeout and raftMaxPool are the settings of the plain
	// TCP transport (newTCPTransport).
	raftTransportTimeout = 10 * time.Second
	raftMaxPool          = 3
)

// errStreamClosed is returned by Accept and Dial after Close.
var errStreamClosed = errors.New("raft TLS stream layer is closed")

// tlsStreamLayer is a raft.StreamLayer over mutual TLS. Accepted
// connections are handshaken on their own goroutines (one slow or hostile
// client never delays the others), and only those whose client proved a
// cluster node certificate reach Accept; failures are logged, never
// returned, because raft's accept loop backs off on errors.
//
// Goroutines: acceptLoop, and one per handshake in progress (at most
// streamMaxHandshakes); Close stops them all and waits. Every connection
// the layer made or accepted is tracked and closed by Close, so raft's
// per-connection readers end with it. mu guards conns and closed only.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config
	clientTLS *tls.Config
	timeout   time.Duration // handshake of accepted connections
	onReject  func(remote net.Addr, err error)

	accepted chan net.Conn
	closeCh  chan struct{}
	loopDone chan struct{} // closed when acceptLoop returns
	loopErr  error         // why acceptLoop returned; read after loopDone
	sem      chan struct{}
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[*streamConn]struct{}
	closed bool

	closeOnce sync.Once
	closeErr  error
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// NewTLSStreamLayer returns a raft.StreamLayer that accepts on ln and
// dials with id's certificates: both ends must present a certificate of
// id's cluster CA that names a node, over TLS 1.3 with RaftALPN.
// advertise is the address other nodes dial (nil: ln's address). The
// layer owns ln and closes it in Close. The connections it returns have
// a ConnectionState() tls.ConnectionState method, for PeerNodeID.
func NewTLSStreamLayer(ln net.Listener, advertise net.Addr, id *NodeIdentity) raft.StreamLayer {
	return newTLSStreamLayer(ln, advertise, id, streamHandshakeTimeout, nil)
}

func newTLSStreamLayer(ln net.Listener, advertise net.Addr, id *NodeIdentity, timeout time.Duration, onReject func(net.Addr, error)) *tlsStreamLayer {
	if onReject == nil {
		onReject = func(net.Addr, error) {}
	}
	l := &tlsStreamLayer{
		ln:        ln,
		advertise: advertise,
		serverTLS: withRaftALPN(id.ServerTLS()),
		clientTLS: withRaftALPN(id.ClientTLS()),
		timeout:   timeout,
		onReject:  onReject,
		accepted:  make(chan net.Conn),
		closeCh:   make(chan struct{}),
		loopDone:  make(chan struct{}),
		sem:       make(chan struct{}, streamMaxHandshakes),
		conns:     make(map[*streamConn]struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// withRaftALPN makes c speak and require RaftALPN.
func withRaftALPN(c *tls.Config) *tls.Config {
	c.NextProtos = []string{RaftALPN}
	verify := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.NegotiatedProtocol != RaftALPN {
			return fmt.Errorf("the peer does not speak %s (ALPN %q): it is not a raft transport of this cluster", RaftALPN, cs.NegotiatedProtocol)
		}
		return verify(cs)
	}
	return c
}

// acceptLoop accepts TCP connections and starts their handshakes.
func (l *tlsStreamLayer) acceptLoop() {
	defer l.wg.Done()
	defer close(l.loopDone)
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.loopErr = errStreamClosed
				return
			}
			// A transient error (out of file descriptors, ...): back off
			// as net/http does, unless closing.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-l.closeCh:
				t.Stop()
				l.loopErr = errStreamClosed
				return
			case <-t.C:
			}
			continue
		}
		delay = 0
		select {
		case l.sem <- struct{}{}:
		default:
			_ = c.Close()
			l.onReject(c.RemoteAddr(), fmt.Errorf("more than %d TLS handshakes in progress", streamMaxHandshakes))
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.sem }()
			l.handshake(c)
		}()
	}
}

// handshake completes the server handshake of c within the timeout and
// hands the connection to Accept, or closes it.
func (l *tlsStreamLayer) handshake(c net.Conn) {
	tc := tls.Server(c, l.serverTLS)
	sc := l.track(tc)
	if sc == nil {
		return // closing; track closed it
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		_ = sc.Close()
		select {
		case <-l.closeCh: // aborted by Close, not refused
		default:
			l.onReject(c.RemoteAddr(), err)
		}
		return
	}
	select {
	case l.accepted <- sc:
	case <-l.closeCh:
		_ = sc.Close()
	}
}

// track registers c so Close can end it; after Close it closes c and
// returns nil.
func (l *tlsStreamLayer) track(c *tls.Conn) *streamConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil
	}
	sc := &streamConn{Conn: c, tls: c, l: l}
	l.conns[sc] = struct{}{}
	return sc
}

// Accept returns the next connection whose peer authenticated as a node.
func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.closeCh:
		return nil, errStreamClosed
	case <-l.loopDone:
		return nil, fmt.Errorf("raft TLS stream layer: %w", l.loopErr)
	}
}

// Dial connects to a node at address and completes the TLS handshake
// within timeout. With TLS 1.3 the server checks the client certificate
// after the client's handshake ends, so a server that refuses this node
// shows up as an error on the first read.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.closeCh:
		return nil, errStreamClosed
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: l.clientTLS}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft: dial %s over mutual TLS: %w", address, err)
	}
	sc := l.track(c.(*tls.Conn))
	if sc == nil {
		return nil, errStreamClosed
	}
	return sc, nil
}

// Close stops accepting, closes every connection the layer made or
// accepted and waits for its goroutines.
func (l *tlsStreamLayer) Close() error {
	l.closeOnce.Do(func() {
		close(l.closeCh)
		l.closeErr = l.ln.Close()
		l.mu.Lock()
		l.closed = true
		conns := l.conns
		l.conns = nil
		l.mu.Unlock()
		for c := range conns {
			_ = c.Conn.Close()
		}
		l.wg.Wait()
	})
	return l.closeErr
}

// Addr is the advertised address, or the listener's.
func (l *tlsStreamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.ln.Addr()
}

// streamConn is a connection the layer tracks until it is closed.
type streamConn struct {
	net.Conn
	tls *tls.Conn
	l   *tlsStreamLayer
}

// Close untracks and closes the connection.
func (c *streamConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// ConnectionState exposes the TLS state, for PeerNodeID.
func (c *streamConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// NewTLSTransport is newTCPTransport over mutual TLS: it listens on bind,
// advertises advertise (or the address actually bound, which must then be
// a single IP) and authenticates both ends of every Raft connection with
// id's cluster certificates. Raft's connection pool and timeouts are those
// of the plain TCP transport.
func NewTLSTransport(bind, advertise string, id *NodeIdentity, logger hclog.Logger) (*raft.NetworkTransport, error) {
	return newTLSTransport(bind, advertise, id, logger, nil)
}

// newTLSTransport is NewTLSTransport with an address provider (nil: none).
func newTLSTransport(bind, advertise string, id *NodeIdentity, logger hclog.Logger, addrs raft.ServerAddressProvider) (*raft.NetworkTransport, error) {
	if id == nil {
		return nil, errors.New("raft: NewTLSTransport needs the node's identity (LoadNodeIdentity)")
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("raft: resolve RaftAdvertise %q: %w", advertise, err)
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			return nil, fmt.Errorf("raft: RaftAdvertise %q must name one reachable IP, not every address", advertise)
		}
		adv = a
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft: listen on %s: %w (is the port in use? choose another port: config key raft.bind)", bind, err)
	}
	if adv == nil {
		if a, ok := ln.Addr().(*net.TCPAddr); !ok || a.IP.IsUnspecified() {
			_ = ln.Close()
			return nil, fmt.Errorf("raft: RaftBind %q listens on every address: set RaftAdvertise to the IP other nodes reach", bind)
		}
	}
	stream := newTLSStreamLayer(ln, adv, id, streamHandshakeTimeout, func(remote net.Addr, err error) {
		logger.Warn("refused a raft connection that did not authenticate as a cluster node", "remote", remote.String(), "error", err)
	})
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:                stream,
		MaxPool:               raftMaxPool,
		Timeout:               raftTransportTimeout,
		Logger:                logger,
		ServerAddressProvider: addrs,
	}), nil
}
