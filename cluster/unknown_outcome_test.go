package cluster

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// dropApplyAnswer delivers forwarded writes to the leader but, while
// armed, drops the leader's answer to the next one, as a connection cut
// after the request was sent would.
type dropApplyAnswer struct {
	next  http.RoundTripper
	armed atomic.Bool

	mu      sync.Mutex
	dropped []applyResponse // the answers the caller never saw
}

func (d *dropApplyAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/peer/v1/apply") || !d.armed.CompareAndSwap(true, false) {
		return resp, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out applyResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.dropped = append(d.dropped, out)
	d.mu.Unlock()
	return nil, errors.New("test: the leader's answer was dropped")
}

func (d *dropApplyAnswer) last() applyResponse {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dropped[len(d.dropped)-1]
}

// A forwarded write whose answer is lost after the leader applied it is
// not retried: the caller gets ErrUnknownOutcome (503 unavailable, with a
// message saying the outcome is unknown), not a false conflict with its
// own create-only write, and a plain put is applied exactly once.
func TestForwardedWriteWithLostAnswerIsNotRetried(t *testing.T) {
	h, leader, f := threeVoters(t)
	ctx := testCtx(t)
	drop := &dropApplyAnswer{next: &http.Transport{}}
	// A copy of the follower's store forwarding through drop; the
	// follower's own store (used by its other goroutines) is untouched.
	fs := *f.store
	fs.EnableForwarding(&PeerClient{HTTP: &http.Client{Transport: drop, Timeout: 10 * time.Second}, Secret: h.secret}, peersFrom{h, f.i})

	drop.armed.Store(true)
	_, err := fs.KVCAS(ctx, "app", "k", []byte("mine"), 0, 0)
	var ce *storage.KVConflictError
	if errors.As(err, &ce) || !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("create-only put whose answer was lost: %v; want ErrUnknownOutcome", err)
	}
	applied := drop.last()
	if applied.Code != "" || applied.KV.Version == 0 {
		t.Fatalf("the leader's dropped answer: %+v; want the applied write", applied)
	}
	e, err := leader.store.KVGet(ctx, "app", "k", ConsistencyLinearizable)
	if err != nil || string(e.Value) != "mine" || e.Version != applied.KV.Version {
		t.Fatalf("key after the lost answer: %q version %d, %v; want %q version %d", e.Value, e.Version, err, "mine", applied.KV.Version)
	}

	drop.armed.Store(true)
	_, putErr := fs.KVPut(ctx, "app", "k", []byte("again"), KVWriteOptions{})
	if !errors.Is(putErr, ErrUnknownOutcome) {
		t.Fatalf("put whose answer was lost: %v; want ErrUnknownOutcome", putErr)
	}
	applied = drop.last()
	e, err = leader.store.KVGet(ctx, "app", "k", ConsistencyLinearizable)
	if err != nil || string(e.Value) != "again" || e.Version != applied.KV.Version {
		t.Fatalf("key after the lost answer: %q version %d, %v; want it written once, at version %d", e.Value, e.Version, err, applied.KV.Version)
	}

	// What callers see: the admin API answers 503 unavailable saying the
	// outcome is unknown; a guest gets the runtime's unavailable error.
	ae := toAPIError(putErr)
	if ae.Status != http.StatusServiceUnavailable || ae.Code != CodeUnavailable || ae.RetryAfter == 0 ||
		!strings.Contains(ae.Message, "outcome is unknown") || !strings.Contains(ae.Message, "may or may not have been applied") {
		t.Fatalf("API error: %d %s %v %q", ae.Status, ae.Code, ae.RetryAfter, ae.Message)
	}
	if herr := hostKVError(putErr); !errors.Is(herr, runtime.ErrKVUnavailable) || !strings.Contains(herr.Error(), "may or may not have been applied") {
		t.Fatalf("guest error: %v", herr)
	}

	// Unarmed, forwarding works as before.
	if _, err := fs.KVPut(ctx, "app", "k", []byte("last"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A leader that lost leadership while committing a forwarded write
// answers unknown_outcome, which the follower does not retry, rather
// than not_leader, which it would.
func TestPeerAPILostLeadershipIsUnknownOutcome(t *testing.T) {
	rec := httptest.NewRecorder()
	(&peerAPI{}).fail(rec, &NotLeaderError{LeaderID: "n2", LeaderAddr: "10.0.0.2:7947", Lost: true})
	var body peerErrorBody
	if err := json.NewDecoder(rec.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || body.Error.Code != "unknown_outcome" {
		t.Fatalf("lost leadership: %d %q", rec.Code, body.Error.Code)
	}
	err := codeError(body.Error.Code, body.Error.Message)
	if !outcomeUnknown(err) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotLeader) {
		t.Fatalf("the follower's error: %v", err)
	}
	if !outcomeUnknown(&NotLeaderError{Lost: true}) || outcomeUnknown(&NotLeaderError{LeaderID: "n2"}) {
		t.Fatal("only a lost leadership leaves the outcome unknown")
	}
}

// On a follower, a guest's delete returns once the follower's own
// replica no longer has the key, as a put returns once it has it.
func TestHostKVDeleteSeesOwnWriteOnFollowers(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader := h.waitLeader()
	ctx := testCtx(t)
	for _, n := range h.nodes {
		if n == leader {
			continue
		}
		kv := NewHostKV(n.store)
		for i := range 5 {
			if _, err := kv.Put(ctx, "counter", "k", []byte{byte(i)}, 0, runtime.KVNoCAS); err != nil {
				t.Fatalf("put %d on a follower: %v", i, err)
			}
			if err := kv.Delete(ctx, "counter", "k"); err != nil {
				t.Fatalf("delete %d on a follower: %v", i, err)
			}
			if val, v, err := kv.Get(ctx, "counter", "k", false); !errors.Is(err, runtime.ErrKVNotFound) {
				t.Fatalf("local read after delete %d: %v version %d, %v; want not found", i, val, v, err)
			}
		}
	}
}
