package fleet

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
)

// slack is added to the timeout in latency assertions. CI runs these
// tests under -race on two loaded cores, where a goroutine can wait tens of
// milliseconds for a CPU; 250 ms is far above that and still far below the
// seconds a decision would block without the timeout (go-redis's default read
// timeout is 3 s). The tight figures (timeout + a few ms) are measured by
// BenchmarkOutageKill (Redis killed under concurrent load, Strict and
// Leased) and BenchmarkStrictOutage (Redis stalled), and reported in the
// README.
const slack = 250 * time.Millisecond

func TestFailLocalUnderKillAndRestart(t *testing.T) {
	s := redistest.Start(t)
	timeout := 30 * time.Millisecond
	b, err := NewStrict(Redis{Client: s.Client(t), Name: uniqueName(), Timeout: timeout, BreakerFailures: 2,
		BreakerOpen: 200 * time.Millisecond, Heartbeat: 50 * time.Millisecond}, limiter.PerSecond(1000, 1000), Config{})
	require.NoError(t, err)
	defer b.Close()

	var (
		stop                  atomic.Bool
		maxLatency            atomic.Int64
		fromRedis, fromBackup atomic.Int64
		errs                  atomic.Int64
		wg                    sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && i < 1_000_000; i++ {
				start := time.Now()
				d, err := b.AllowN(context.Background(), "k"+string(rune('0'+w)), 1)
				if el := int64(time.Since(start)); el > maxLatency.Load() {
					maxLatency.Store(el) // racy max is fine: it only ever grows
				}
				switch {
				case err != nil:
					errs.Add(1)
				case d.Via == limiter.ViaRedis:
					fromRedis.Add(1)
				case d.Via == limiter.ViaFallback:
					fromBackup.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, 15*time.Second, 5*time.Millisecond, what)
	}
	waitFor("decisions from Redis", func() bool { return fromRedis.Load() > 20 })
	s.Kill(t)
	before := fromBackup.Load()
	waitFor("decisions from the fallback", func() bool { return fromBackup.Load() > before+50 })
	s.Restart(t)
	r0 := fromRedis.Load()
	waitFor("back on Redis after restart", func() bool { return fromRedis.Load() > r0+50 })
	s.Pause(t)
	b0 := fromBackup.Load()
	waitFor("fallback while Redis is stalled", func() bool { return fromBackup.Load() > b0+50 })
	s.Resume(t)
	r1 := fromRedis.Load()
	waitFor("back on Redis after resume", func() bool { return fromRedis.Load() > r1+50 })
	stop.Store(true)
	wg.Wait()

	assert.Zero(t, errs.Load(), "FailLocal never returns an error")
	ml := time.Duration(maxLatency.Load())
	t.Logf("max decision latency %v (timeout %v); %d from redis, %d from fallback", ml, timeout, fromRedis.Load(), fromBackup.Load())
	assert.Less(t, ml, timeout+slack, "no decision outlives the timeout")
}

func TestBreakerOpenMakesNoRedisCalls(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	b, err := NewStrict(Redis{Client: c, Name: uniqueName(), Timeout: 30 * time.Millisecond, BreakerFailures: 1, BreakerOpen: time.Hour},
		limiter.PerSecond(10, 10), failOpen)
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	s.Pause(t)
	d, err := b.AllowN(ctx, "k", 1) // times out: the breaker opens
	require.NoError(t, err)
	assert.Equal(t, limiter.ViaFallback, d.Via)
	s.Resume(t)
	h := &countingHook{}
	c.AddHook(h)
	for range 100 {
		start := time.Now()
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, d.Allowed, "FailOpen allows")
		require.Equal(t, limiter.ViaFallback, d.Via)
		require.Less(t, time.Since(start), slack)
	}
	assert.Zero(t, h.cmds.Load(), "an open breaker sends nothing to Redis")
}

func TestFailClosed(t *testing.T) {
	s := redistest.Start(t)
	clk := fakeClockAt(t0) // decisions at one instant
	b, err := NewStrict(Redis{Client: s.Client(t), Name: uniqueName(), Timeout: 30 * time.Millisecond, BreakerFailures: 1,
		BreakerOpen: 300 * time.Millisecond}, limiter.PerSecond(10, 10), Config{Config: limiter.Config{Clock: clk}, Failure: FailClosed})
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	s.Kill(t)
	var prev time.Duration
	for i := range 5 {
		d, err := b.AllowN(ctx, "k", 1)
		require.ErrorIs(t, err, limiter.ErrUnavailable)
		assert.False(t, d.Allowed)
		assert.Equal(t, limiter.ViaFallback, d.Via)
		assert.GreaterOrEqual(t, d.RetryAfter, 300*time.Millisecond, "not before the breaker lets a probe through")
		assert.Less(t, d.RetryAfter, 600*time.Millisecond+time.Duration(i)*100*time.Millisecond)
		if i > 0 {
			// The key's tail tells each the next turn, a token interval
			// (100 ms) later.
			assert.Equal(t, 100*time.Millisecond, d.RetryAfter-prev, "refusal %d", i)
		}
		prev = d.RetryAfter
	}
	s.Restart(t)
	require.Eventually(t, func() bool {
		d, err := b.AllowN(ctx, "k", 1)
		return err == nil && d.Via == limiter.ViaRedis
	}, 10*time.Second, 20*time.Millisecond)
}

// TestFailurePolicyRefusalsAreSpread: the failure policy's refusals are
// not one constant told to every caller (which would bring the callers
// refused during an outage back together the moment the breaker lets a
// probe through). On both Redis budgets, with Redis killed (strict) or
// stalled (leased) and the decisions at one instant of a fake clock:
// successive refusals of one key are told successive times, a token
// interval apart, none before the breaker's open period; past the tail's
// horizon they are still spread, never twice the same in a row, and
// bounded; different keys start spread over one more open period; and a
// tail that has passed starts again.
func TestFailurePolicyRefusalsAreSpread(t *testing.T) {
	const open = time.Second
	lim := limiter.PerSecond(10, 10) // 100 ms a token; horizon 1 min
	horizon := time.Minute
	for _, kind := range []string{"strict", "leased"} {
		t.Run(kind, func(t *testing.T) {
			s := redistest.Start(t)
			clk := fakeClockAt(t0)
			r := Redis{Client: s.Client(t), Name: uniqueName(), Timeout: 50 * time.Millisecond, BreakerFailures: 1, BreakerOpen: open}
			cfg := Config{Config: limiter.Config{Clock: noTimers{clk}}, Failure: FailClosed}
			var b budget
			var err error
			if kind == "strict" {
				b, err = NewStrict(r, lim, cfg)
			} else {
				b, err = NewLeased(r, lim, LeasedConfig{Config: cfg})
			}
			require.NoError(t, err)
			defer b.Close()
			ctx := context.Background()
			d, err := b.AllowN(ctx, "warm", 1)
			require.NoError(t, err)
			require.NotEqual(t, limiter.ViaFallback, d.Via)
			if kind == "strict" {
				s.Kill(t)
			} else {
				s.Pause(t)
				defer s.Resume(t)
			}
			refuse := func(key string, n int) time.Duration {
				t.Helper()
				d, err := b.Take(ctx, limiter.Request{Key: key, N: n})
				require.ErrorIs(t, err, limiter.ErrUnavailable)
				require.False(t, d.Allowed)
				require.Equal(t, limiter.ViaFallback, d.Via)
				require.GreaterOrEqual(t, d.RetryAfter, open, "never before the breaker lets a probe through")
				require.Less(t, d.RetryAfter, 2*open+horizon, "bounded")
				return d.RetryAfter
			}

			// One key, refused again and again at one instant: a token
			// interval apart (two for N = 2), starting within one open
			// period after the breaker's.
			first := refuse("k", 1)
			assert.Less(t, first, 2*open)
			prev, prevN := first, 1
			for i := range 20 {
				n := 1 + i%2
				got := refuse("k", n)
				// Told after the previous refusal's tokens.
				assert.Equal(t, time.Duration(prevN)*100*time.Millisecond, got-prev, "refusal %d of k", i+1)
				prev, prevN = got, n
			}
			// Past the horizon (600 tokens' turns): still spread over it,
			// never twice the same in a row.
			for range 600 {
				refuse("k", 1)
			}
			last := time.Duration(-1)
			seen := map[time.Duration]bool{}
			for range 200 {
				got := refuse("k", 1)
				assert.NotEqual(t, last, got)
				seen[got] = true
				last = got
			}
			assert.Greater(t, len(seen), 190, "past the horizon, spread")

			// Many keys, each refused once at this instant: spread over
			// [open, 2×open), no two alike.
			keys := map[time.Duration]bool{}
			var halves [2]int
			for i := range 100 {
				got := refuse("key-"+strconv.Itoa(i), 1)
				assert.Less(t, got, 2*open, "a key's first refusal")
				keys[got] = true
				halves[(got-open)*2/open]++
			}
			assert.Len(t, keys, 100, "distinct keys are told distinct times")
			assert.InDelta(t, 50, halves[0], 20, "spread over the open period: %v", halves)

			// Once k's tail lies in the past, its turns start again.
			clk.Add(2*open + horizon)
			assert.Equal(t, first, refuse("k", 1), "the tail passed: k starts afresh")
		})
	}
}

func TestFailLocalSharesTheLimitAmongLiveNodes(t *testing.T) {
	s := redistest.Start(t)
	name := uniqueName()
	// The heartbeats run on the clock: the test moves it to make them
	// beat, and holds it still while it counts decisions.
	clk := fakeClockAt(t0)
	var nodes []*Strict
	for _, id := range []string{"a", "b", "c", "d"} {
		b, err := NewStrict(Redis{Client: s.Client(t), Name: name, Node: id, Timeout: 30 * time.Millisecond, BreakerFailures: 1,
			BreakerOpen: time.Hour, Heartbeat: 20 * time.Millisecond}, limiter.PerSecond(100, 100), Config{Config: limiter.Config{Clock: clk}})
		require.NoError(t, err)
		defer b.Close()
		nodes = append(nodes, b)
	}
	require.Eventually(t, func() bool {
		clk.Add(20 * time.Millisecond)
		for _, n := range nodes {
			if n.LiveNodes() != 4 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	s.Kill(t)
	ctx := context.Background()
	allowed := 0
	for range 100 {
		d, err := nodes[0].AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.Equal(t, limiter.ViaFallback, d.Via)
		if d.Allowed {
			allowed++
		}
	}
	assert.Equal(t, 25, allowed, "a quarter of the burst: the limit divided by 4 live nodes")
	d, err := nodes[0].AllowN(ctx, "k", 0)
	require.NoError(t, err)
	assert.Equal(t, limiter.Limit{Rate: 25, Period: time.Second, Burst: 25}, d.Limit)
	// A request the share could never grant is denied, not an error, and
	// told to come back once the breaker lets a probe through (an hour
	// here); such refusals of one key are spread like any others: the
	// next is told 50 tokens of the share (2 s) later.
	d, err = nodes[0].AllowN(ctx, "big", 50)
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Equal(t, limiter.ViaFallback, d.Via)
	assert.GreaterOrEqual(t, d.RetryAfter, time.Hour)
	assert.Less(t, d.RetryAfter, 2*time.Hour)
	again, err := nodes[0].AllowN(ctx, "big", 50)
	require.NoError(t, err)
	assert.False(t, again.Allowed)
	assert.Equal(t, 2*time.Second, again.RetryAfter-d.RetryAfter)
	// A limit the request carries is shared the same way.
	d, err = nodes[0].Take(ctx, limiter.Request{Key: "plan", N: 3, Limit: limiter.PerSecond(8, 8)})
	require.NoError(t, err)
	assert.Equal(t, limiter.ViaFallback, d.Via)
	assert.Equal(t, limiter.Limit{Rate: 2, Period: time.Second, Burst: 2}, d.Limit)
	assert.False(t, d.Allowed, "3 > this node's share of 2")
	// Refusals of the fallback are spread like any others.
	d1, err := nodes[0].AllowN(ctx, "k", 1)
	require.NoError(t, err)
	d2, err := nodes[0].AllowN(ctx, "k", 1)
	require.NoError(t, err)
	assert.Equal(t, 40*time.Millisecond, d2.RetryAfter-d1.RetryAfter, "one token interval of the share apart")
}

func TestClosedNodeLeavesTheLiveSet(t *testing.T) {
	s := redistest.Start(t)
	name := uniqueName()
	a, err := NewStrict(Redis{Client: s.Client(t), Name: name, Node: "a", Heartbeat: 20 * time.Millisecond}, limiter.PerSecond(1, 1), Config{})
	require.NoError(t, err)
	defer a.Close()
	b, err := NewStrict(Redis{Client: s.Client(t), Name: name, Node: "b", Heartbeat: 20 * time.Millisecond}, limiter.PerSecond(1, 1), Config{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return a.LiveNodes() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return a.LiveNodes() == 1 }, 10*time.Second, 10*time.Millisecond)
}

func TestCallerCancellationIsNotAFailure(t *testing.T) {
	s := redistest.Start(t)
	b, err := NewStrict(Redis{Client: s.Client(t), Name: uniqueName(), BreakerFailures: 1, BreakerOpen: time.Hour}, limiter.PerSecond(1, 1), failOpen)
	require.NoError(t, err)
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = b.AllowN(ctx, "k", 1)
	require.ErrorIs(t, err, context.Canceled)
	d, err := b.AllowN(context.Background(), "k", 1)
	require.NoError(t, err)
	assert.Equal(t, limiter.ViaRedis, d.Via, "the breaker stayed closed")
}

// TestLoggerReceivesBreakerTransitions: Config.Logger (on fleet.Config, the
// budgets that talk to Redis) gets the breaker's transitions, tagged with
// the failure policy.
func TestLoggerReceivesBreakerTransitions(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	for _, kind := range []string{"strict", "leased"} {
		t.Run(kind, func(t *testing.T) {
			var buf logtest.Buffer
			cfg := Config{Failure: FailOpen, Logger: logtest.NewLogger(&buf)}
			r := Redis{Client: dead, Name: uniqueName(), Timeout: time.Second, BreakerFailures: 1, BreakerOpen: time.Hour}
			var b budget
			var err error
			if kind == "strict" {
				b, err = NewStrict(r, limiter.PerSecond(10, 10), cfg)
			} else {
				b, err = NewLeased(r, limiter.PerSecond(10, 10), LeasedConfig{Config: cfg})
			}
			require.NoError(t, err)
			defer b.Close()
			d, err := b.AllowN(context.Background(), "k", 1)
			require.NoError(t, err)
			assert.Equal(t, limiter.ViaFallback, d.Via)
			assert.Contains(t, buf.String(), `level=WARN msg="herdcap: redis breaker changed state" policy=open breaker=herdcap-`+r.Name+` from=closed to=open`)
		})
	}
}
