// Command counter counts requests per path in the function's KV
// namespace: each request reads the path's counter, writes it back plus
// one with compare-and-set, retries when another request won the race,
// and answers the new value. Concurrent requests, on one node or many,
// never lose an increment. A request that lost the race waits a random
// moment, up to twice as long after each loss, before it tries again, so
// that requests racing on one hot key spread out instead of colliding
// again at once.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"time"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

// maxAttempts bounds the compare-and-set retries of one request.
const maxAttempts = 100

// Backoff after a lost compare-and-set: a random wait below
// min(maxBackoff, firstBackoff << attempt).
const (
	firstBackoff = time.Millisecond
	maxBackoff   = 50 * time.Millisecond
)

// backoff waits a random moment before attempt (1 for the first retry).
// The randomness comes from crypto/rand: math/rand's state would replay
// after every memory reset in pooled reset modes
// (docs/guest-protocol.md).
func backoff(attempt int) {
	limit := min(maxBackoff, firstBackoff<<min(attempt, 16))
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		time.Sleep(limit / 2)
		return
	}
	time.Sleep(time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(limit)))
}

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
	for attempt := range maxAttempts {
		if attempt > 0 {
			backoff(attempt)
		}
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
		// Another request wrote first: read again, after a moment.
	}
	return 0, err
}

func main() { gojinn.Run() }
