package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/certmagic"
)

// TLSMode chooses where the edge's certificates come from.
type TLSMode string

// The TLS modes.
const (
	// TLSModeInternal signs certificates with a CA the node creates under
	// its data directory; clients trust it after `gojinn-node ca export`.
	TLSModeInternal TLSMode = "internal"
	// TLSModeACME obtains publicly trusted certificates from an ACME CA
	// (Let's Encrypt by default) through CertMagic.
	TLSModeACME TLSMode = "acme"
	// TLSModeFiles serves one certificate and key read from files.
	TLSModeFiles TLSMode = "files"
)

// TLSConfig configures the edge's certificates. The zero value is mode
// internal without a data directory, which Validate refuses: set DataDir.
type TLSConfig struct {
	// Mode is internal, acme or files. Default internal.
	Mode TLSMode
	// DataDir holds the internal CA (DataDir/tls/ca) and CertMagic's
	// default file storage (DataDir/tls/certmagic). Required in modes
	// internal and acme (unless Storage is set). No default.
	DataDir string
	// Names are the host names the edge serves. Mode internal signs them
	// (localhost, 127.0.0.1 and ::1 are always added); mode acme obtains
	// their certificates at start, in the background. Default none.
	Names []string

	// Email is the ACME account's contact address. Required in mode acme.
	Email string
	// CA is the ACME directory URL (https). Default Let's Encrypt
	// production.
	CA string
	// CARoots are the roots trusted for the ACME server's own HTTPS, for
	// a private CA such as Pebble in tests. Default nil: system roots.
	CARoots *x509.CertPool
	// OnDemand obtains a certificate during the first handshake for a name
	// that has none, if the allow callback given to NewTLS accepts the name
	// (a name some route names). Default false.
	OnDemand bool
	// DisableHTTPChallenge turns off ACME HTTP-01, answered on the plain
	// HTTP port by HTTPChallengeHandler. Default false.
	DisableHTTPChallenge bool
	// DisableTLSALPNChallenge turns off ACME TLS-ALPN-01, answered by the
	// TCP TLS listener. Default false.
	DisableTLSALPNChallenge bool
	// ACMEHTTPPort is the local port where HTTP-01 challenges arrive (CAs
	// connect to 80, which a port forward may bring here). When a
	// listener of this process holds it, as the edge's plain-HTTP one
	// does, that listener answers (HTTPChallengeHandler); only a free
	// port makes CertMagic listen itself. Default 80.
	ACMEHTTPPort int
	// ACMETLSPort is the local port where TLS-ALPN-01 challenges arrive
	// (CAs connect to 443), answered by the TLS listener holding it (its
	// GetCertificate) or, when free, by CertMagic's own. Default 443.
	ACMETLSPort int
	// Storage keeps certificates, keys, ACME accounts, locks and
	// challenge tokens. Default nil: a certmagic.FileStorage under
	// DataDir/tls/certmagic. A storage shared by nodes lets any node answer
	// another's HTTP-01 challenge.
	Storage certmagic.Storage

	// CertFile is the PEM certificate chain for mode files. No default.
	CertFile string
	// KeyFile is the PEM private key for mode files. No default.
	KeyFile string
}

// tlsConfigError names the config field at fault.
func tlsConfigError(field, format string, args ...any) error {
	return fmt.Errorf("tls.%s: %s", field, fmt.Sprintf(format, args...))
}

// mode returns the effective mode.
func (c TLSConfig) mode() TLSMode {
	if c.Mode == "" {
		return TLSModeInternal
	}
	return c.Mode
}

// Validate returns the first problem in c, naming the field
// ("tls.cert_file: ...").
func (c TLSConfig) Validate() error {
	mode := c.mode()
	switch mode {
	case TLSModeInternal, TLSModeACME, TLSModeFiles:
	default:
		return tlsConfigError("mode", "unknown mode %q: use internal, acme or files", c.Mode)
	}
	for _, n := range c.Names {
		if err := validateTLSName(n, mode); err != nil {
			return tlsConfigError("names", "%q: %v", n, err)
		}
	}
	switch {
	case mode != TLSModeFiles && c.CertFile != "":
		return tlsConfigError("cert_file", "only used in mode files (mode is %s)", mode)
	case mode != TLSModeFiles && c.KeyFile != "":
		return tlsConfigError("key_file", "only used in mode files (mode is %s)", mode)
	case mode == TLSModeFiles && len(c.Names) > 0:
		return tlsConfigError("names", "not used in mode files: the names served are the certificate's own (in cert_file); remove tls.names")
	}
	if mode != TLSModeACME {
		switch {
		case c.Email != "":
			return tlsConfigError("email", "only used in mode acme (mode is %s)", mode)
		case c.CA != "":
			return tlsConfigError("ca", "only used in mode acme (mode is %s)", mode)
		case c.OnDemand:
			return tlsConfigError("on_demand", "only used in mode acme (mode is %s)", mode)
		case c.CARoots != nil:
			return tlsConfigError("ca_root", "only used in mode acme (mode is %s)", mode)
		case c.DisableHTTPChallenge:
			return tlsConfigError("disable_http_challenge", "only used in mode acme (mode is %s)", mode)
		case c.DisableTLSALPNChallenge:
			return tlsConfigError("disable_tls_alpn_challenge", "only used in mode acme (mode is %s)", mode)
		}
	}
	switch mode {
	case TLSModeInternal:
		if c.DataDir == "" {
			return tlsConfigError("data_dir", "required in mode internal: the CA is kept there")
		}
	case TLSModeACME:
		return c.validateACME()
	case TLSModeFiles:
		if c.CertFile == "" {
			return tlsConfigError("cert_file", "required in mode files")
		}
		if c.KeyFile == "" {
			return tlsConfigError("key_file", "required in mode files")
		}
	}
	return nil
}

func (c TLSConfig) validateACME() error {
	if c.DataDir == "" && c.Storage == nil {
		return tlsConfigError("data_dir", "required in mode acme: certificates are stored there")
	}
	if c.CA != "" {
		u, err := url.Parse(c.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return tlsConfigError("ca", "%q is not an https URL of an ACME directory", c.CA)
		}
	}
	if c.Email == "" {
		// CertMagic would prompt for one on stdin during ManageSync.
		return tlsConfigError("email", "required in mode acme: the contact address of the CA account")
	}
	if !strings.Contains(c.Email, "@") {
		return tlsConfigError("email", "%q is not an email address", c.Email)
	}
	if c.DisableHTTPChallenge && c.DisableTLSALPNChallenge {
		return tlsConfigError("disable_tls_alpn_challenge", "both HTTP-01 and TLS-ALPN-01 are disabled: the CA could not verify any name")
	}
	if c.ACMEHTTPPort < 0 || c.ACMEHTTPPort > 65535 {
		return tlsConfigError("acme_http_port", "%d is not a port", c.ACMEHTTPPort)
	}
	if c.ACMETLSPort < 0 || c.ACMETLSPort > 65535 {
		return tlsConfigError("acme_tls_port", "%d is not a port", c.ACMETLSPort)
	}
	return nil
}

// validateTLSName accepts a DNS name or, outside mode acme, an IP literal.
// Wildcards need DNS-01, which the edge does not do, so acme refuses them.
func validateTLSName(n string, mode TLSMode) error {
	if n == "" {
		return fmt.Errorf("empty name")
	}
	if net.ParseIP(n) != nil {
		if mode == TLSModeACME {
			return fmt.Errorf("IP addresses need mode internal or files")
		}
		return nil
	}
	if strings.ContainsAny(n, "/: \t@") {
		return fmt.Errorf("not a host name (no scheme, port or path)")
	}
	if strings.HasPrefix(n, "*.") {
		if mode == TLSModeACME {
			return fmt.Errorf("wildcards need the DNS-01 challenge, which is not supported: list the names; or, for names under a domain, leave it out of tls.names and set tls.on_demand and tls.on_demand_wildcards with a route for the wildcard host, so each name a client asks for gets its own certificate")
		}
		n = n[2:]
	}
	if strings.Contains(n, "*") {
		return fmt.Errorf("'*' is only allowed as the whole first label")
	}
	for _, label := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad label %q", label)
		}
	}
	return nil
}

// TLS serves the edge's certificates in the configured mode. Its methods
// are safe for concurrent use.
type TLS struct {
	mode     TLSMode
	getCert  func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	alpnACME bool     // offer acme-tls/1 on TCP
	acme     *acmeTLS // mode acme only
	files    *filesTLS
	ca       *internalCA
}

// NewTLS validates cfg and prepares the certificates of its mode. allow
// says whether a host name not in cfg.Names may get a certificate (mode
// internal signs one, mode acme with OnDemand obtains one); nil allows
// none. In mode acme, cfg.Names are obtained in the background until
// Close or ctx ends; use ManageSync to wait for them. log receives TLS
// events; nil means slog.Default().
func NewTLS(ctx context.Context, cfg TLSConfig, allow func(host string) bool, log *slog.Logger) (*TLS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	t := &TLS{mode: cfg.mode()}
	switch t.mode {
	case TLSModeInternal:
		ca, err := newInternalCA(cfg.DataDir, cfg.Names, allow, log)
		if err != nil {
			return nil, err
		}
		t.ca, t.getCert = ca, ca.GetCertificate
	case TLSModeFiles:
		f, err := newFilesTLS(cfg.CertFile, cfg.KeyFile, log)
		if err != nil {
			return nil, err
		}
		t.files, t.getCert = f, f.GetCertificate
	case TLSModeACME:
		a, err := newACMETLS(ctx, cfg, allow, log)
		if err != nil {
			return nil, err
		}
		t.acme, t.getCert, t.alpnACME = a, a.GetCertificate, !cfg.DisableTLSALPNChallenge
	}
	return t, nil
}

// TCPConfig returns a new TLS config for the TCP listener: HTTP/2 and
// HTTP/1.1 (and acme-tls/1 when TLS-ALPN-01 is on), TLS 1.2 and later.
func (t *TLS) TCPConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if t.alpnACME {
		protos = append(protos, "acme-tls/1")
	}
	return &tls.Config{
		GetCertificate: t.getCert,
		NextProtos:     protos,
		MinVersion:     tls.VersionTLS12,
	}
}

// QUICConfig returns a new TLS config for the HTTP/3 listener: h3 over
// TLS 1.3, as QUIC requires.
func (t *TLS) QUICConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: t.getCert,
		NextProtos:     []string{"h3"},
		MinVersion:     tls.VersionTLS13,
	}
}

// HTTPChallengeHandler answers ACME HTTP-01 challenges (in mode acme, when
// HTTP-01 is on) and passes every other request to next. Mount it on the
// plain-HTTP port. In other modes it returns next.
func (t *TLS) HTTPChallengeHandler(next http.Handler) http.Handler {
	if t.acme == nil {
		return next
	}
	return t.acme.HTTPChallengeHandler(next)
}

// ManageSync, in mode acme, loads the certificates for names from storage
// or obtains them now, renewing them from then on, and returns the first
// error. In other modes it does nothing.
func (t *TLS) ManageSync(ctx context.Context, names []string) error {
	if t.acme == nil {
		return nil
	}
	return t.acme.ManageSync(ctx, names)
}

// ManageAsync, in mode acme, has certificates for names loaded from
// storage or obtained in the background, each name on its own, and
// renewed from then on: a name that fails (a CA outage, a name the CA
// refuses) is retried with backoff without holding up the others, and
// logged each time. In other modes it does nothing. The error is only for
// names CertMagic refuses to manage at all.
func (t *TLS) ManageAsync(names []string) error {
	if t.acme == nil {
		return nil
	}
	return t.acme.ManageAsync(names)
}

// Close stops background certificate work (mode acme: obtaining, renewal
// and CertMagic's cache maintenance). It is safe to call more than once.
func (t *TLS) Close() error {
	if t.acme != nil {
		t.acme.Close()
	}
	return nil
}
