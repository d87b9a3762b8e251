package cluster

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/storage"
)

func TestKeygenGenerateAndParse(t *testing.T) {
	seen := map[string]bool{}
	for range 8 {
		s, err := GenerateGossipKey()
		if err != nil {
			t.Fatal(err)
		}
		if seen[s] {
			t.Fatalf("GenerateGossipKey repeated %s", s)
		}
		seen[s] = true
		k, err := ParseGossipKey(s)
		if err != nil || len(k) != GossipKeySize {
			t.Fatalf("ParseGossipKey(%s) = %d bytes, %v", s, len(k), err)
		}
		if again, err := ParseGossipKey("  " + s + "\n"); err != nil || string(again) != string(k) {
			t.Fatalf("white space around the key: %v", err)
		}
	}
}

func TestKeygenParseForms(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789abcdef")[:16]
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := ParseGossipKey(enc.EncodeToString(raw)); err != nil || string(k) != string(raw) {
			t.Errorf("%v: %v", enc, err)
		}
	}
	for _, n := range []int{16, 24, 32} {
		if _, err := ParseGossipKey(base64.StdEncoding.EncodeToString(make([]byte, n))); err != nil {
			t.Errorf("%d-byte key: %v", n, err)
		}
	}
}

func TestKeygenParseErrors(t *testing.T) {
	secret := "c2VjcmV0LXRoYXQtbXVzdC1ub3QtYmUtZWNob2VkIQ!!"
	for _, tt := range []struct{ in, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{secret, "not valid base64"},
		{base64.StdEncoding.EncodeToString(make([]byte, 15)), "15 bytes"},
		{base64.StdEncoding.EncodeToString(make([]byte, 33)), "33 bytes"},
		{base64.StdEncoding.EncodeToString(make([]byte, 64)), "64 bytes"},
	} {
		_, err := ParseGossipKey(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ParseGossipKey(%q) = %v, want ErrInvalid containing %q", tt.in, err, tt.want)
		}
		if err != nil && strings.TrimSpace(tt.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
			t.Errorf("the error echoes the key: %v", err)
		}
	}
}

func TestKeygenFingerprint(t *testing.T) {
	a, b := keyFingerprint(make([]byte, 32)), keyFingerprint(append(make([]byte, 31), 1))
	if len(a) != 16 || a == b {
		t.Fatalf("fingerprints %q %q", a, b)
	}
}
