package limiter

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

// slack is added to the time budget in latency assertions. CI runs these
// tests under -race on two loaded cores, where a goroutine can wait tens of
// milliseconds for a CPU; 250 ms is far above that and still far below the
// seconds a decision would block without the budget (go-redis's default read
// timeout is 3 s). The tight figures (budget + a few ms) are measured by
// BenchmarkOutageKill (Redis killed under concurrent load, Redis and Leased)
// and BenchmarkRedisOutage (Redis stalled), and reported in the README.
const slack = 250 * time.Millisecond

func TestFailLocalUnderKillAndRestart(t *testing.T) {
	s := redistest.Start(t)
	budget := 30 * time.Millisecond
	b, err := NewRedis(s.Client(t), PerSecond(1000, 1000),
		WithName(uniqueName()), WithTimeout(budget), WithBreaker(2, 200*time.Millisecond), WithHeartbeat(50*time.Millisecond))
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
				case d.Source == SourceRedis:
					fromRedis.Add(1)
				case d.Source == SourceFallback:
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
	t.Logf("max decision latency %v (budget %v); %d from redis, %d from fallback", ml, budget, fromRedis.Load(), fromBackup.Load())
	assert.Less(t, ml, budget+slack, "no decision outlives the time budget")
}

func TestBreakerOpenMakesNoRedisCalls(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	b, err := NewRedis(c, PerSecond(10, 10), WithName(uniqueName()),
		WithTimeout(30*time.Millisecond), WithBreaker(1, time.Hour), WithFailure(FailOpen))
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	s.Pause(t)
	d, err := b.AllowN(ctx, "k", 1) // times out: the breaker opens
	require.NoError(t, err)
	assert.Equal(t, SourceFallback, d.Source)
	s.Resume(t)
	h := &countingHook{}
	c.AddHook(h)
	for range 100 {
		start := time.Now()
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, d.Allowed, "FailOpen allows")
		require.Equal(t, SourceFallback, d.Source)
		require.Less(t, time.Since(start), slack)
	}
	assert.Zero(t, h.cmds.Load(), "an open breaker sends nothing to Redis")
}

func TestFailClosed(t *testing.T) {
	s := redistest.Start(t)
	b, err := NewRedis(s.Client(t), PerSecond(10, 10), WithName(uniqueName()),
		WithTimeout(30*time.Millisecond), WithBreaker(1, 300*time.Millisecond), WithFailure(FailClosed))
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	s.Kill(t)
	for range 5 {
		d, err := b.AllowN(ctx, "k", 1)
		require.ErrorIs(t, err, ErrUnavailable)
		assert.False(t, d.Allowed)
		assert.Equal(t, SourceFallback, d.Source)
		assert.Equal(t, 300*time.Millisecond, d.RetryAfter, "retry when the breaker lets a probe through")
	}
	s.Restart(t)
	require.Eventually(t, func() bool {
		d, err := b.AllowN(ctx, "k", 1)
		return err == nil && d.Source == SourceRedis
	}, 10*time.Second, 20*time.Millisecond)
}

func TestFailLocalSharesTheLimitAmongLiveNodes(t *testing.T) {
	s := redistest.Start(t)
	name := uniqueName()
	var nodes []*Redis
	for _, id := range []string{"a", "b", "c", "d"} {
		b, err := NewRedis(s.Client(t), PerSecond(100, 100), WithName(name), WithNodeID(id),
			WithTimeout(30*time.Millisecond), WithBreaker(1, time.Hour), WithHeartbeat(20*time.Millisecond))
		require.NoError(t, err)
		defer b.Close()
		nodes = append(nodes, b)
	}
	require.Eventually(t, func() bool {
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
		d, err := nodes[0].AllowNAt(ctx, "k", t0, 1)
		require.NoError(t, err)
		require.Equal(t, SourceFallback, d.Source)
		if d.Allowed {
			allowed++
		}
	}
	assert.Equal(t, 25, allowed, "a quarter of the burst: the limit divided by 4 live nodes")
	d, err := nodes[0].AllowNAt(ctx, "k", t0, 0)
	require.NoError(t, err)
	assert.Equal(t, Limit{Rate: 25, Period: time.Second, Burst: 25}, d.Limit)
	// A request the share could never grant is denied, not an error.
	d, err = nodes[0].AllowNAt(ctx, "big", t0, 50)
	require.NoError(t, err)
	assert.False(t, d.Allowed)
}

func TestClosedNodeLeavesTheLiveSet(t *testing.T) {
	s := redistest.Start(t)
	name := uniqueName()
	a, err := NewRedis(s.Client(t), PerSecond(1, 1), WithName(name), WithNodeID("a"), WithHeartbeat(20*time.Millisecond))
	require.NoError(t, err)
	defer a.Close()
	b, err := NewRedis(s.Client(t), PerSecond(1, 1), WithName(name), WithNodeID("b"), WithHeartbeat(20*time.Millisecond))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return a.LiveNodes() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return a.LiveNodes() == 1 }, 10*time.Second, 10*time.Millisecond)
}

func TestCallerCancellationIsNotAFailure(t *testing.T) {
	s := redistest.Start(t)
	b, err := NewRedis(s.Client(t), PerSecond(1, 1), WithName(uniqueName()), WithBreaker(1, time.Hour), WithFailure(FailOpen))
	require.NoError(t, err)
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = b.AllowN(ctx, "k", 1)
	require.ErrorIs(t, err, context.Canceled)
	d, err := b.AllowN(context.Background(), "k", 1)
	require.NoError(t, err)
	assert.Equal(t, SourceRedis, d.Source, "the breaker stayed closed")
}
