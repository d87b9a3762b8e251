// Command abuse is a test guest that misbehaves on request, so tests can
// show that every misbehaviour ends one invocation with a typed error and
// nothing else. The path selects the behaviour.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

// secret is package state: with reset on, a request must never see the
// value the previous one stored.
var (
	secret  string
	counter int
	hog     [][]byte
	sink    []byte
)

func init() { gojinn.HandleFunc(handle) }

func main() { gojinn.Run() }

func handle(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, _ := strconv.Atoi(q.Get("n"))
	switch r.URL.Path {
	case "/ok":
		fmt.Fprint(w, "ok")
	case "/loop":
		for {
			counter++
		}
	case "/spin": // busy for n milliseconds of wall time
		end := time.Now().Add(time.Duration(n) * time.Millisecond)
		for time.Now().Before(end) {
			counter++
		}
		fmt.Fprint(w, "spun")
	case "/sleep":
		time.Sleep(time.Duration(n) * time.Millisecond)
		fmt.Fprint(w, "slept")
	case "/panic":
		var m map[string]int
		m["boom"]++ // a nil-map panic, recovered by the SDK into a 500
	case "/fanout": // n goroutines that each sleep ms milliseconds and add to a sum
		ms, _ := strconv.Atoi(q.Get("ms"))
		var wg sync.WaitGroup
		var mu sync.Mutex
		sum := 0
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(ms) * time.Millisecond)
				mu.Lock()
				sum += i
				mu.Unlock()
			}()
		}
		wg.Wait()
		fmt.Fprint(w, sum)
	case "/goexit":
		go func() { panic("unrecovered panic in a goroutine") }()
		time.Sleep(time.Second)
	case "/exit":
		os.Exit(n)
	case "/oom":
		for {
			hog = append(hog, make([]byte, 1<<20))
		}
	case "/retain": // keep n MiB live, then churn through c MiB of garbage
		c, _ := strconv.Atoi(q.Get("c"))
		hog = nil
		for range n {
			hog = append(hog, make([]byte, 1<<20))
		}
		for range c {
			sink = make([]byte, 1<<20)
		}
		fmt.Fprintf(w, "retained %d MiB, churned %d MiB", len(hog), c)
	case "/stack":
		fmt.Fprint(w, recurse(1))
	case "/garbage": // n KiB of short-lived 1 KiB objects
		for range n {
			sink = make([]byte, 1<<10)
		}
		fmt.Fprint(w, "ok")
	case "/gcstats": // collections so far, forced (runtime.GC) and automatic, and the heap
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}, {Name: "/gc/cycles/automatic:gc-cycles"},
			{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
		metrics.Read(s)
		fmt.Fprintf(w, "forced=%d automatic=%d objects=%d live=%d goal=%d", s[0].Value.Uint64(), s[1].Value.Uint64(),
			s[2].Value.Uint64(), s[3].Value.Uint64(), s[4].Value.Uint64())
	case "/big": // n bytes of body
		w.Write([]byte(strings.Repeat("x", n)))
	case "/stdout":
		os.Stdout.WriteString(strings.Repeat("o", n))
		fmt.Fprint(w, "wrote stdout")
	case "/stderr":
		os.Stderr.WriteString(strings.Repeat("e", n))
		fmt.Fprint(w, "wrote stderr")
	case "/state": // report the previous secret and counter, then store new ones
		prev, c := secret, counter
		secret = q.Get("secret")
		counter++
		fmt.Fprintf(w, "prev=%s counter=%d", prev, c)
	case "/env":
		fmt.Fprint(w, os.Getenv(q.Get("k")), "|", len(os.Environ()))
	case "/rand":
		b := make([]byte, 16)
		rand.Read(b)
		fmt.Fprint(w, hex.EncodeToString(b))
	case "/args": // os.Args, after the flag package parsed them
		flag.Parse()
		fmt.Fprint(w, strings.Join(os.Args, " "), "|", flag.NArg())
	case "/time":
		fmt.Fprint(w, time.Now().UnixNano())
	case "/fs":
		_, err := os.ReadFile("/etc/passwd")
		fmt.Fprint(w, err != nil)
	case "/net":
		_, err := net.Dial("tcp", "127.0.0.1:80")
		fmt.Fprint(w, err != nil)
	case "/body":
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	case "/badstatus":
		w.WriteHeader(42)
	default:
		http.NotFound(w, r)
	}
}

//go:noinline
func recurse(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	return recurse(n+1) + int(pad[3])
}
