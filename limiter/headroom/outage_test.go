package headroom

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/limiter/origin"
)

// TestOutage: three nodes share a limit on a private Redis, which then
// dies for 40 s of virtual time. Each node controls its share locally,
// from the shared limit divided by the three live nodes, and keeps the
// origin near its capacity; when Redis is back (empty) the nodes rejoin a
// shared limit that starts where they were. Then Redis stops answering
// (SIGSTOP): Record never blocks while the timers wait for it.
func TestOutage(t *testing.T) {
	s := redistest.Start(t)
	clk := fakeclock.New(t0)
	cfg := Config{Origins: map[string]Bounds{"db": simBounds, "cache": {Floor: 1, Ceiling: 1e6}}, Clock: clk}
	// The Redis time limit. Record's bound is this plus 5 ms; a Record that
	// waited for a Redis call would take up to the whole time limit, and
	// one that does not takes microseconds, so 300 ms keeps the scheduling
	// noise of a loaded 2-core machine under -race (up to 130 ms seen, at
	// a load of 6) away from the bound. The breaker lets a probe through 20 ms (real time)
	// after it opened, so that all nodes rejoin within an interval or two
	// of virtual time, as they would within about BreakerOpen on a real
	// clock.
	const timeout = 300 * time.Millisecond
	r := &simRun{clk: clk, interval: time.Second,
		org: simOrigin{capacity: 900, base: 5 * time.Millisecond, timeout: 500 * time.Millisecond, maxQueue: 900}}
	var caches []*Origin
	for range 3 {
		c, err := NewShared(fleet.Redis{Client: s.Client(t), Name: "outage", Timeout: timeout,
			BreakerOpen: 20 * time.Millisecond}, SharedConfig{Config: cfg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		o, err := c.Origin("db")
		require.NoError(t, err)
		r.nodes = append(r.nodes, &simNode{o: o, nodes: 3})
		o, err = c.Origin("cache")
		require.NoError(t, err)
		caches = append(caches, o)
	}
	demand, capacity := constant(3000), constant(900)
	r.run(60*time.Second, demand, capacity)
	shared := r.nodes[0].o.Stats()
	require.Equal(t, limiter.ViaRedis, shared.Via)
	require.Equal(t, int64(3), shared.Live)
	require.InDelta(t, 900, shared.Limit.Rate, 0.15*900, "converged before the outage")

	s.Kill(t)
	r.run(time.Second, demand, capacity)
	for i, n := range r.nodes {
		st := n.o.Stats()
		assert.Equal(t, limiter.ViaFallback, st.Via, "node %d", i)
		assert.Equal(t, int64(3), st.Live, "node %d", i)
		// The first local interval stepped once from the shared limit
		// divided by 3: the share, times 3, is within one step of it.
		assert.InDelta(t, shared.Limit.Rate, st.Limit.Rate, 0.5*shared.Limit.Rate, "node %d", i)
		assert.Equal(t, int64(1), st.Intervals, "node %d: local intervals", i)
	}
	r.run(39*time.Second, demand, capacity)
	for i, n := range r.nodes {
		st := n.o.Stats()
		assert.Equal(t, limiter.ViaFallback, st.Via, "node %d", i)
		// Each node controls its share of the origin on its own reports:
		// the fleet stays near the capacity.
		assert.InDelta(t, 900, st.Limit.Rate, 0.15*900, "node %d under local control", i)
	}

	// Redis is back, empty: every node rejoins within a few intervals, and
	// the shared limit starts from the first one's.
	s.Restart(t)
	deadline := time.Now().Add(10 * time.Second) // generous: a loaded machine under -race
	for joined := 0; joined < 3; {
		require.True(t, time.Now().Before(deadline), "only %d nodes rejoined", joined)
		r.run(time.Second, demand, capacity)
		joined = 0
		for _, n := range r.nodes {
			if n.o.Stats().Via == limiter.ViaRedis {
				joined++
			}
		}
	}
	r.run(30*time.Second, demand, capacity)
	checkSameLimit(t, &simRun{trace: r.trace[len(r.trace)-30:]})
	lo, hi := (&simRun{trace: r.trace[len(r.trace)-35:], interval: time.Second}).swing(time.Second, 35*time.Second)
	assert.GreaterOrEqual(t, lo, 0.8*900, "the limit after rejoining")
	assert.LessOrEqual(t, hi, 1.2*900, "the limit after rejoining")
	for i, n := range r.nodes {
		assert.Equal(t, limiter.ViaRedis, n.o.Stats().Via, "node %d", i)
	}

	// Redis stops answering. Record, hammered on another goroutine while
	// the nodes' timers wait for Redis (the clock moves on alone, so that
	// the simulation's work does not crowd the measure), never blocks
	// longer than the Redis time limit (+5 ms): it never waits for Redis
	// at all.
	var slowest, records atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			caches[0].Record(origin.Background, time.Millisecond, origin.Success)
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
			records.Add(1)
			runtime.Gosched() // not a spinning hog on 2 cores
		}
	}()
	s.Pause(t)
	defer s.Resume(t)
	start := time.Now()
	clk.Add(time.Second) // three reports and three heartbeats, each waiting the time limit
	waited := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("%d Records while the timers waited for Redis (for %v); the slowest Record %v",
		records.Load(), waited, time.Duration(slowest.Load()))
	assert.GreaterOrEqual(t, waited, timeout, "no timer waited for Redis")
	assert.Greater(t, records.Load(), int64(100), "Records went on while the timers waited")
	assert.LessOrEqual(t, time.Duration(slowest.Load()), timeout+5*time.Millisecond, "the slowest Record")
	assert.Equal(t, limiter.ViaFallback, caches[0].Stats().Via)
}

// TestFailOpenClosed: without Redis, FailOpen holds the limit at the
// ceiling and FailClosed at the floor; neither runs a heartbeat.
func TestFailOpenClosed(t *testing.T) {
	s := redistest.Start(t)
	s.Kill(t)
	for _, tc := range []struct {
		policy fleet.FailurePolicy
		want   float64
	}{{fleet.FailOpen, 500}, {fleet.FailClosed, 5}} {
		clk := fakeclock.New(t0)
		c, err := NewShared(fleet.Redis{Client: s.Client(t), Name: "policy"}, SharedConfig{
			Config:  Config{Origins: map[string]Bounds{"db": {Floor: 5, Ceiling: 500, Initial: 50}}, Clock: clk},
			Failure: tc.policy,
		})
		require.NoError(t, err)
		o, err := c.Origin("db")
		require.NoError(t, err)
		assert.Equal(t, 50.0, o.Limit().Rate, "%v: Initial before the first interval", tc.policy)
		for range 20 {
			o.Record(origin.Foreground, time.Millisecond, origin.Success)
		}
		clk.Add(time.Second)
		st := o.Stats()
		assert.Equal(t, tc.want, o.Limit().Rate, "%v", tc.policy)
		assert.Equal(t, limiter.ViaFallback, st.Via, "%v", tc.policy)
		assert.Equal(t, max(0, tc.want-20), o.Spare(), "%v: the limit less the foreground, at least 0", tc.policy)
		require.NoError(t, c.Close())
	}
}
