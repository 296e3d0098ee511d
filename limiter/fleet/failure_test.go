package fleet

import (
	"context"
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
	b, err := NewStrict(Redis{Client: s.Client(t), Name: uniqueName(), Timeout: 30 * time.Millisecond, BreakerFailures: 1,
		BreakerOpen: 300 * time.Millisecond}, limiter.PerSecond(10, 10), Config{Failure: FailClosed})
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	s.Kill(t)
	for range 5 {
		d, err := b.AllowN(ctx, "k", 1)
		require.ErrorIs(t, err, limiter.ErrUnavailable)
		assert.False(t, d.Allowed)
		assert.Equal(t, limiter.ViaFallback, d.Via)
		assert.Equal(t, 300*time.Millisecond, d.RetryAfter, "retry when the breaker lets a probe through")
	}
	s.Restart(t)
	require.Eventually(t, func() bool {
		d, err := b.AllowN(ctx, "k", 1)
		return err == nil && d.Via == limiter.ViaRedis
	}, 10*time.Second, 20*time.Millisecond)
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
	// A request the share could never grant is denied, not an error.
	d, err = nodes[0].AllowN(ctx, "big", 50)
	require.NoError(t, err)
	assert.False(t, d.Allowed)
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
