package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// LogOptions select the lines of Client.Logs.
type LogOptions struct {
	// Limit is how many recent lines to fetch; zero means the node's
	// default (DefaultLogLimit, 100), at most MaxLogLimit.
	Limit int
	// TraceID keeps only the lines of one trace (32 hex digits).
	TraceID string
	// Since keeps only lines logged at or after it.
	Since time.Time
	// Follow keeps the stream open and delivers new lines as they come.
	Follow bool
	// AllNodes asks for every alive node's lines, merged by time, each
	// naming its node (LogLine.Node); it cannot be combined with Follow.
	AllNodes bool
}

// maxLogLine bounds one NDJSON line the client reads: a record holds at
// most 8 KiB of message and 16 KiB of fields, JSON-escaped.
const maxLogLine = 1 << 20

// Logs calls fn with each of name's recent log lines, oldest first, and,
// with opts.Follow, with new lines as the node receives them. It returns
// when the lines are read, when fn returns an error (that error), or,
// when following, once ctx ends (nil). Errors from the node are
// *APIError: storage.ErrFunctionNotFound for a function the node neither
// runs nor has lines of.
func (c *Client) Logs(ctx context.Context, name string, opts LogOptions, fn func(LogLine) error) error {
	q := url.Values{}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.TraceID != "" {
		q.Set("trace_id", opts.TraceID)
	}
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.AllNodes {
		q.Set("nodes", "all")
	}
	seg, err := segment("function name", name)
	if err != nil {
		return err
	}
	path := "/v1/functions/" + seg + "/logs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.hc.Do(req)
	if err != nil {
		if opts.Follow && ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("cannot reach the node's API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readAPIError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLogLine)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue // a keepalive
		}
		var line LogLine
		if err := json.Unmarshal(b, &line); err != nil {
			return fmt.Errorf("GET %s: decode a log line: %w", req.URL.Path, err)
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if opts.Follow && ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("GET %s: read the log lines: %w", req.URL.Path, err)
	}
	if opts.Follow && ctx.Err() == nil {
		return fmt.Errorf("GET %s: the node ended the log stream (is it shutting down?)", req.URL.Path)
	}
	return nil
}
