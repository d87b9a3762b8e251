// Command kv is a test guest for the gojinn_kv_v1 host functions: the
// path picks a call of the SDK, or (under /abuse/) a raw call with bad
// pointers or lengths. Query parameters: ns, k, v, ttl (ms), cas, prefix,
// cursor, limit, lin.
package main

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

func init() { gojinn.HandleFunc(handle) }

func main() { gojinn.Run() }

// statusOf maps a KV error to an HTTP status the test checks.
func statusOf(err error) int {
	for _, c := range []struct {
		kind   error
		status int
	}{
		{gojinn.ErrKVNotFound, 404}, {gojinn.ErrKVConflict, 409}, {gojinn.ErrKVForbidden, 403},
		{gojinn.ErrKVInvalid, 400}, {gojinn.ErrKVTooLarge, 413}, {gojinn.ErrKVQuota, 507},
		{gojinn.ErrKVUnavailable, 503},
	} {
		if errors.Is(err, c.kind) {
			return c.status
		}
	}
	return 500
}

func fail(w http.ResponseWriter, err error) {
	var ke *gojinn.KVError
	if errors.As(err, &ke) && errors.Is(err, gojinn.ErrKVConflict) {
		w.Header().Set("X-Version", strconv.FormatUint(ke.Version, 10))
	}
	w.WriteHeader(statusOf(err))
	fmt.Fprint(w, err.Error())
}

func handle(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kv := gojinn.KVNamespace(q.Get("ns"))
	key := q.Get("k")
	switch {
	case r.URL.Path == "/get":
		get := kv.Get
		if q.Get("lin") != "" {
			get = kv.GetLinearizable
		}
		v, ver, err := get(key)
		if err != nil {
			fail(w, err)
			return
		}
		w.Header().Set("X-Version", strconv.FormatUint(ver, 10))
		w.Write(v)
	case r.URL.Path == "/put":
		var o gojinn.KVPutOptions
		if s := q.Get("ttl"); s != "" {
			ms, _ := strconv.Atoi(s)
			o.TTL = time.Duration(ms) * time.Millisecond
		}
		if s := q.Get("cas"); s != "" {
			c, _ := strconv.ParseUint(s, 10, 64)
			o.CAS = &c
		}
		value := []byte(q.Get("v"))
		if s := q.Get("size"); s != "" {
			n, _ := strconv.Atoi(s)
			value = make([]byte, n)
		}
		ver, err := kv.PutWith(key, value, o)
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, ver)
	case r.URL.Path == "/delete":
		if err := kv.Delete(key); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, "deleted")
	case r.URL.Path == "/list":
		limit, _ := strconv.Atoi(q.Get("limit"))
		keys, next, err := kv.ListPage(q.Get("prefix"), q.Get("cursor"), limit)
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, next+"|"+strings.Join(keys, ","))
	case r.URL.Path == "/all":
		keys, err := kv.List(q.Get("prefix"))
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, strings.Join(keys, ","))
	case strings.HasPrefix(r.URL.Path, "/abuse/"):
		fmt.Fprint(w, abuse(strings.TrimPrefix(r.URL.Path, "/abuse/")))
	default:
		w.WriteHeader(404)
	}
}
