package loadgen

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// NewH1Client returns a client that speaks HTTP/1.1 only (also over TLS:
// HTTP/2 is off) and keeps up to conc idle connections per host alive, so
// conc workers reuse their connections. tlsCfg may be nil; it is cloned.
// Close it with CloseClient.
func NewH1Client(conc int, tlsCfg *tls.Config) *http.Client {
	conc = max(conc, 1)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	t := tcpTransport(tlsCfg, &protocols)
	t.MaxIdleConns, t.MaxIdleConnsPerHost = conc, conc
	return &http.Client{Transport: t}
}

// tcpTransport is the transport of the TCP clients, speaking protocols.
func tcpTransport(tlsCfg *tls.Config, protocols *http.Protocols) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsCfg.Clone(),
		TLSHandshakeTimeout: 5 * time.Second,
		Protocols:           protocols,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// NewH2Client returns a client that speaks HTTP/2 only, over TLS: all
// requests to one host share one TCP connection with one stream each, as
// with NewH3Client. tlsCfg is cloned. Close it with CloseClient.
func NewH2Client(tlsCfg *tls.Config) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	return &http.Client{Transport: tcpTransport(tlsCfg, &protocols)}
}

// NewH3Client returns a client that speaks HTTP/3 over quic-go. All
// requests to one host share a QUIC connection with one stream each.
// tlsCfg may be nil (system roots); it is cloned. Close it with
// CloseClient, which also closes its UDP socket.
func NewH3Client(tlsCfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http3.Transport{
		TLSClientConfig: tlsCfg.Clone(),
		// Explicit rather than nil so the benchmark's settings are on the
		// page: 0-RTT is never attempted (the client would need a session
		// cache and DialEarly anyway).
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: 5 * time.Second,
			MaxIdleTimeout:       30 * time.Second,
			KeepAlivePeriod:      10 * time.Second,
		},
		DisableCompression: true,
	}}
}

// CloseClient closes a client made by NewH1Client or NewH3Client: idle
// connections, and the transport itself when it can be closed (HTTP/3).
func CloseClient(c *http.Client) error {
	c.CloseIdleConnections()
	if closer, ok := c.Transport.(io.Closer); ok {
		return closer.Close()
	}
	return nil
}
