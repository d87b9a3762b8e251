package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// trickleReader returns its data a few bytes per Read, with a (0, nil)
// Read before each chunk, as a slow network body may.
type trickleReader struct {
	data  []byte
	chunk int
	empty bool
}

func (r *trickleReader) Read(p []byte) (int, error) {
	if r.empty = !r.empty; r.empty {
		return 0, nil
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// failReader fails the test if the body is read at all.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("the body was read")
	return 0, io.EOF
}

func TestReadBody(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 700) // 11200 bytes: past the probe and the first buffer
	huge := bytes.Repeat(big, 20)                        // 224000 bytes: past the first buffer of a declared length
	errBroken := errors.New("connection reset")
	cases := []struct {
		name    string
		body    func(t *testing.T) io.Reader
		cl, max int64
		want    []byte
		wantErr string // substring; "max" means an *http.MaxBytesError
	}{
		{name: "nil body", body: func(*testing.T) io.Reader { return nil }, cl: -1, max: 10},
		{name: "NoBody", body: func(*testing.T) io.Reader { return http.NoBody }, cl: -1, max: 10},
		{name: "declared empty", body: func(t *testing.T) io.Reader { return failReader{t} }, cl: 0, max: 10},
		{name: "unknown length, empty", body: func(*testing.T) io.Reader { return strings.NewReader("") }, cl: -1, max: 10},
		{name: "unknown length, small", body: func(*testing.T) io.Reader { return strings.NewReader("hello") }, cl: -1, max: 10, want: []byte("hello")},
		{name: "unknown length, trickled", body: func(*testing.T) io.Reader { return &trickleReader{data: big, chunk: 700} }, cl: -1, max: 1 << 20, want: big},
		{name: "unknown length, one byte at a time", body: func(*testing.T) io.Reader { return iotest.OneByteReader(bytes.NewReader(big)) }, cl: -1, max: 1 << 20, want: big},
		{name: "unknown length, at the limit", body: func(*testing.T) io.Reader { return bytes.NewReader(big) }, cl: -1, max: int64(len(big)), want: big},
		{name: "unknown length, over the limit", body: func(*testing.T) io.Reader { return bytes.NewReader(big) }, cl: -1, max: int64(len(big)) - 1, wantErr: "max"},
		{name: "unknown length, first read over the limit", body: func(*testing.T) io.Reader { return strings.NewReader("hello") }, cl: -1, max: 4, wantErr: "max"},
		{name: "unknown length, broken", body: func(*testing.T) io.Reader {
			return io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errBroken))
		}, cl: -1, max: 10, wantErr: "connection reset"},
		{name: "unknown length, broken at once", body: func(*testing.T) io.Reader { return iotest.ErrReader(errBroken) }, cl: -1, max: 10, wantErr: "connection reset"},
		{name: "declared length", body: func(*testing.T) io.Reader { return bytes.NewReader(big) }, cl: int64(len(big)), max: 1 << 20, want: big},
		{name: "declared length, trickled", body: func(*testing.T) io.Reader { return &trickleReader{data: big, chunk: 333} }, cl: int64(len(big)), max: 1 << 20, want: big},
		{name: "declared length past the first buffer", body: func(*testing.T) io.Reader { return bytes.NewReader(huge) }, cl: int64(len(huge)), max: 1 << 20, want: huge},
		{name: "declared length past the first buffer, trickled", body: func(*testing.T) io.Reader { return &trickleReader{data: huge, chunk: 7000} }, cl: int64(len(huge)), max: 1 << 20, want: huge},
		{name: "declared length past the first buffer, one byte at a time", body: func(*testing.T) io.Reader { return iotest.OneByteReader(bytes.NewReader(huge)) }, cl: int64(len(huge)), max: 1 << 20, want: huge},
		{name: "body longer than a large declared length", body: func(*testing.T) io.Reader { return bytes.NewReader(huge) }, cl: int64(len(huge)) - 1, max: 1 << 20, wantErr: fmt.Sprintf("longer than its Content-Length of %d", len(huge)-1)},
		{name: "body shorter than a large declared length", body: func(*testing.T) io.Reader { return bytes.NewReader(huge) }, cl: int64(len(huge)) + 1, max: 1 << 20, wantErr: fmt.Sprintf("ended after %d of its %d bytes", len(huge), len(huge)+1)},
		{name: "declared length, nothing sent", body: func(*testing.T) io.Reader { return strings.NewReader("") }, cl: 5, max: 10, wantErr: "ended after 0 of its 5 bytes"},
		{name: "declared length over the limit, not read", body: func(t *testing.T) io.Reader { return failReader{t} }, cl: 11, max: 10, wantErr: "max"},
		{name: "body longer than declared", body: func(*testing.T) io.Reader { return strings.NewReader("hello!") }, cl: 5, max: 10, wantErr: "longer than its Content-Length of 5"},
		{name: "body shorter than declared", body: func(*testing.T) io.Reader { return strings.NewReader("hel") }, cl: 5, max: 10, wantErr: "ended after 3 of its 5 bytes"},
		{name: "declared length, broken", body: func(*testing.T) io.Reader {
			return io.MultiReader(strings.NewReader("he"), iotest.ErrReader(errBroken))
		}, cl: 5, max: 10, wantErr: "connection reset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := readBody(c.body(t), c.cl, c.max, nil)
			switch {
			case c.wantErr == "max":
				var tooBig *http.MaxBytesError
				if !errors.As(err, &tooBig) || tooBig.Limit != c.max {
					t.Fatalf("err %v; want *http.MaxBytesError with limit %d", err, c.max)
				}
			case c.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v; want one containing %q", err, c.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(got, c.want) || (len(c.want) == 0) != (got == nil):
				t.Fatalf("read %d bytes (nil %v); want %d", len(got), got == nil, len(c.want))
			}
		})
	}
}

// An empty body of unknown length, what every HTTP/3 GET has, is found
// out without allocating.
func TestReadBodyEmptyUnknownDoesNotAllocate(t *testing.T) {
	r := strings.NewReader("")
	readBody(r, -1, 10, nil) // warm the probe pool
	if n := testing.AllocsPerRun(100, func() {
		r.Reset("")
		if b, err := readBody(r, -1, 10, nil); b != nil || err != nil {
			t.Fatalf("got %q, %v", b, err)
		}
	}); n > 0 && (!raceOn || n > 0.5) {
		// The race detector makes sync.Pool drop a quarter of what is put
		// back, and each drop costs a new probe buffer.
		t.Errorf("%v allocations per empty body; want 0 (at most 0.5 under -race)", n)
	}
}

// stallReader returns its data and then fails as a read deadline does,
// like a client that declared a body and stopped sending it.
type stallReader struct{ data []byte }

func (r *stallReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// A declared Content-Length is a claim, not bytes: the buffer grows with
// what arrives, so a client declaring 10 MiB and sending a few bytes does
// not make the node allocate 10 MiB.
func TestReadBodyDeclaredLengthAllocatesWhatArrives(t *testing.T) {
	const declared, runs = 10 << 20, 20
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	for range runs {
		b, err := readBody(&stallReader{data: []byte("a few bytes")}, declared, declared, nil)
		if b != nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %d bytes, %v; want the reader's error", len(b), err)
		}
	}
	goruntime.ReadMemStats(&after)
	// Before the fix each run allocated the declared 10 MiB (200 MiB in
	// all); the bound leaves room for allocations by other goroutines.
	if got := after.TotalAlloc - before.TotalAlloc; got > declared {
		t.Errorf("%d runs allocated %d bytes for bodies declared as %d bytes and never sent; want well under %d", runs, got, declared, declared)
	}
}
