package main

// Tests named by docs/security-model.md for the secrets a cluster agent
// writes at its first start and for the admin listener's /metrics.

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/cluster"
)

// A bootstrapping agent creates its data directory with mode 0700, prints
// the join token once on stdout (never in the log), writes it to
// cluster.join_token_file with mode 0600, and keeps it in clear in no file
// of the data directory. A restart prints no join token and leaves the
// file alone; a data directory that already exists keeps its mode.
func TestAgentJoinTokenAndDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent twice (a few seconds); make test runs it")
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "join-token")
	conf := `join_token_file = "` + tokenFile + `"` + "\n"
	n := startAgentNode(t, filepath.Join(dir, "n1"), conf)
	tok := n.joinToken
	if tok == "" {
		t.Fatal("the bootstrap node printed no join token")
	}
	if m := filePerm(t, n.data); m != 0o700 {
		t.Errorf("data directory: mode %o, want 700", m)
	}
	if m := filePerm(t, tokenFile); m != 0o600 {
		t.Errorf("join token file: mode %o, want 600", m)
	}
	if b, _ := os.ReadFile(tokenFile); strings.TrimSpace(string(b)) != tok {
		t.Fatalf("join token file holds %q, want the printed token", b)
	}
	n.stop()
	if strings.Contains(n.stderr.String(), tok) {
		t.Errorf("the join token reached the log:\n%s", n.stderr.String())
	}
	err := filepath.WalkDir(n.data, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(tok)) {
			t.Errorf("%s holds the join token in clear", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Restart over the same data directory, made group-readable
	// meanwhile, its raft directory too (raft's own files are 0644).
	for _, d := range []string{n.data, filepath.Join(n.data, "raft")} {
		if err := os.Chmod(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	again := startAgentNode(t, filepath.Join(dir, "n1"), conf)
	if again.joinToken != "" {
		t.Errorf("a restart printed the join token again")
	}
	again.stop()
	if strings.Contains(again.stderr.String(), tok) {
		t.Errorf("the join token reached the log on restart:\n%s", again.stderr.String())
	}
	if b, _ := os.ReadFile(tokenFile); strings.TrimSpace(string(b)) != tok {
		t.Errorf("a restart rewrote the join token file: %q", b)
	}
	if m := filePerm(t, n.data); m != 0o750 {
		t.Errorf("an existing data directory: mode %o, want it kept at 750", m)
	}
	if m := filePerm(t, filepath.Join(n.data, "raft")); m != 0o700 {
		t.Errorf("raft directory (function env and KV data in 0644 files): mode %o after a restart, want 700", m)
	}
}

// A start that fails after it created the admin token and, bootstrapping a
// cluster, the join token (here the admin port is taken, which the node
// finds out after both) shows neither; they are not lost: the next start
// that succeeds shows both, and they work. The start after that shows
// neither, and then no file holds either in clear.
func TestTokensShownAfterAFailedStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent three times (a few seconds); make test runs it")
	}
	dir := t.TempDir()
	conf := writeAgentConfig(t, dir, "")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb lockedBuffer
	code := runEnv(t.Context(), []string{"agent", "--config", conf, "--admin", taken.Addr().String()}, &out, &errb, func(string) string { return "" })
	taken.Close()
	if code != 1 {
		t.Fatalf("agent with its admin port taken: exit %d, want 1\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	if strings.Contains(out.String(), "gjn_") || tokenRE.MatchString(out.String()) {
		t.Fatalf("a failed start printed a token:\n%s", out.String())
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, cluster.TokenHashFile)); err != nil {
		t.Fatalf("the failed start did not get as far as creating the admin token (the test needs it to): %v", err)
	}

	n := startAgentNode(t, dir, "")
	if n.token == "" || n.joinToken == "" {
		t.Fatalf("the start after a failed one showed admin token %q, join token %q; want both", n.token, n.joinToken)
	}
	// The admin token is the one whose hash the failed start stored.
	n.cli(0, "functions")
	if _, err := cluster.ParseJoinToken(n.joinToken); err != nil {
		t.Fatalf("join token: %v", err)
	}
	n.stop()
	secrets := []string{n.token, n.joinToken}

	again := startAgentNode(t, dir, "")
	if again.token != "" || again.joinToken != "" {
		t.Errorf("the next start showed the tokens again (admin %q, join %q)", again.token, again.joinToken)
	}
	again.stop()
	err = filepath.WalkDir(data, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a token in clear after it was shown", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// /metrics on the admin listener refuses a missing, wrong, truncated or
// non-Bearer token with 401, and serves the admin token.
func TestMetricsTokenChecks(t *testing.T) {
	n := startAgentNode(t, t.TempDir(), "")
	if n.token == "" {
		t.Fatal("the agent printed no admin token")
	}
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer gjn_wrong", http.StatusUnauthorized},
		{"Bearer " + n.token[:len(n.token)-1], http.StatusUnauthorized},
		{"Basic " + n.token, http.StatusUnauthorized},
		{"Bearer " + n.token, http.StatusOK},
	} {
		req, _ := http.NewRequest("GET", "http://"+n.admin+"/metrics", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := n.plainClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("/metrics with Authorization %q: %d, want %d", strings.Replace(c.auth, n.token, "<token>", 1), resp.StatusCode, c.want)
		}
	}
}

func filePerm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
