package fleet

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
)

// admission is one allowed request: when, and how many tokens.
type admission struct {
	at time.Time
	n  int
}

// TestLeasedOvershootBound hammers one key from four Leased nodes sharing one
// Redis and checks every trailing window of admitted tokens against the bound
// stated on Leased: Rate·W + Burst + N·L. Requests are for one token, for a
// few, and for more than the lease size L (which the bucket grants all at
// once or not at all, never growing a lease).
func TestLeasedOvershootBound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"redis", func(t *testing.T) redis.UniversalClient { return srv.Client(t) }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return cluster.Client(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const (
				nodes   = 4
				workers = 8
				run     = 2 * time.Second
			)
			lim := limiter.PerSecond(500, 100)
			name := uniqueName()
			var bs []*Leased
			for range nodes {
				bs = append(bs, newLeasedForTest(t, tc.client(t), lim, Redis{Name: name}, LeasedConfig{Config: failOpen}))
			}
			L := bs[0].maxLeaseFor(lim)
			require.Equal(t, 50, L, "a tenth of a second of 500/s")
			// Mostly single tokens, some of 3, and some of 60 > L.
			sizes := []int{1, 1, 1, 1, 3, 1, 1, 1, 60}

			var (
				mu    sync.Mutex
				adm   []admission
				wg    sync.WaitGroup
				asked atomic.Int64
				big   atomic.Int64 // admitted requests of more than L
			)
			start := time.Now()
			for _, b := range bs {
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var mine []admission
						for i := w; i < 2_000_000 && time.Since(start) < run; i++ {
							n := sizes[i%len(sizes)]
							asked.Add(int64(n))
							d, err := b.AllowN(context.Background(), "hot", n)
							if err == nil && d.Allowed {
								mine = append(mine, admission{time.Now(), n})
								if n > L {
									big.Add(1)
								}
							}
							// Pause like a server between requests, rather
							// than spin: 32 spinning goroutines on two
							// cores would starve the refills of CPU.
							time.Sleep(200 * time.Microsecond)
						}
						mu.Lock()
						adm = append(adm, mine...)
						mu.Unlock()
					}()
				}
			}
			wg.Wait()
			elapsed := time.Since(start)
			slices.SortFunc(adm, func(a, b admission) int { return a.at.Compare(b.at) })
			for _, w := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second} {
				bound := lim.PerSecond()*w.Seconds() + float64(lim.Burst) + float64(nodes*L)
				worst, sum, j := 0, 0, 0
				for i := range adm {
					sum += adm[i].n
					for adm[i].at.Sub(adm[j].at) > w {
						sum -= adm[j].n
						j++
					}
					worst = max(worst, sum)
				}
				t.Logf("window %v: worst %d tokens admitted, bound %.0f", w, worst, bound)
				assert.LessOrEqual(t, float64(worst), bound, "window %v", w)
			}
			total := 0
			for _, a := range adm {
				total += a.n
			}
			ideal := lim.PerSecond()*elapsed.Seconds() + float64(lim.Burst)
			t.Logf("asked %d tokens, admitted %d (%d requests of %d) in %v; ideal %.0f", asked.Load(), total, big.Load(), sizes[len(sizes)-1], elapsed, ideal)
			assert.LessOrEqual(t, float64(total), ideal+float64(nodes*L))
			for i, b := range bs {
				n, _ := leaseState(b, "hot")
				assert.LessOrEqual(t, n, L, "node %d holds at most L", i)
			}
			// Liveness: the nodes did not simply refuse. Under -race on two
			// cores shared with other test binaries (go test runs packages
			// in parallel) the redis-server and the refills can be starved
			// for a second at a time, hence a loose floor; the bench program
			// measures the real figure (99.6% of ideal).
			assert.GreaterOrEqual(t, float64(total), 0.25*ideal)
		})
	}
}

func TestLeasedHotPathMakesNoRoundTrip(t *testing.T) {
	c := srv.Client(t)
	b := newLeasedForTest(t, c, limiter.PerSecond(100_000, 100_000), Redis{}, LeasedConfig{Config: failOpen})
	ctx := context.Background()
	// Warm up: demand is observed and a lease of ~0.1 s of it is taken.
	for range 200 {
		_, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
	}
	h := &countingHook{}
	c.AddHook(h)
	decisions, fromLease := 0, 0
	for range 2000 {
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		decisions++
		if d.Via == limiter.ViaLease {
			fromLease++
		}
	}
	t.Logf("%d decisions, %d from the lease, %d commands", decisions, fromLease, h.cmds.Load())
	assert.Greater(t, fromLease, decisions*9/10)
	assert.Less(t, h.cmds.Load(), int64(decisions/10), "round trips are batched refills, not one per decision")
}

func TestLeasedGivesTokensBackOnClose(t *testing.T) {
	c := srv.Client(t)
	name := uniqueName()
	lim := limiter.PerSecond(0.001, 100) // effectively no refill during the test
	strict := newStrictForTest(t, c, lim, Redis{Name: name}, failOpen)
	b, err := NewLeased(forTest(c, Redis{Name: name}), lim, LeasedConfig{Config: failOpen, LeaseAhead: time.Second, MaxLease: 40})
	require.NoError(t, err)
	ctx := context.Background()
	for range 30 {
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	require.Eventually(t, func() bool {
		d, err := strict.AllowN(ctx, "k", 0)
		return err == nil && d.Remaining < 70
	}, 5*time.Second, time.Millisecond, "the lease holds tokens beyond those spent")
	require.NoError(t, b.Close())
	d, err := strict.AllowN(ctx, "k", 0)
	require.NoError(t, err)
	assert.Equal(t, 70, d.Remaining, "100 - 30 spent: the unspent lease came back")
	_, err = b.AllowN(ctx, "k", 1)
	assert.ErrorIs(t, err, limiter.ErrClosed)
}

func TestLeasedBadInputAndConfig(t *testing.T) {
	c := srv.Client(t)
	b := newLeasedForTest(t, c, limiter.PerSecond(10, 10), Redis{}, LeasedConfig{Config: failOpen})
	ctx := context.Background()
	_, err := b.AllowN(ctx, "", 1)
	assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
	_, err = b.AllowN(ctx, "k", -1)
	assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
	_, err = b.AllowN(ctx, "k", 11)
	assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
	for _, tc := range []struct {
		cfg  LeasedConfig
		want string
	}{
		{LeasedConfig{LeaseAhead: time.Microsecond}, "LeasedConfig.LeaseAhead must be between 1ms and 1m"},
		{LeasedConfig{LeaseAhead: time.Hour}, "LeasedConfig.LeaseAhead"},
		{LeasedConfig{MaxLease: -1}, "LeasedConfig.MaxLease must be >= 0"},
		{LeasedConfig{MaxLease: 11}, "LeasedConfig.MaxLease 11 exceeds the burst 10"},
		{LeasedConfig{Config: Config{Failure: 9}}, "LeasedConfig.Failure is unknown"},
		{LeasedConfig{Config: Config{Config: limiter.Config{Ramp: -2}}}, "LeasedConfig.Ramp"},
		{LeasedConfig{Config: Config{Config: limiter.Config{MaxKeys: -1}}}, "LeasedConfig.MaxKeys must be >= 0, got -1"},
		{LeasedConfig{Config: Config{Failure: FailClosed}}, "Redis.Heartbeat must be 0, got 1s: only FailLocal runs the live-node heartbeat they configure, and LeasedConfig.Failure is FailClosed"},
	} {
		r := Redis{Client: c}
		if tc.cfg.Failure != FailLocal {
			r.Heartbeat = time.Second
		}
		_, err = NewLeased(r, limiter.PerSecond(10, 10), tc.cfg)
		require.ErrorIs(t, err, limiter.ErrInvalidConfig)
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestLeasedFallsBackWhenRedisDies(t *testing.T) {
	s := redistest.Start(t)
	b, err := NewLeased(Redis{Client: s.Client(t), Name: uniqueName(), Timeout: 30 * time.Millisecond, BreakerFailures: 1,
		BreakerOpen: time.Hour, Heartbeat: 20 * time.Millisecond}, limiter.PerSecond(1000, 1000), LeasedConfig{})
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	d, err := b.AllowN(ctx, "k", 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	s.Kill(t)
	sources := map[limiter.Via]int{}
	for range 3000 {
		start := time.Now()
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.Less(t, time.Since(start), 30*time.Millisecond+slack)
		sources[d.Via]++
	}
	t.Logf("sources: %v", sources)
	assert.Greater(t, sources[limiter.ViaFallback], 0, "once the lease is spent, the fallback answers")
}

func TestLeasedBoundedKeysReturnEvictedLeases(t *testing.T) {
	c := srv.Client(t)
	name := uniqueName()
	lim := limiter.PerSecond(0.001, 10)
	b := newLeasedForTest(t, c, lim, Redis{Name: name}, LeasedConfig{Config: Config{Config: limiter.Config{MaxKeys: 2}, Failure: FailOpen},
		LeaseAhead: time.Second, MaxLease: 5})
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		_, err := b.AllowN(ctx, k, 1)
		require.NoError(t, err)
	}
	strict := newStrictForTest(t, c, lim, Redis{Name: name}, failOpen)
	// Evicted leases are given back in the background; each key ends with
	// 10 - 1 spent, whatever its lease held.
	require.Eventually(t, func() bool {
		d, err := strict.AllowN(ctx, "a", 0)
		return err == nil && d.Remaining == 9
	}, 5*time.Second, 5*time.Millisecond)
}

// TestLeasedRefillRunsOnTheClock: a refill scheduled because the bucket came
// up short is made by a timer on the injected clock when its time comes,
// with no decision to trigger it, and at the clock's time; a decision at or
// after its time makes it if the timer has not (see the conformance suite,
// whose clock fires no timers).
func TestLeasedRefillRunsOnTheClock(t *testing.T) {
	c := srv.Client(t)
	clk := fakeClockAt(t0)
	name := uniqueName()
	lim := limiter.PerSecond(10, 10)
	b := newLeasedForTest(t, c, lim, Redis{Name: name}, LeasedConfig{Config: Config{Config: limiter.Config{Clock: clk}, Failure: FailOpen}})
	strict := newStrictForTest(t, c, lim, Redis{Name: name}, Config{Config: limiter.Config{Clock: clk}, Failure: FailOpen})
	ctx := context.Background()
	d, err := b.AllowN(ctx, "k", 10)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	// The refill the spend started finds the bucket empty and schedules the
	// next one when a token has accrued (100 ms).
	require.Eventually(t, func() bool {
		l := leaseOf(b, "k")
		l.mu.Lock()
		defer l.mu.Unlock()
		return !l.fetching() && l.scheduled()
	}, 10*time.Second, time.Millisecond)
	require.Equal(t, 1, clk.Pending(), "its timer is on the clock")
	h := &countingHook{}
	c.AddHook(h)
	clk.Add(99 * time.Millisecond)
	assert.Zero(t, h.cmds.Load(), "not due yet")
	clk.Add(time.Millisecond)
	assert.Equal(t, int64(1), h.cmds.Load(), "due: the timer fetched, on the clock's goroutine")
	n, _ := leaseState(b, "k")
	assert.Equal(t, 1, n, "the token that accrued is in the lease")
	d, err = strict.AllowN(ctx, "k", 0)
	require.NoError(t, err)
	assert.Equal(t, 0, d.Remaining, "taken from the bucket at t0+100ms, the clock's time")
}

// heldClock is a fake clock whose timers never fire (time moves only by
// Set, as in the conformance suite) and which counts the timers pending:
// set and neither stopped nor fired.
type heldClock struct {
	*fakeclock.Clock
	mu      sync.Mutex
	pending map[*heldTimer]bool
	stopped int
}

type heldTimer struct{ c *heldClock }

func newHeldClock() *heldClock {
	return &heldClock{Clock: fakeClockAt(t0), pending: map[*heldTimer]bool{}}
}

func (c *heldClock) AfterFunc(time.Duration, func()) limiter.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &heldTimer{c}
	c.pending[t] = true
	return t
}

func (t *heldTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if !t.c.pending[t] {
		return false
	}
	delete(t.c.pending, t)
	t.c.stopped++
	return true
}

// counts returns the timers pending and stopped.
func (c *heldClock) counts() (pending, stopped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending), c.stopped
}

// scheduleRefill spends key's whole burst of 10 on b at t0 and waits for the
// refill it starts to find the bucket empty and schedule the next one on
// the clock.
func scheduleRefill(t *testing.T, b *Leased, key string) {
	t.Helper()
	d, err := b.AllowN(context.Background(), key, 10)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Eventually(t, func() bool {
		l := leaseOf(b, key)
		l.mu.Lock()
		defer l.mu.Unlock()
		return !l.fetching() && l.scheduled() && l.timer != nil
	}, 10*time.Second, time.Millisecond, "a refill scheduled, its timer armed")
}

// TestLeasedStopsCancelledTimers: a scheduled refill's timer is stopped
// when its schedule is cancelled: by a decision that makes the fetch once
// it is due, and by dropping the lease to make room.
func TestLeasedStopsCancelledTimers(t *testing.T) {
	c := srv.Client(t)
	ctx := context.Background()
	t.Run("decision", func(t *testing.T) {
		clk := newHeldClock()
		b := newLeasedForTest(t, c, limiter.PerSecond(10, 10), Redis{}, LeasedConfig{Config: Config{Config: limiter.Config{Clock: clk}, Failure: FailOpen}})
		scheduleRefill(t, b, "k")
		pending, stopped := clk.counts()
		require.Equal(t, 1, pending)
		require.Zero(t, stopped)
		// A second later (the timer never fires on this clock), the bucket
		// is full again: a decision makes the fetch that was due, which
		// comes back whole, so nothing is scheduled again.
		clk.Set(t0.Add(time.Second))
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
		pending, stopped = clk.counts()
		assert.Zero(t, pending, "no timer left pending")
		assert.Equal(t, 1, stopped, "the cancelled schedule's timer was stopped")
	})
	t.Run("dropped", func(t *testing.T) {
		clk := newHeldClock()
		b := newLeasedForTest(t, c, limiter.PerSecond(10, 10), Redis{},
			LeasedConfig{Config: Config{Config: limiter.Config{Clock: clk, MaxKeys: 1}, Failure: FailOpen}})
		scheduleRefill(t, b, "k")
		// Other keys, later: the key map holds one, so "k" (least
		// recently used, not idle) is dropped to make room.
		for i := range 20 {
			clk.Set(t0.Add(time.Duration(i+1) * 10 * time.Millisecond))
			_, err := b.AllowN(ctx, "other-"+strconv.Itoa(i), 1)
			require.NoError(t, err)
		}
		require.Nil(t, b.keys.Lookup(bucketkey.Local("k"), clk.Now().UnixNano()), "k was dropped")
		require.Eventually(t, func() bool {
			pending, stopped := clk.counts()
			return pending == 0 && stopped == 1
		}, 10*time.Second, time.Millisecond, "the dropped lease's timer is stopped")
	})
}

// TestLeasedCloseStopsItsTimers: after Close no timer of the budget stays
// pending on the clock, and Close makes no fetch.
func TestLeasedCloseStopsItsTimers(t *testing.T) {
	c := srv.Client(t)
	clk := fakeClockAt(t0)
	b, err := NewLeased(forTest(c, Redis{}), limiter.PerSecond(10, 10), LeasedConfig{Config: Config{Config: limiter.Config{Clock: clk}, Failure: FailOpen}})
	require.NoError(t, err)
	for _, k := range []string{"a", "b", "c"} {
		scheduleRefill(t, b, k)
	}
	require.Equal(t, 3, clk.Pending(), "one refill timer per key")
	require.NoError(t, b.Close())
	assert.Zero(t, clk.Pending(), "Close stopped them")
	h := &countingHook{}
	c.AddHook(h)
	clk.Add(time.Hour)
	assert.Zero(t, h.cmds.Load(), "nothing fires after Close")
}
