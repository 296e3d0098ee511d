package invalidate

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/fleet"
)

// TestRunLoopsRealTime runs three nodes' Run loops on the system clock and
// Redis TIME, and measures how long an abort on one node takes to reach the
// others' Due answers. The expected figure is about one advance interval
// (50 ms) or cache TTL (100 ms), whichever is shorter, plus a round trip; the
// assertion allows 2 s because CI runs under -race on two loaded cores,
// where a goroutine may wait tens of milliseconds for a CPU. The tight
// bound is held in virtual time by TestFleetAbortReachesEveryNode.
func TestRunLoopsRealTime(t *testing.T) {
	ns := uniqueNS()
	var nodes []*Coordinator
	for range 3 {
		c, err := NewCoordinator(newRedisStore(t, fleet.Redis{Client: srv.Client(t), Name: ns}),
			Config{AdvanceInterval: 50 * time.Millisecond, CacheTTL: 100 * time.Millisecond})
		require.NoError(t, err)
		nodes = append(nodes, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.Run(ctx)
		}()
	}
	a := Rollout{ID: "slow", Scope: "a", Cohorts: 100, Rate: 1, Clients: 1000, Coverage: 0.1, By: "t"}
	b := Rollout{ID: "fast", Scope: "b", Cohorts: 10, Rate: 2000, Clients: 1000, Coverage: 0.1, By: "t"}
	mustStart(t, nodes[0], a)
	mustStart(t, nodes[1], b)
	require.Eventually(t, func() bool { return mustStatus(t, nodes[2], "fast").Phase == Done },
		20*time.Second, 10*time.Millisecond, "the fast rollout finishes under Run")
	x := clientWith(t, []Rollout{a, b}, func(k []int) bool { return k[0] >= 50 })
	time.Sleep(200 * time.Millisecond) // every cache has seen "fast" done
	for _, n := range nodes {
		require.Empty(t, due(t, n, x, 0), "fast waits behind slow")
	}

	began := time.Now()
	require.NoError(t, nodes[0].Abort(context.Background(), "slow", By{}))
	var worst time.Duration
	for i, n := range nodes {
		require.Eventually(t, func() bool { return len(due(t, n, x, 0)) == 1 }, 2*time.Second, time.Millisecond, "node %d", i)
		worst = max(worst, time.Since(began))
	}
	t.Logf("abort reached every node's Due answers in %v (advance 50ms, TTL 100ms)", worst)
	assert.Less(t, worst, 2*time.Second)
}
