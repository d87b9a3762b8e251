package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The systemd unit operations.md gives is one systemd accepts, and it
// keeps the data directory the agent uses by default.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; Debian's systemd package has it")
	}
	unit, err := os.ReadFile("../../deploy/systemd/gojinn-node.service")
	if err != nil {
		t.Fatal(err)
	}
	if def := DefaultConfig().DataDir; !strings.Contains(string(unit), "StateDirectory="+filepath.Base(def)) || filepath.Dir(def) != "/var/lib" {
		t.Fatalf("the unit's StateDirectory does not make the default data_dir %s", def)
	}
	// systemd-analyze checks that ExecStart is executable: point it at
	// this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(unit), "ExecStart=/usr/local/bin/gojinn-node", "ExecStart="+self, 1)
	p := filepath.Join(t.TempDir(), "gojinn-node.service")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
