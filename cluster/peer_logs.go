package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// NodeLogs is one node's recent log lines of a function: the body of GET
// /peer/v1/logs/{name}, and one entry of Agent.PeerLogs.
type NodeLogs struct {
	// Node is the node's ID (its member name).
	Node string `json:"node"`
	// Lines are the node's matching lines, oldest first.
	Lines []runtime.LogRecord `json:"lines"`
	// Err says why the node's lines are missing (Agent.PeerLogs only).
	Err error `json:"-"`
}

// peerLogsTimeout bounds how long Agent.PeerLogs waits for each peer.
const peerLogsTimeout = 5 * time.Second

// maxPeerLogsBytes bounds one peer's answer: MaxLogLimit records of at
// most 8 KiB of message and 16 KiB of fields, JSON-escaped, fit well
// below it.
const maxPeerLogsBytes = 256 << 20

// logs answers GET /peer/v1/logs/{name}?limit=&trace_id=&since=: this
// node's recent lines of the function, for another node's
// GET /v1/functions/{name}/logs?nodes=all.
func (p *peerAPI) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := storage.ValidateName(name); err != nil {
		peerError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f, follow, err := logQuery(r.URL.Query())
	if err != nil || follow {
		msg := "follow is not served between nodes"
		if err != nil {
			msg = err.Error()
		}
		peerError(w, http.StatusBadRequest, "bad_request", msg)
		return
	}
	out := NodeLogs{Node: p.cfg.Store.node.ID(), Lines: []runtime.LogRecord{}}
	if p.cfg.Logs != nil {
		out.Lines = append(out.Lines, p.cfg.Logs.Recent(name, f)...)
	}
	writeJSON(w, http.StatusOK, out)
}

// Logs fetches a peer's recent lines of name matching q (limit,
// trace_id, since) from the peer API at base.
func (c *PeerClient) Logs(ctx context.Context, base, name string, q url.Values) (NodeLogs, error) {
	u := base + "/peer/v1/logs/" + url.PathEscape(name)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, u, nil)
	if err != nil {
		return NodeLogs{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var nl NodeLogs
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPeerLogsBytes)).Decode(&nl); err != nil {
		return NodeLogs{}, fmt.Errorf("peer %s: decode log lines: %w", base, err)
	}
	return nl, nil
}

// PeerLogs asks every other alive member, concurrently and for at most
// peerLogsTimeout each, for its recent lines of name matching q (limit,
// trace_id, since), in member name order. A member that does not answer
// has Err set. The admin API's GET /v1/functions/{name}/logs?nodes=all
// merges them with this node's.
func (a *Agent) PeerLogs(ctx context.Context, name string, q url.Values) []NodeLogs {
	self := a.store.node.ID()
	var out []NodeLogs
	for _, m := range a.members.Members() {
		if m.Name != self && m.Status == StatusAlive {
			out = append(out, NodeLogs{Node: m.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	var wg sync.WaitGroup
	for i := range out {
		nl := &out[i]
		base, ok := a.peers.PeerURL(nl.Node)
		if !ok {
			nl.Err = fmt.Errorf("%w: its peer API address is not known yet", ErrUnavailable)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, peerLogsTimeout)
			defer cancel()
			got, err := a.client.Logs(cctx, base, name, q)
			if err != nil {
				nl.Err = err
				return
			}
			nl.Lines = got.Lines
		}()
	}
	wg.Wait()
	return out
}
