package cluster

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/gojinn/gojinn/storage"
)

// Limits of one batch. A command larger than maxBatchBytes still goes,
// alone.
const (
	maxBatchCommands = 1024
	maxBatchBytes    = 1 << 20
	// maxBatchesInFlight is how many batches may be proposed and not yet
	// applied. Writes that arrive meanwhile wait in the queue and leave
	// together once a slot frees: the batch grows with the load, and a
	// lone writer (a free slot) is proposed at once, without a timer.
	// Two lets the leader write one batch to its log while the previous
	// one is replicated.
	maxBatchesInFlight = 2
)

// applyBatcher coalesces concurrent KV commands into one Raft entry
// (storage.EncodeKVBatch): one log record, one replication message, one
// FSM call for the batch, and each caller gets its own command's result.
// Only binary single KV commands (storage.KVBinaryTag) are batched;
// registry commands and old-format entries go to Raft one by one.
//
// Two writes of one key never share a batch: every command of a batch
// applies at the batch's Raft index, which becomes a put's version, and a
// key's versions must strictly increase. The second write waits for the
// next batch.
//
// Goroutines: run (one per Node, started by Open, stopped by Node.Close
// after raft.Shutdown: closing stopCh, waiting on doneCh) and one waiter
// per batch in flight (counted in Node.applies; raft resolves every
// future, at the latest on Shutdown). Callers select on doneCh, so none
// waits forever: a request the loop never took fails with ErrUnavailable.
type applyBatcher struct {
	n      *Node
	in     chan *batchReq
	slots  chan struct{} // one token per batch in flight
	stopCh chan struct{}
	doneCh chan struct{}
}

// batchReq is one caller's command and where its answer goes.
type batchReq struct {
	ctx     context.Context
	cmd     []byte
	ns, key string
	keyed   bool
	done    chan batchResp // buffered: the loop and waiters never block on it
	// taken is set when the loop dequeues the request; from then on it
	// is answered (failed, or by its batch's waiter) unless its caller
	// has gone.
	taken atomic.Bool
}

type batchResp struct {
	res any
	err error
}

func newApplyBatcher(n *Node) *applyBatcher {
	b := &applyBatcher{
		n:      n,
		in:     make(chan *batchReq, maxBatchCommands),
		slots:  make(chan struct{}, maxBatchesInFlight),
		stopCh: make(chan struct{}),
		doneCh: make(chan struct{}),
	}
	go b.run()
	return b
}

// batchable reports whether cmd may share a Raft entry with others.
func batchable(cmd []byte) bool { return len(cmd) > 0 && cmd[0] == storage.KVBinaryTag }

// apply queues cmd for the next batch and waits for its own result: what
// Node.Apply returns for it.
func (b *applyBatcher) apply(ctx context.Context, cmd []byte) (any, error) {
	r := &batchReq{ctx: ctx, cmd: cmd, done: make(chan batchResp, 1)}
	r.ns, r.key, r.keyed = storage.KVCommandKey(cmd)
	select {
	case b.in <- r:
	case <-b.stopCh:
		return nil, errNodeClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("raft apply: %w", ctx.Err())
	}
	select {
	case resp := <-r.done:
		return resp.res, resp.err
	case <-ctx.Done():
		return nil, fmt.Errorf("raft apply: %w (the entry may still be committed; read the state before retrying)", ctx.Err())
	case <-b.doneCh:
		if !r.taken.Load() {
			// Queued after the loop's last look: never proposed.
			return nil, errNodeClosed
		}
		// Proposed or failed: the answer is coming (raft resolves every
		// future on Shutdown, which ran before the loop stopped).
		select {
		case resp := <-r.done:
			return resp.res, resp.err
		case <-ctx.Done():
			return nil, fmt.Errorf("raft apply: %w (the entry may still be committed; read the state before retrying)", ctx.Err())
		}
	}
}

// stop ends the loop, failing the requests it had not proposed, and waits
// for it. Call it after raft.Shutdown, so a proposal cannot block.
func (b *applyBatcher) stop() {
	close(b.stopCh)
	<-b.doneCh
}

// run takes requests off the queue, waits for a free slot while more
// queue up, and proposes what is queued then as one entry.
func (b *applyBatcher) run() {
	defer close(b.doneCh)
	var carry *batchReq // a write of a key the previous batch already had
	keys := make(map[[2]string]struct{})
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case <-b.stopCh:
				b.drain(nil)
				return
			case first = <-b.in:
				first.taken.Store(true)
			}
		}
		select {
		case b.slots <- struct{}{}:
		case <-b.stopCh:
			b.drain(first)
			return
		}
		batch, size := []*batchReq{first}, len(first.cmd)
		clear(keys)
		if first.keyed {
			keys[[2]string{first.ns, first.key}] = struct{}{}
		}
	fill:
		for len(batch) < maxBatchCommands && size < maxBatchBytes {
			select {
			case r := <-b.in:
				r.taken.Store(true)
				k := [2]string{r.ns, r.key}
				if _, dup := keys[k]; r.keyed && dup {
					carry = r
					break fill
				}
				if r.keyed {
					keys[k] = struct{}{}
				}
				batch = append(batch, r)
				size += len(r.cmd)
			default:
				break fill
			}
		}
		b.propose(batch)
	}
}

// drain fails first and every queued request: none was proposed.
func (b *applyBatcher) drain(first *batchReq) {
	if first != nil {
		first.done <- batchResp{err: errNodeClosed}
	}
	for {
		select {
		case r := <-b.in:
			r.taken.Store(true)
			r.done <- batchResp{err: errNodeClosed}
		default:
			return
		}
	}
}

// propose sends batch to Raft (one command as itself, more as a batch
// entry) and starts the waiter that answers each caller and frees the
// slot. Requests whose caller has gone are left out: they were never
// proposed, and the caller was told the write may not have applied.
func (b *applyBatcher) propose(batch []*batchReq) {
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		<-b.slots
		return
	}
	batch = live
	data := batch[0].cmd
	if len(batch) > 1 {
		cmds := make([][]byte, len(batch))
		for i, r := range batch {
			cmds[i] = r.cmd
		}
		data = storage.EncodeKVBatch(cmds)
	}
	n := b.n
	n.proposeMu.RLock()
	if n.isClosed() {
		n.proposeMu.RUnlock()
		<-b.slots
		for _, r := range batch {
			r.done <- batchResp{err: errNodeClosed}
		}
		return
	}
	n.applies.Add(1)
	// Blocks until raft's leader loop takes the entry (the apply channel
	// is unbuffered: Config.raftConfig) or the node shuts down.
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	n.proposeMu.RUnlock()
	n.kvMetrics.observeBatch(len(batch))
	go func() {
		defer b.n.applies.Done()
		err := f.Error()
		<-b.slots
		if err != nil {
			err = b.n.applyError(err)
			for _, r := range batch {
				r.done <- batchResp{err: err}
			}
			return
		}
		resp := f.Response()
		if len(batch) == 1 {
			batch[0].done <- batchResp{res: resp}
			return
		}
		res, ok := resp.(storage.ApplyResult)
		for i, r := range batch {
			switch {
			case !ok:
				r.done <- batchResp{err: fmt.Errorf("raft apply: the state machine answered %T to a KV batch, not an ApplyResult", resp)}
			case res.Err != nil:
				// The FSM could not split the batch and applied none of it.
				r.done <- batchResp{res: storage.ApplyResult{Err: res.Err}}
			case len(res.Batch) != len(batch):
				r.done <- batchResp{err: fmt.Errorf("raft apply: the state machine answered %d results to a batch of %d", len(res.Batch), len(batch))}
			default:
				r.done <- batchResp{res: res.Batch[i]}
			}
		}
	}()
}
