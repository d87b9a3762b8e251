package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// memKV is the API's Registry plus KV over a storage.Registry applied
// directly, without Raft: the same FSM, at fuzzing speed.
type memKV struct {
	*memRegistry
	mu     sync.Mutex
	reg    *storage.Registry
	index  uint64
	limits storage.KVLimits
}

var _ KV = (*memKV)(nil)

func newMemKV() *memKV {
	return &memKV{memRegistry: newMemRegistry(), reg: storage.NewRegistry(), limits: storage.KVLimits{MaxValueBytes: 256, MaxKeys: 50}.WithDefaults()}
}

func (m *memKV) apply(c storage.KVCommand) (storage.KVResult, error) {
	c.Now = time.Now().UTC()
	b, err := storage.EncodeKVCommand(c)
	if err != nil {
		return storage.KVResult{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.index++
	res := m.reg.ApplyCommand(m.index, b)
	return res.KV, res.Err
}

func (m *memKV) KVLimits() storage.KVLimits { return m.limits }

func (m *memKV) KVGet(_ context.Context, ns, key string, _ Consistency) (storage.KVEntry, error) {
	return m.reg.State().KVGet(ns, key, time.Now())
}

func (m *memKV) KVList(_ context.Context, ns string, opts storage.KVListOptions, _ Consistency) (storage.KVPage, error) {
	return m.reg.State().KVList(ns, opts, time.Now()), nil
}

func (m *memKV) KVNamespace(ns string) storage.KVNamespaceInfo { return m.reg.State().KVNamespace(ns) }

func (m *memKV) KVPut(_ context.Context, ns, key string, value []byte, opts KVWriteOptions) (uint64, error) {
	c := storage.KVCommand{Op: storage.OpKVPut, Namespace: ns, Key: key, Value: value, CAS: opts.CAS, MaxKeys: m.limits.MaxKeys}
	if opts.TTL > 0 {
		c.ExpiresAt = time.Now().Add(opts.TTL)
	}
	res, err := m.apply(c)
	return res.Version, err
}

func (m *memKV) KVDelete(_ context.Context, ns, key string, opts KVWriteOptions) error {
	_, err := m.apply(storage.KVCommand{Op: storage.OpKVDelete, Namespace: ns, Key: key, CAS: opts.CAS})
	return err
}

func (m *memKV) KVShare(_ context.Context, ns string, share []string) error {
	_, err := m.apply(storage.KVCommand{Op: storage.OpKVShare, Namespace: ns, Share: share})
	return err
}

// FuzzAPIKV sends arbitrary keys, queries, conditions and values to the
// KV endpoints: every answer is a success or a JSON error below 500, and
// a value written is read back byte for byte under the same key.
func FuzzAPIKV(f *testing.F) {
	f.Add("k", "", "", []byte("v"))
	f.Add("a/b/../c", "ttl=1h", "", []byte{0, 1, 2})
	f.Add(".", "cas=0", "", []byte(""))
	f.Add("x", "cas=18446744073709551615", `"1"`, []byte("v"))
	f.Add("\u00e9\x00", "ttl=-1s&cas=1", "*", []byte("v"))
	f.Add("k", "consistency=linearizable&limit=5&prefix=k&cursor=aw", "W/\"3\"", bytes.Repeat([]byte("v"), 300))
	kv := newMemKV()
	h, err := NewAPI(APIConfig{Registry: kv, Blobs: newMemBlobs(), TokenHash: HashToken(testToken)})
	if err != nil {
		f.Fatal(err)
	}
	serve := func(t *testing.T, method, target, ifMatch string, body []byte) *httptest.ResponseRecorder {
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		if err != nil {
			return nil // not a URL a client could send
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 300 {
			return rec
		}
		var env struct {
			Error *APIError `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Code == "" {
			t.Fatalf("%s %s: %d %q is not an error envelope (%v)", method, target, rec.Code, rec.Body.String(), err)
		}
		if rec.Code >= 500 && rec.Code != http.StatusInsufficientStorage {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body.String())
		}
		return rec
	}
	f.Fuzz(func(t *testing.T, key, query, ifMatch string, value []byte) {
		path := kvPath("fz", key)
		put := serve(t, "PUT", path+"?"+query, ifMatch, value)
		if put != nil && put.Code == http.StatusOK {
			get := serve(t, "GET", path, "", nil)
			if get.Code != http.StatusOK || !bytes.Equal(get.Body.Bytes(), value) {
				t.Fatalf("key %q: wrote %q, read %d %q", key, value, get.Code, get.Body.Bytes())
			}
			if get.Header().Get("ETag") != put.Header().Get("ETag") {
				t.Fatalf("key %q: ETag %q after a put answered %q", key, get.Header().Get("ETag"), put.Header().Get("ETag"))
			}
		}
		serve(t, "GET", "/v1/kv/fz?"+query, "", nil)
		serve(t, "DELETE", path+"?"+query, ifMatch, nil)
	})
}
