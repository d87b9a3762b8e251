package guestlog

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// Errors of Subscribe.
var (
	// ErrClosed means the buffer was closed (the node is stopping).
	ErrClosed = errors.New("guest log buffer closed")
	// ErrTooManySubscribers means MaxSubscribers followers are connected.
	ErrTooManySubscribers = errors.New("too many log followers")
)

// Config configures a Buffer. Zero fields take the default stated on
// each.
type Config struct {
	// Logger receives every record as one line (level and message the
	// record's, attributes from runtime.LogRecord.Attrs), so guest lines
	// reach the node's log with the node's name if the logger carries it.
	// Nil: records are only buffered.
	Logger *slog.Logger
	// LinesPerFunction is how many recent records are kept per function.
	// Default 1000.
	LinesPerFunction int
	// BytesPerFunction bounds the memory of one function's records
	// (message, fields and ids). Default 1 MiB.
	BytesPerFunction int
	// MaxFunctions is how many functions have records kept; past it the
	// records of the function that logged least recently are dropped.
	// Default 1024.
	MaxFunctions int
	// MaxBytes bounds the memory of all records; past it the records of
	// the functions that logged least recently are dropped. Default
	// 64 MiB.
	MaxBytes int
	// SubscriberBuffer is how many records a follower may fall behind
	// before it loses lines. Default 256.
	SubscriberBuffer int
	// MaxSubscribers bounds the followers connected at once. Default 256.
	MaxSubscribers int
}

func (c Config) withDefaults() Config {
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&c.LinesPerFunction, 1000}, {&c.BytesPerFunction, 1 << 20}, {&c.MaxFunctions, 1024},
		{&c.MaxBytes, 64 << 20}, {&c.SubscriberBuffer, 256}, {&c.MaxSubscribers, 256},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	return c
}

// Filter selects records.
type Filter struct {
	// TraceID keeps only the records of this trace; empty keeps all.
	TraceID string
	// Since keeps only records at or after it; zero keeps all.
	Since time.Time
	// Limit keeps the newest Limit records of Recent (and of a
	// subscription's backlog); 0 keeps all that are buffered.
	Limit int
}

func (f *Filter) match(r *runtime.LogRecord) bool {
	return (f.TraceID == "" || r.TraceID == f.TraceID) && (f.Since.IsZero() || !r.Time.Before(f.Since))
}

// Buffer keeps the recent records of every function, hands new ones to
// followers and forwards all to a logger. It implements runtime.LogSink
// and is safe for concurrent use. It starts no goroutine.
type Buffer struct {
	cfg Config

	mu     sync.Mutex
	fns    map[string]*list.Element // of *ring, most recently logged at the front
	lru    *list.List
	bytes  int // of every ring
	subs   map[string]map[*Subscription]struct{}
	nsubs  int
	closed bool
}

// New returns an empty buffer.
func New(cfg Config) *Buffer {
	return &Buffer{cfg: cfg.withDefaults(), fns: map[string]*list.Element{}, lru: list.New(), subs: map[string]map[*Subscription]struct{}{}}
}

// Log keeps rec, sends it to the function's followers and forwards it to
// the logger. It never blocks on a follower.
func (b *Buffer) Log(rec runtime.LogRecord) {
	b.mu.Lock()
	b.keep(&rec)
	for s := range b.subs[rec.Function] {
		s.offer(&rec)
	}
	b.mu.Unlock()
	if l := b.cfg.Logger; l != nil {
		l.LogAttrs(context.Background(), rec.Level, rec.Message, rec.Attrs()...)
	}
}

// Keep stores rec for the logs endpoint and its followers, like Log,
// without writing it to Config.Logger: for records the node has logged
// in its own words already (an invocation failure).
func (b *Buffer) Keep(rec runtime.LogRecord) {
	b.mu.Lock()
	b.keep(&rec)
	for s := range b.subs[rec.Function] {
		s.offer(&rec)
	}
	b.mu.Unlock()
}

// keep adds rec to its function's ring, evicting as the bounds say.
// b.mu is held.
func (b *Buffer) keep(rec *runtime.LogRecord) {
	e := b.fns[rec.Function]
	if e == nil {
		for len(b.fns) >= b.cfg.MaxFunctions {
			b.evictOldest()
		}
		e = b.lru.PushFront(&ring{name: rec.Function})
		b.fns[rec.Function] = e
	} else {
		b.lru.MoveToFront(e)
	}
	r := e.Value.(*ring)
	b.bytes -= r.bytes
	r.push(*rec, b.cfg.LinesPerFunction, b.cfg.BytesPerFunction)
	b.bytes += r.bytes
	for b.bytes > b.cfg.MaxBytes && b.lru.Back() != e {
		b.evictOldest()
	}
}

// evictOldest drops the ring of the function that logged least recently.
func (b *Buffer) evictOldest() {
	e := b.lru.Back()
	r := e.Value.(*ring)
	b.lru.Remove(e)
	delete(b.fns, r.name)
	b.bytes -= r.bytes
}

// Has reports whether records of function are buffered.
func (b *Buffer) Has(function string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fns[function] != nil
}

// Recent returns the buffered records of function that match f, oldest
// first.
func (b *Buffer) Recent(function string, f Filter) []runtime.LogRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recent(function, f)
}

func (b *Buffer) recent(function string, f Filter) []runtime.LogRecord {
	e := b.fns[function]
	if e == nil {
		return nil
	}
	return e.Value.(*ring).matching(f)
}

// Subscribe starts following function's new records that match f (its
// Limit applies to the backlog only). The subscription's Backlog holds
// the buffered records that match, taken at the same instant, so a
// follower neither misses nor repeats a line. The subscription ends when
// ctx ends, when Close is called, or when the buffer closes; its channel
// is then closed.
func (b *Buffer) Subscribe(ctx context.Context, function string, f Filter) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, ErrClosed
	case b.nsubs >= b.cfg.MaxSubscribers:
		return nil, fmt.Errorf("%w: %d are connected; stop one or retry later", ErrTooManySubscribers, b.nsubs)
	}
	ch := make(chan Event, b.cfg.SubscriberBuffer)
	s := &Subscription{C: ch, ch: ch, b: b, function: function, filter: f}
	s.Backlog = b.recent(function, f)
	if b.subs[function] == nil {
		b.subs[function] = map[*Subscription]struct{}{}
	}
	b.subs[function][s] = struct{}{}
	b.nsubs++
	s.stop = context.AfterFunc(ctx, s.Close)
	return s, nil
}

// Close ends every subscription; later ones fail with ErrClosed. Records
// are still kept and forwarded.
func (b *Buffer) Close() {
	b.mu.Lock()
	b.closed = true
	var all []*Subscription
	for _, set := range b.subs {
		for s := range set {
			all = append(all, s)
		}
	}
	b.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
}

// Event is what a follower receives: a record, after Dropped records it
// lost because it read too slowly.
type Event struct {
	Record runtime.LogRecord
	// Dropped is how many records were not delivered just before this
	// one.
	Dropped uint64
}

// Subscription is one follower of a function's records.
type Subscription struct {
	// Backlog holds the buffered records that matched when it started.
	Backlog []runtime.LogRecord
	// C delivers new records; it is closed when the subscription ends.
	C <-chan Event

	ch       chan Event
	b        *Buffer
	function string
	filter   Filter
	stop     func() bool // unregisters the context callback
	lost     uint64      // records dropped since the last delivery; b.mu
	done     bool        // b.mu
}

// offer delivers rec if it matches, never blocking. b.mu is held.
func (s *Subscription) offer(rec *runtime.LogRecord) {
	if !s.filter.match(rec) {
		return
	}
	select {
	case s.ch <- Event{Record: *rec, Dropped: s.lost}:
		s.lost = 0
	default:
		s.lost++
	}
}

// Close ends the subscription and closes C. It may be called more than
// once.
func (s *Subscription) Close() {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	if s.stop != nil {
		s.stop()
	}
	delete(b.subs[s.function], s)
	if len(b.subs[s.function]) == 0 {
		delete(b.subs, s.function)
	}
	b.nsubs--
	close(s.ch)
}

// Lost returns how many records were dropped after the last one
// delivered (a follower that stops reading learns it here).
func (s *Subscription) Lost() uint64 {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.lost
}

// ring is one function's recent records, oldest first, bounded in count
// and bytes.
type ring struct {
	name  string
	recs  []runtime.LogRecord // circular, len = capacity once full
	head  int                 // index of the oldest
	n     int
	bytes int
}

// size estimates what a record holds in memory.
func size(r *runtime.LogRecord) int {
	return 128 + len(r.Function) + len(r.Version) + len(r.RequestID) + len(r.TraceID) + len(r.Message) + len(r.Fields)
}

func (r *ring) at(i int) *runtime.LogRecord { return &r.recs[(r.head+i)%len(r.recs)] }

func (r *ring) push(rec runtime.LogRecord, maxLines, maxBytes int) {
	sz := size(&rec)
	for r.n > 0 && (r.n >= maxLines || r.bytes+sz > maxBytes) {
		r.bytes -= size(r.at(0))
		*r.at(0) = runtime.LogRecord{}
		r.head = (r.head + 1) % len(r.recs)
		r.n--
	}
	if r.n == len(r.recs) { // grow, up to maxLines
		grown := make([]runtime.LogRecord, min(max(2*len(r.recs), 16), maxLines))
		for i := 0; i < r.n; i++ {
			grown[i] = *r.at(i)
		}
		r.recs, r.head = grown, 0
	}
	*r.at(r.n) = rec
	r.n++
	r.bytes += sz
}

// matching returns copies of the records that match f, oldest first,
// the newest f.Limit when it is set.
func (r *ring) matching(f Filter) []runtime.LogRecord {
	var out []runtime.LogRecord
	for i := 0; i < r.n; i++ {
		if rec := r.at(i); f.match(rec) {
			out = append(out, *rec)
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}
