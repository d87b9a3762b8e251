package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// PlainMode says what the plain-HTTP listener does.
type PlainMode string

// Plain-HTTP behaviours.
const (
	// PlainRedirect answers every request with a permanent redirect to
	// the same URL over HTTPS (ACME HTTP-01 challenges still answer).
	PlainRedirect PlainMode = "redirect"
	// PlainServe serves functions over plain HTTP too.
	PlainServe PlainMode = "serve"
)

// ServerConfig configures the listeners. Start from DefaultServerConfig.
type ServerConfig struct {
	// HTTPSAddr is where HTTP/1.1 and HTTP/2 over TLS (TCP) and HTTP/3
	// (UDP) listen, on the same port. Empty disables TLS. Port 0 picks a
	// free port for both. Default ":443".
	HTTPSAddr string
	// HTTPAddr is the plain-HTTP listener. Empty disables it.
	// Default ":80".
	HTTPAddr string
	// Plain is what the plain-HTTP listener does: PlainRedirect (default
	// when HTTPS is on) or PlainServe (always when HTTPS is off).
	Plain PlainMode
	// DisableHTTP3 turns the QUIC listener off. Default false.
	DisableHTTP3 bool
	// TCPTLS and QUICTLS are the TLS configurations of the TCP and QUIC
	// listeners (see TLS.TCPConfig and TLS.QUICConfig). Required with
	// HTTPSAddr.
	TCPTLS, QUICTLS *tls.Config
	// PlainWrap wraps the plain-HTTP handler, for ACME HTTP-01 challenges
	// (TLS.HTTPChallengeHandler). Optional.
	PlainWrap func(http.Handler) http.Handler
	// MaxHeaderBytes caps request headers. Default 64 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading request headers, so slow clients
	// cannot hold a connection open by trickling them: on HTTP/1.1 and
	// HTTP/2 from the request's start, on HTTP/3 per request stream from
	// its arrival (the stream is reset). It is also the QUIC handshake
	// idle timeout. Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, from
	// its arrival (on HTTP/3, from the end of its headers). Default 60s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response, from the request's arrival
	// on every protocol; Handler lifts it while a function runs and
	// gives writing the function's answer WriteTimeout from the end of
	// the run, so it never cuts a function off. Default 60s.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections (and idle QUIC
	// connections) after this long without a request. Default 120s.
	IdleTimeout time.Duration
	// MaxConns caps concurrent connections per listener; further
	// connections wait in the kernel's backlog (TCP) or are refused
	// (QUIC). Default 10000.
	MaxConns int
	// MaxConcurrentStreams caps concurrent requests per HTTP/2 or HTTP/3
	// connection. Default 250.
	MaxConcurrentStreams int
	// ShutdownGrace is how long Shutdown lets in-flight requests finish
	// before closing connections. Default 10s.
	ShutdownGrace time.Duration
	// OnGraceEnd, when set, is called once if ShutdownGrace ends with
	// requests in flight. It should make them finish: a node stops the
	// function calls under way, which then answer 503. The edge gives
	// them up to AfterGrace more to be written before it closes the
	// connections, so a client gets an answer, not a reset.
	OnGraceEnd func()
	// Logger receives listener events. Default slog.Default().
	Logger *slog.Logger
	// Metrics counts the TLS handshakes of the HTTPS listeners (TCP and
	// QUIC) in gojinn_tls_handshakes_total. Default nil: not counted.
	Metrics *Metrics
}

// DefaultServerConfig returns the production defaults.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		HTTPSAddr:            ":443",
		HTTPAddr:             ":80",
		Plain:                PlainRedirect,
		MaxHeaderBytes:       64 << 10,
		ReadHeaderTimeout:    10 * time.Second,
		ReadTimeout:          60 * time.Second,
		WriteTimeout:         60 * time.Second,
		IdleTimeout:          120 * time.Second,
		MaxConns:             10000,
		MaxConcurrentStreams: 250,
		ShutdownGrace:        10 * time.Second,
	}
}

func (c *ServerConfig) fill() {
	d := DefaultServerConfig()
	if c.Plain == "" {
		c.Plain = d.Plain
	}
	if c.HTTPSAddr == "" {
		c.Plain = PlainServe
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = d.MaxConns
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate returns the first problem with c, or nil.
func (c ServerConfig) Validate() error {
	if c.HTTPSAddr == "" && c.HTTPAddr == "" {
		return errors.New("edge: no listener: set an HTTPS address, an HTTP address or both")
	}
	if c.HTTPSAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPSAddr); err != nil {
			return fmt.Errorf("edge: https address %q: %w (write HOST:PORT, e.g. \":443\")", c.HTTPSAddr, err)
		}
		if c.TCPTLS == nil || (!c.DisableHTTP3 && c.QUICTLS == nil) {
			return errors.New("edge: an HTTPS listener needs a TLS configuration")
		}
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("edge: http address %q: %w (write HOST:PORT, e.g. \":80\")", c.HTTPAddr, err)
		}
	}
	switch c.Plain {
	case "", PlainRedirect, PlainServe:
	default:
		return fmt.Errorf("edge: plain-HTTP mode %q: use %q or %q", c.Plain, PlainRedirect, PlainServe)
	}
	for name, d := range map[string]time.Duration{
		"read header timeout": c.ReadHeaderTimeout, "read timeout": c.ReadTimeout,
		"write timeout": c.WriteTimeout, "idle timeout": c.IdleTimeout, "shutdown grace": c.ShutdownGrace,
	} {
		if d < 0 {
			return fmt.Errorf("edge: %s is negative (%s)", name, d)
		}
	}
	if c.MaxConns < 0 || c.MaxConcurrentStreams < 0 || c.MaxHeaderBytes < 0 {
		return errors.New("edge: connection, stream and header limits must not be negative")
	}
	return nil
}

// Server runs the edge listeners for one handler. Goroutines: one serve
// loop per listener, each ended by Shutdown, which waits for them, and
// HTTP/3's per-connection ones (h3Server).
type Server struct {
	cfg     ServerConfig
	handler http.Handler

	tcpTLS    net.Listener // HTTPS over TCP, nil when off
	plain     net.Listener // plain HTTP, nil when off
	udp       net.PacketConn
	transport *quic.Transport
	quicLn    *quic.EarlyListener

	h1 *http.Server // HTTPS h1/h2
	h0 *http.Server // plain HTTP
	h3 *h3Server
	// workers serve HTTP/2 and HTTP/3 requests on grown stacks.
	workers *workers
	wg      sync.WaitGroup
	err     chan error

	shutdownOnce sync.Once
	shutdownErr  error
}

// NewServer binds every configured listener (so Addrs reports real ports)
// and starts serving h. Shutdown stops it.
func NewServer(cfg ServerConfig, h http.Handler) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fill()
	s := &Server{cfg: cfg, err: make(chan error, 3), workers: newWorkers(maxWorkers)}
	s.handler = s.workers.wrap(h)
	if err := s.listen(); err != nil {
		s.closeListeners()
		return nil, err
	}
	s.serve()
	return s, nil
}

// listen binds the TCP and UDP sockets. With port 0 the UDP socket takes
// the port the TCP listener got; if that port is taken over UDP, it tries
// again with a fresh pair.
func (s *Server) listen() error {
	if s.cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("edge: listen on http address %s: %w", s.cfg.HTTPAddr, err)
		}
		s.plain = limitListener(ln, s.cfg.MaxConns)
	}
	if s.cfg.HTTPSAddr == "" {
		return nil
	}
	host, port, _ := net.SplitHostPort(s.cfg.HTTPSAddr)
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", s.cfg.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("edge: listen on https address %s: %w", s.cfg.HTTPSAddr, err)
		}
		if s.cfg.DisableHTTP3 {
			s.tcpTLS = ln
			break
		}
		bound := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, bound))
		if err != nil {
			_ = ln.Close()
			if port == "0" && attempt < 10 {
				continue
			}
			return fmt.Errorf("edge: listen on udp %s for HTTP/3: %w", net.JoinHostPort(host, bound), err)
		}
		s.tcpTLS, s.udp = ln, udp
		break
	}
	s.tcpTLS = limitListener(s.tcpTLS, s.cfg.MaxConns)
	if s.udp == nil {
		return nil
	}
	s.transport = &quic.Transport{Conn: s.udp, ConnContext: s.cfg.Metrics.quicConnContext(s.cfg.Logger)}
	qln, err := s.transport.ListenEarly(http3.ConfigureTLSConfig(s.cfg.QUICTLS), &quic.Config{
		// 0-RTT data can be replayed by an attacker; refuse it for every
		// method rather than trust each function to be idempotent.
		Allow0RTT:             false,
		MaxIdleTimeout:        s.cfg.IdleTimeout,
		HandshakeIdleTimeout:  s.cfg.ReadHeaderTimeout,
		MaxIncomingStreams:    int64(s.cfg.MaxConcurrentStreams),
		MaxIncomingUniStreams: 16,
	})
	if err != nil {
		return fmt.Errorf("edge: start QUIC listener: %w", err)
	}
	s.quicLn = qln
	return nil
}

func (s *Server) serve() {
	log := slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug)
	// Every request's context carries the timeouts, for Handler (see
	// deadline.go).
	tmo := &timeouts{write: s.cfg.WriteTimeout}
	base := withTimeouts(context.Background(), tmo)
	newHTTP := func(h http.Handler) *http.Server {
		srv := &http.Server{
			BaseContext:       func(net.Listener) context.Context { return base },
			Handler:           h,
			MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
			ReadTimeout:       s.cfg.ReadTimeout,
			WriteTimeout:      s.cfg.WriteTimeout,
			IdleTimeout:       s.cfg.IdleTimeout,
			ErrorLog:          log,
			HTTP2: &http.HTTP2Config{
				MaxConcurrentStreams: s.cfg.MaxConcurrentStreams,
				MaxReadFrameSize:     1 << 20,
			},
		}
		return srv
	}
	if s.quicLn != nil {
		// quic-go logs every request at debug level, and builds the
		// line's arguments (three allocations) before the level check:
		// it gets the logger only when debug lines are wanted. Without
		// one, its few error lines (a panic it recovered, a malformed
		// Content-Length) go to slog's default logger, which gojinn-node
		// points at stderr as JSON. Its request lines carry the request
		// URI, whose query can hold secrets: the logger drops queries
		// (redactQuery), as the access log leaves them out.
		var h3Log *slog.Logger
		if s.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
			h3Log = slog.New(redactQuery{s.cfg.Logger.Handler()})
		}
		s.h3 = newH3Server(&http3.Server{
			Handler:        s.h3Deadlines(s.handler),
			MaxHeaderBytes: s.cfg.MaxHeaderBytes,
			IdleTimeout:    s.cfg.IdleTimeout,
			Logger:         h3Log,
			ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context {
				return withTimeouts(ctx, tmo)
			},
		}, s.cfg.ReadHeaderTimeout, s.cfg.Logger)
		// Every accepted connection's handshake is watched: counted when
		// there are metrics, logged at debug level when it fails.
		var ln http3.QUICListener = quicHandshakeListener{&quicLimitListener{EarlyListener: s.quicLn, sem: make(chan struct{}, s.cfg.MaxConns)}}
		s.goServe("http3", func() error { return s.h3.serve(ln) })
	}
	if s.tcpTLS != nil {
		h := s.handler
		if s.h3 != nil {
			h = s.altSvc(h)
		}
		s.h1 = newHTTP(h)
		s.h1.TLSConfig = s.cfg.TCPTLS.Clone()
		ln := s.tcpTLS
		if s.cfg.Metrics != nil {
			ln = handshakeListener{ln}
			s.h1.ConnState = s.cfg.Metrics.tcpConnState
		}
		s.goServe("https", func() error { return s.h1.ServeTLS(ln, "", "") })
	}
	if s.plain != nil {
		h := s.handler
		if s.cfg.Plain == PlainRedirect {
			h = s.redirect()
		}
		if s.cfg.PlainWrap != nil {
			h = s.cfg.PlainWrap(h)
		}
		s.h0 = newHTTP(h)
		s.goServe("http", func() error { return s.h0.Serve(s.plain) })
	}
}

func (s *Server) goServe(name string, serve func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := serve()
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.cfg.Logger.Error("edge listener stopped", "listener", name, "err", err)
			select {
			case s.err <- fmt.Errorf("edge: %s listener: %w", name, err):
			default:
			}
		}
	}()
}

// altSvc advertises HTTP/3 on responses over TCP.
func (s *Server) altSvc(next http.Handler) http.Handler {
	// Computed once from the bound UDP port rather than asked of the
	// HTTP/3 server, which knows its port only after its serve loop runs.
	v := []string{fmt.Sprintf(`h3=":%d"; ma=86400`, s.udp.LocalAddr().(*net.UDPAddr).Port)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Alt-Svc"] = v
		next.ServeHTTP(w, r)
	})
}

// redirect sends plain-HTTP requests to the HTTPS listener.
func (s *Server) redirect() http.Handler {
	_, port, _ := net.SplitHostPort(s.tcpTLS.Addr().String())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := httpsHost(r.Host, port)
		if !ok {
			http.Error(w, "the request names no valid host; use https:// with a host name", http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// httpsHost returns the authority of the HTTPS URL for a request to
// hostport (a Host header: a name or IP literal, IPv6 in brackets, with
// or without a port) on the HTTPS port port: the host without its port,
// then port unless it is 443. An IPv6 literal keeps its brackets. It
// reports false for an empty or malformed host.
func httpsHost(hostport, port string) (string, bool) {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1] // "[::1]": brackets without a port
	}
	if host == "" || strings.ContainsAny(host, "[]") {
		return "", false
	}
	if port != "443" {
		return net.JoinHostPort(host, port), true
	}
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]", true
	}
	return host, true
}

// Addrs returns the bound addresses: https (TCP), http3 (UDP) and http;
// empty strings for listeners that are off.
func (s *Server) Addrs() (https, http3, http string) {
	if s.tcpTLS != nil {
		https = s.tcpTLS.Addr().String()
	}
	if s.udp != nil {
		http3 = s.udp.LocalAddr().String()
	}
	if s.plain != nil {
		http = s.plain.Addr().String()
	}
	return https, http3, http
}

// Err reports a listener that stopped on its own (not by Shutdown).
func (s *Server) Err() <-chan error { return s.err }

// Shutdown stops accepting connections, lets in-flight requests finish
// within the grace period (or until ctx ends), then closes what remains.
// The QUIC listener closes before the HTTP/3 server, so no new QUIC
// connection arrives while the server drains. It is safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

// AfterGrace is how long the edge's shutdown waits, after
// ServerConfig.OnGraceEnd, for the requests it made finish to be answered.
const AfterGrace = time.Second

func (s *Server) shutdown(ctx context.Context) error {
	grace := s.cfg.ShutdownGrace
	drainFor := grace
	if s.cfg.OnGraceEnd != nil {
		drainFor += AfterGrace
	}
	ctx, cancel := context.WithTimeoutCause(ctx, drainFor,
		fmt.Errorf("edge: shutdown grace period of %s ended with requests in flight", grace))
	defer cancel()
	if s.cfg.OnGraceEnd != nil {
		t := time.AfterFunc(grace, s.cfg.OnGraceEnd)
		defer t.Stop() // the servers drained in time
	}
	var errs []error
	// 1. Stop accepting new QUIC connections; existing ones keep their
	// transport until the HTTP/3 server has drained them.
	if s.quicLn != nil {
		if err := s.quicLn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close QUIC listener: %w", err))
		}
	}
	// 2. Drain every server in parallel: each closes its listeners first.
	var wg sync.WaitGroup
	var mu sync.Mutex
	drain := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				if cause := context.Cause(ctx); cause != nil && errors.Is(err, context.DeadlineExceeded) {
					err = cause
				}
				mu.Lock()
				errs = append(errs, fmt.Errorf("drain %s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	if s.h3 != nil {
		drain("http3", s.h3.shutdown)
	}
	if s.h1 != nil {
		drain("https", s.h1.Shutdown)
	}
	if s.h0 != nil {
		drain("http", s.h0.Shutdown)
	}
	wg.Wait()
	// 3. Force-close what the grace period left, then the sockets.
	if ctx.Err() != nil {
		for _, srv := range []*http.Server{s.h1, s.h0} {
			if srv != nil {
				_ = srv.Close()
			}
		}
		if s.h3 != nil {
			s.h3.close()
		}
	}
	s.closeListeners()
	s.wg.Wait()
	// The servers have drained or closed their connections, so the
	// workers' requests are ending; bound the wait all the same.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), workersStopTimeout)
	defer wcancel()
	if err := s.workers.stop(wctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// workersStopTimeout bounds how long Shutdown waits for the request
// workers once every connection is drained or closed.
const workersStopTimeout = 5 * time.Second

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.tcpTLS, s.plain} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if s.quicLn != nil {
		_ = s.quicLn.Close()
	}
	if s.transport != nil {
		_ = s.transport.Close()
	}
	if s.udp != nil {
		_ = s.udp.Close()
	}
}
