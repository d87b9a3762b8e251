package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/gojinn/gojinn/storage"
)

type kvInput struct {
	put   bool
	key   string
	value string
}

// kvModel is a register per key: a get returns the last put's value.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(by))
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output)
	},
}

// KV operations under leader kills, restarts and partitions are
// linearizable: Porcupine finds an order consistent with real time for the
// recorded history. Writes and linearizable reads go to random nodes
// (followers forward writes and take a read index from the leader). A write that failed may or may not
// have happened, so it is recorded as never returning.
func TestKVLinearizableUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 5 s fault-injection workload; make test runs it")
	}
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	h.waitLeader()

	var (
		nodesMu sync.RWMutex // held for writing while the nemesis swaps stores
		histMu  sync.Mutex
		history []porcupine.Operation
	)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	record := func(op porcupine.Operation) {
		histMu.Lock()
		history = append(history, op)
		histMu.Unlock()
	}
	stores := func() (all []*Store, leader *Store) {
		for _, n := range h.nodes {
			if n.up {
				all = append(all, n.store)
				if n.store.node.IsLeader() {
					leader = n.store
				}
			}
		}
		return all, leader
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	keys := []string{"a", "b", "c"}
	for c := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for i := 0; ctx.Err() == nil; i++ {
				key := keys[r.IntN(len(keys))]
				nodesMu.RLock()
				all, _ := stores()
				if r.IntN(2) == 0 {
					value := fmt.Sprintf("c%d-%d", c, i)
					s := all[r.IntN(len(all))]
					call := now()
					opCtx, opCancel := context.WithTimeout(ctx, 2*time.Second)
					_, err := s.KVPut(opCtx, "lin", key, []byte(value), KVWriteOptions{})
					opCancel()
					ret := now()
					if err != nil {
						ret = math.MaxInt64 // outcome unknown: it may apply later
					}
					record(porcupine.Operation{ClientId: c, Input: kvInput{put: true, key: key, value: value}, Call: call, Output: "", Return: ret})
				} else {
					s := all[r.IntN(len(all))]
					call := now()
					opCtx, opCancel := context.WithTimeout(ctx, 2*time.Second)
					e, err := s.KVGet(opCtx, "lin", key, ConsistencyLinearizable)
					opCancel()
					ret := now()
					switch {
					case err == nil:
						record(porcupine.Operation{ClientId: c, Input: kvInput{key: key}, Call: call, Output: string(e.Value), Return: ret})
					case errors.Is(err, storage.ErrKVNotFound):
						record(porcupine.Operation{ClientId: c, Input: kvInput{key: key}, Call: call, Output: "", Return: ret})
					}
					// A failed read has no effect: nothing to record.
				}
				nodesMu.RUnlock()
			}
		}()
	}

	// The nemesis: kill and restart the leader, partition a node, heal.
	faults := 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(700 * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
		nodesMu.Lock()
		if faults%2 == 0 {
			if l := h.leader(); l != nil {
				h.Kill(l.i)
				h.Restart(l.i, true)
			}
		} else {
			h.Partition(faults % 3)
		}
		nodesMu.Unlock()
		if faults%2 == 1 {
			time.Sleep(300 * time.Millisecond) // the partition's length
			nodesMu.Lock()
			h.Heal()
			nodesMu.Unlock()
		}
		faults++
	}
	wg.Wait()

	ok, writes := 0, 0
	for _, op := range history {
		if op.Input.(kvInput).put {
			writes++
			if op.Return != math.MaxInt64 {
				ok++
			}
		}
	}
	t.Logf("%d operations (%d writes, %d acknowledged), %d faults", len(history), writes, ok, faults)
	if ok < 10 || faults < 2 {
		t.Fatalf("the workload did too little to check anything: %d acknowledged writes, %d faults", ok, faults)
	}
	res := porcupine.CheckOperationsTimeout(kvModel, history, 60*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history is not linearizable (result %v)", res)
	}
}
