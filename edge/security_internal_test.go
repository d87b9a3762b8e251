package edge

// Internal tests named by docs/security-model.md for the files the edge's
// TLS keeps under the data directory.

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/edge/internal/pebbletest"
)

// After an ACME issuance against a real ACME server (Pebble), every file
// under DATA/tls/certmagic (account key, certificate key, certificate,
// metadata) is readable by the owner only, and every directory is 0700.
// At least one private key is among the files, so the check has
// something to bite on.
func TestACMEFilesArePrivate(t *testing.T) {
	tlsLn, tlsPort := tlsListenTCP(t)
	p := pebbletest.New(t, 1, tlsPort) // HTTP-01 is off: nothing dials port 1
	dir := ""
	tl := startACMETLS(t, p, func(c *TLSConfig) {
		c.Names = []string{"localhost"}
		c.DisableHTTPChallenge = true
		c.ACMETLSPort = tlsPort
		dir = c.DataDir
	}, nil)
	tlsServeHTTPSOn(t, tlsLn, tl.TCPConfig())
	var err error
	tlsWaitFor(t, acmeTestTimeout, func() bool {
		_, err = tlsHandshake(tlsPort, "localhost", p.IssuerRoots())
		return err == nil
	}, func() string { return "no certificate from Pebble yet; last handshake: " + tlsErrString(err) })

	root := filepath.Join(dir, "tls", "certmagic")
	keys := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		switch {
		case d.IsDir() && perm != 0o700:
			t.Errorf("%s: directory mode %o, want 700", path, perm)
		case !d.IsDir() && perm&0o077 != 0:
			t.Errorf("%s: file mode %o, readable beyond the owner", path, perm)
		}
		if strings.HasSuffix(path, ".key") {
			keys++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys < 2 { // the ACME account's and the certificate's
		t.Fatalf("%d private keys under %s after issuance, want the account's and the certificate's", keys, root)
	}
}
