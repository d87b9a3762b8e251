package gojinn

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseList(t *testing.T) {
	for _, c := range []struct {
		in   string
		next string
		keys []string
	}{
		{"", "", nil},
		{"\x00", "", nil},
		{"\x00a\x00b/c\x00", "", []string{"a", "b/c"}},
		{"b\x00a\x00b\x00", "b", []string{"a", "b"}},
	} {
		next, keys := parseList([]byte(c.in))
		if next != c.next || !reflect.DeepEqual(keys, c.keys) {
			t.Errorf("parseList(%q) = %q %q, want %q %q", c.in, next, keys, c.next, c.keys)
		}
	}
}

// Outside a wasip1 guest every call fails with ErrKVUnavailable and says
// why; the status codes map to their sentinels.
func TestKVOutsideAGuest(t *testing.T) {
	_, _, err := KVGet("k")
	var ke *KVError
	if !errors.Is(err, ErrKVUnavailable) || !errors.As(err, &ke) || !strings.Contains(err.Error(), "GOOS=wasip1") || ke.Op != "get" {
		t.Fatalf("KVGet: %v", err)
	}
	if _, err := KVNamespace("team").Put("k", nil); !errors.Is(err, ErrKVUnavailable) || !strings.Contains(err.Error(), `kv put "k" in team`) {
		t.Fatalf("Put: %v", err)
	}
	if _, err := KV().PutWith("k", nil, KVPutOptions{TTL: -1}); !errors.Is(err, ErrKVInvalid) {
		t.Fatalf("negative TTL: %v", err)
	}
	for status, want := range map[int32]error{-1: ErrKVNotFound, -2: ErrKVConflict, -3: ErrKVForbidden, -4: ErrKVInvalid,
		-5: ErrKVTooLarge, -6: ErrKVQuota, -7: ErrKVUnavailable, -8: ErrKVInternal, -99: ErrKVInternal} {
		if got := kindOf(status); got != want {
			t.Errorf("status %d: %v, want %v", status, got, want)
		}
	}
	if e := kvFail("put", "", "k", kvConflict, 7).(*KVError); e.Version != 7 {
		t.Fatalf("conflict version %d", e.Version)
	}
}

// A positive TTL under a millisecond expires as soon as the host can
// tell, never "not at all"; the host's messages lose the "kv op" that
// KVError.Error already says.
func TestTTLMillisAndHostMessage(t *testing.T) {
	for d, want := range map[time.Duration]int64{0: 0, 500 * time.Microsecond: 1, time.Millisecond: 1, 1500 * time.Microsecond: 1, time.Second: 1000} {
		if got := ttlMillis(d); got != want {
			t.Errorf("ttlMillis(%v) = %d, want %d", d, got, want)
		}
	}
	for msg, want := range map[string]string{
		`kv put: probep/"": invalid: the key is empty`: `probep/"": invalid: the key is empty`,
		`kv get probep/"k": unavailable: no leader`:    `unavailable: no leader`,
		`conflict: version 3`:                          `conflict: version 3`,
		`kv list: no`:                                  `kv list: no`, // another op's prefix is kept
	} {
		if got := hostMessage(map[bool]string{true: "get", false: "put"}[strings.HasPrefix(msg, "kv get")], msg); got != want {
			t.Errorf("hostMessage(%q) = %q, want %q", msg, got, want)
		}
	}
}
