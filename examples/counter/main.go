// Command counter counts requests per path in the function's KV
// namespace: each request reads the path's counter, writes it back plus
// one with compare-and-set, retries when another request won the race,
// and answers the new value. Concurrent requests, on one node or many,
// never lose an increment.
package main

import (
	"errors"
	"net/http"
	"strconv"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

// maxAttempts bounds the compare-and-set retries of one request.
const maxAttempts = 100

func init() { gojinn.HandleFunc(count) }

func count(w http.ResponseWriter, r *http.Request) {
	n, err := increment(r.URL.Path)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, gojinn.ErrKVUnavailable) || errors.Is(err, gojinn.ErrKVConflict) {
			status = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(strconv.AppendUint(nil, n, 10))
}

// increment adds one to the counter of key and returns the new value.
func increment(key string) (uint64, error) {
	kv := gojinn.KV()
	var err error
	for range maxAttempts {
		var cur, version uint64
		value, v, gerr := kv.Get(key)
		switch {
		case errors.Is(gerr, gojinn.ErrKVNotFound):
			// version 0: create only
		case gerr != nil:
			return 0, gerr
		default:
			if cur, err = strconv.ParseUint(string(value), 10, 64); err != nil {
				return 0, errors.New("counter " + strconv.Quote(key) + " holds " + strconv.Quote(string(value)) + ", not a number")
			}
			version = v
		}
		next := cur + 1
		_, err = kv.CompareAndSwap(key, strconv.AppendUint(nil, next, 10), version)
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, gojinn.ErrKVConflict) {
			return 0, err
		}
		// Another request wrote first: read again.
	}
	return 0, err
}

func main() { gojinn.Run() }
