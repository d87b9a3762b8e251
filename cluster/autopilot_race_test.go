package cluster

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Five servers asking to join as voters at the same moment (concurrent
// peer join handlers, heal re-adds) never take the cluster past
// MaxVoters (3 by default): the voter count and the membership change are
// one step. The autopilot never demotes, so an extra voter would stay.
func TestConcurrentJoinsRespectMaxVoters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := OpenStore(ctx, testConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Close() })
	var joiners []*Store
	for range 5 {
		c := testConfig(t, t.TempDir())
		c.Join = true
		s, err := OpenStore(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		joiners = append(joiners, s)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, s := range joiners {
		wg.Go(func() {
			<-start
			if _, err := leader.node.addServerCapped(ctx, s.node.ID(), s.node.Addr(), true); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	servers, voters := configuration(t, leader.node)
	if voters != 3 || len(servers) != 6 {
		t.Fatalf("%d voters of %d servers after 5 concurrent joins; want 3 of 6", voters, len(servers))
	}
}
