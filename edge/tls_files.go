package edge

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// filesReloadInterval is how often a handshake may look at the files'
// modification times; a replaced pair is served from then on.
const filesReloadInterval = 5 * time.Second

// filesTLS serves a certificate and key read from files, reloaded when
// either file changes. A pair that fails to load keeps the old one in
// service and is logged.
type filesTLS struct {
	certFile, keyFile string
	log               *slog.Logger
	interval          time.Duration // tests shorten it

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
	checked   time.Time
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

func newFilesTLS(certFile, keyFile string, log *slog.Logger) (*filesTLS, error) {
	f := &filesTLS{certFile: certFile, keyFile: keyFile, log: log, interval: filesReloadInterval}
	if err := f.load(); err != nil {
		return nil, err
	}
	if leaf := f.cert.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
		log.Warn("tls: certificate file has expired", "file", certFile, "not_after", leaf.NotAfter)
	}
	return f, nil
}

// load reads the pair. Callers hold mu, or own f exclusively.
func (f *filesTLS) load() error {
	certStamp, err := stampOf(f.certFile)
	if err != nil {
		return filesError("cert_file", f.certFile, err)
	}
	keyStamp, err := stampOf(f.keyFile)
	if err != nil {
		return filesError("key_file", f.keyFile, err)
	}
	certPEM, err := os.ReadFile(f.certFile)
	if err != nil {
		return filesError("cert_file", f.certFile, err)
	}
	keyPEM, err := os.ReadFile(f.keyFile)
	if err != nil {
		return filesError("key_file", f.keyFile, err)
	}
	if !hasPEMBlock(certPEM, func(typ string) bool { return typ == "CERTIFICATE" }) {
		return fmt.Errorf("tls.cert_file: %s holds no PEM CERTIFICATE block", f.certFile)
	}
	if !hasPEMBlock(keyPEM, func(typ string) bool { return strings.HasSuffix(typ, "PRIVATE KEY") }) {
		return fmt.Errorf("tls.key_file: %s holds no PEM PRIVATE KEY block", f.keyFile)
	}
	if encryptedKey(keyPEM) {
		return fmt.Errorf("tls.key_file: %s is encrypted with a passphrase, which the node cannot ask for: decrypt it (openssl pkey -in KEY -out PLAIN) and keep the result readable by the node's user only (0600)", f.keyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if i := leafAt(certPEM, keyPEM); i > 0 {
			return fmt.Errorf("tls.cert_file: %s has the certificate of tls.key_file's key as certificate %d: put it first, then the intermediates (the leaf comes first in a chain)", f.certFile, i+1)
		}
		return fmt.Errorf("tls.key_file: %s does not match the certificate in tls.cert_file %s, or cannot be used: %w",
			f.keyFile, f.certFile, err)
	}
	f.cert, f.certStamp, f.keyStamp = &pair, certStamp, keyStamp
	return nil
}

// encryptedKey reports a passphrase-protected PEM key: PKCS#8 "ENCRYPTED
// PRIVATE KEY", or a traditional one with "Proc-Type: 4,ENCRYPTED".
func encryptedKey(keyPEM []byte) bool {
	for {
		var block *pem.Block
		block, keyPEM = pem.Decode(keyPEM)
		if block == nil {
			return false
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return true
		}
	}
}

// leafAt returns the index of the certificate in certPEM that keyPEM's key
// belongs to, or -1.
func leafAt(certPEM, keyPEM []byte) int {
	for i := 0; ; i++ {
		var block *pem.Block
		block, certPEM = pem.Decode(certPEM)
		if block == nil {
			return -1
		}
		if _, err := tls.X509KeyPair(pem.EncodeToMemory(block), keyPEM); err == nil {
			return i
		}
	}
}

// CheckTLSFiles reads the certificate and key pair of mode files as the
// edge will, so that a configuration can be refused before a node starts.
// Its errors name the config key (tls.cert_file or tls.key_file) and the
// file.
func CheckTLSFiles(certFile, keyFile string) error {
	f := &filesTLS{certFile: certFile, keyFile: keyFile}
	return f.load()
}

func hasPEMBlock(data []byte, ok func(typ string) bool) bool {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return false
		}
		if ok(block.Type) {
			return true
		}
	}
}

func filesError(field, path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tls.%s: %s does not exist: %w", field, path, err)
	}
	return fmt.Errorf("tls.%s: %w", field, err)
}

// GetCertificate serves the pair, first reloading it if a file changed.
func (f *filesTLS) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checkReload()
	return f.cert, nil
}

// reloadIfChanged reloads the pair when a stamp moved. Callers hold mu.
func (f *filesTLS) reloadIfChanged() {
	c, cerr := stampOf(f.certFile)
	k, kerr := stampOf(f.keyFile)
	if cerr == nil && kerr == nil && c == f.certStamp && k == f.keyStamp {
		return
	}
	old := f.cert
	if err := f.load(); err != nil {
		// A half-written pair (cert replaced, key not yet) lands here
		// too; the next check after the second write picks it up.
		f.log.Warn("tls: keeping the current certificate; reloading the files failed", "err", err)
		return
	}
	if leaf := f.cert.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) && old != nil && old.Leaf != nil && time.Now().Before(old.Leaf.NotAfter) {
		// Clients refuse an expired certificate: the one in service is
		// still valid, so it stays. The new stamps are kept, so this is
		// said once per change of the files.
		f.log.Warn("tls: keeping the current certificate; the replaced certificate file has expired", "cert_file", f.certFile, "not_after", leaf.NotAfter, "current_not_after", old.Leaf.NotAfter)
		f.cert = old
		return
	}
	if old != f.cert {
		f.log.Info("tls: reloaded certificate files", "cert_file", f.certFile, "not_after", f.cert.Leaf.NotAfter)
	}
}

// checkReload reloads the pair if a file changed and the last look is
// older than the interval. Callers hold mu.
func (f *filesTLS) checkReload() {
	if now := time.Now(); now.Sub(f.checked) >= f.interval {
		f.checked = now
		f.reloadIfChanged()
	}
}
