package fleet

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
)

// The conformance suite: every backend makes the same decisions for the same
// requests at the same times: local (limiter.Local), redis and cluster
// (Strict), and leased and leased-cluster (Leased, one node). Each test
// gets its own Redis name, so tests never share buckets, and drives time
// with a fake clock injected through Config.Clock.
//
// Where a backend's semantics differ by design, backendCase says so and the
// tests state the expectation for each kind (see remainingIsView); nothing
// is skipped.

// budget is the contract every backend meets: limiter.Budget and the
// methods Local, Strict and Leased share.
type budget interface {
	limiter.Budget
	AllowN(ctx context.Context, key string, n int) (limiter.Decision, error)
	Limit() limiter.Limit
	SetLimit(l limiter.Limit) error
	Close() error
}

// subject is a backend under test with the clock it reads.
type subject struct {
	budget
	clk *fakeclock.Clock
}

// at moves the subject's clock to at and takes n tokens for key.
func (s subject) at(t *testing.T, key string, at time.Time, n int) limiter.Decision {
	t.Helper()
	d, err := s.takeAt(at, limiter.Request{Key: key, N: n})
	require.NoError(t, err)
	return d
}

// takeAt moves the subject's clock to at and decides r.
func (s subject) takeAt(at time.Time, r limiter.Request) (limiter.Decision, error) {
	s.clk.Set(at)
	return s.Take(context.Background(), r)
}

// noTimers is the suite's clock: a fake clock whose timers never fire, so
// that time moves only with the decisions. A Leased budget's scheduled
// refills are then made by the first decision at or after their time (as
// when its timers are starved of CPU), and every backend makes the same
// decisions; TestLeasedRefillRunsOnTheClock checks the timers themselves.
type noTimers struct{ *fakeclock.Clock }

func (noTimers) AfterFunc(time.Duration, func()) limiter.Timer { return neverTimer{} }

type neverTimer struct{}

func (neverTimer) Stop() bool { return true }

type backendCase struct {
	name string
	// make builds the backend under test on cfg; it is closed on
	// cleanup.
	make func(t *testing.T, l limiter.Limit, cfg limiter.Config) budget
	// remainingIsView is set for Leased: Decision.Remaining is the node's
	// view (its unspent lease plus what the shared bucket held at the
	// node's last exchange with Redis), so a decision served from the lease
	// does not count refill since that exchange. Peeks read the bucket, so
	// they are exact on every backend. Every other field of every decision
	// is the same on all backends.
	remainingIsView bool
}

// subject builds bc's backend on cfg, with the suite's clock at t0.
func (bc backendCase) subject(t *testing.T, l limiter.Limit, cfg limiter.Config) subject {
	t.Helper()
	clk := fakeClockAt(t0)
	cfg.Clock = noTimers{clk}
	return subject{budget: bc.make(t, l, cfg), clk: clk}
}

func conformanceBackends() []backendCase {
	return []backendCase{
		{name: "local", make: func(t *testing.T, l limiter.Limit, cfg limiter.Config) budget {
			b, err := limiter.NewLocal(l, cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			return b
		}},
		{name: "redis", make: func(t *testing.T, l limiter.Limit, cfg limiter.Config) budget {
			return newStrictForTest(t, srv.Client(t), l, Redis{}, Config{Config: cfg})
		}},
		{name: "cluster", make: func(t *testing.T, l limiter.Limit, cfg limiter.Config) budget {
			return newStrictForTest(t, cluster.Client(t), l, Redis{}, Config{Config: cfg})
		}},
		{name: "leased", remainingIsView: true, make: func(t *testing.T, l limiter.Limit, cfg limiter.Config) budget {
			return newLeasedForTest(t, srv.Client(t), l, Redis{}, LeasedConfig{Config: Config{Config: cfg}})
		}},
		{name: "leased-cluster", remainingIsView: true, make: func(t *testing.T, l limiter.Limit, cfg limiter.Config) budget {
			return newLeasedForTest(t, cluster.Client(t), l, Redis{}, LeasedConfig{Config: Config{Config: cfg}})
		}},
	}
}

func forEachBackend(t *testing.T, f func(t *testing.T, bc backendCase)) {
	for _, bc := range conformanceBackends() {
		t.Run(bc.name, func(t *testing.T) { f(t, bc) })
	}
}

func TestConformanceBurstThenRefill(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(10, 5), limiter.Config{})
		for i := range 5 {
			d := b.at(t, "k", t0, 1)
			assert.True(t, d.Allowed, "request %d", i)
			assert.Equal(t, 1, d.Taken)
			assert.Equal(t, 4-i, d.Remaining)
			assert.Zero(t, d.RetryAfter)
			assert.Equal(t, time.Duration(i+1)*100*time.Millisecond, d.ResetAfter)
			assert.Equal(t, limiter.PerSecond(10, 5), d.Limit)
		}
		d := b.at(t, "k", t0, 1)
		assert.False(t, d.Allowed)
		assert.Zero(t, d.Taken)
		assert.Zero(t, d.Remaining)
		assert.Equal(t, 100*time.Millisecond, d.RetryAfter)
		assert.Equal(t, 500*time.Millisecond, d.ResetAfter)

		// 250 ms later: 2.5 tokens back.
		at := t0.Add(250 * time.Millisecond)
		d = b.at(t, "k", at, 1)
		assert.True(t, d.Allowed)
		assert.Equal(t, 1, d.Remaining)
		d = b.at(t, "k", at, 1)
		assert.True(t, d.Allowed)
		d = b.at(t, "k", at, 1)
		assert.False(t, d.Allowed)
		assert.Equal(t, 50*time.Millisecond, d.RetryAfter, "the denial tail (t0+200ms) lies in the past: the natural wait")
	})
}

func TestConformanceMultiToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(2, 10), limiter.Config{})
		d := b.at(t, "k", t0, 7)
		assert.True(t, d.Allowed)
		assert.Equal(t, 7, d.Taken)
		assert.Equal(t, 3, d.Remaining)
		d = b.at(t, "k", t0, 4)
		assert.False(t, d.Allowed, "4 > 3 left")
		assert.Equal(t, 3, d.Remaining, "a denial takes nothing")
		assert.Equal(t, 500*time.Millisecond, d.RetryAfter)
		d = b.at(t, "k", t0, 3)
		assert.True(t, d.Allowed)
		assert.Equal(t, 0, d.Remaining)
		// n equal to the burst is legal; more is not.
		d = b.at(t, "k2", t0, 10)
		assert.True(t, d.Allowed)
		_, err := b.AllowN(context.Background(), "k2", 11)
		assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
		assert.ErrorContains(t, err, "burst")
	})
}

func TestConformancePeek(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 3), limiter.Config{})
		d := b.at(t, "k", t0, 0)
		assert.True(t, d.Allowed)
		assert.Zero(t, d.Taken)
		assert.Equal(t, 3, d.Remaining)
		b.at(t, "k", t0, 2)
		for range 3 {
			d = b.at(t, "k", t0, 0)
			assert.True(t, d.Allowed)
			assert.Equal(t, 1, d.Remaining, "peeking takes nothing")
			assert.Equal(t, 2*time.Second, d.ResetAfter)
		}
	})
}

func TestConformanceTakeUpTo(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(4, 5), limiter.Config{})
		upTo := func(key string, n int) limiter.Decision {
			t.Helper()
			d, err := b.takeAt(t0, limiter.Request{Key: key, N: n, UpTo: true})
			require.NoError(t, err)
			return d
		}
		d := upTo("k", 3)
		assert.True(t, d.Allowed)
		assert.Equal(t, 3, d.Taken)
		d = upTo("k", 3)
		assert.True(t, d.Allowed)
		assert.Equal(t, 2, d.Taken, "only 2 were left")
		assert.Equal(t, 0, d.Remaining)
		d = upTo("k", 3)
		assert.False(t, d.Allowed)
		assert.Zero(t, d.Taken)
		assert.Equal(t, 250*time.Millisecond, d.RetryAfter, "the wait for one token")
		// Asking for more than the burst is fine: it is capped.
		d = upTo("k2", 100)
		assert.Equal(t, 5, d.Taken)
	})
}

func TestConformanceBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 3), limiter.Config{})
		ctx := context.Background()
		for _, r := range []limiter.Request{
			{Key: "", N: 1},
			{Key: "k", N: -1},
			{Key: "k", N: -1, UpTo: true},
			{Key: "k", N: 1, Wait: -time.Second},
			{Key: "k", N: 1, UpTo: true, Wait: time.Second},
			{Key: "k", N: 4},
		} {
			_, err := b.Take(ctx, r)
			assert.ErrorIs(t, err, limiter.ErrInvalidRequest, "%+v", r)
		}
		_, err := b.AllowN(ctx, "", 1)
		assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
		_, err = b.Take(ctx, limiter.Request{Key: "k", N: 1, Limit: limiter.Limit{Rate: 1}})
		assert.ErrorIs(t, err, limiter.ErrInvalidLimit)
		assert.ErrorContains(t, err, "Request.Limit.Burst")
		assert.ErrorIs(t, b.SetLimit(limiter.Limit{Rate: -1, Burst: 1}), limiter.ErrInvalidLimit)
	})
}

func TestConformanceKeysAreIsolated(t *testing.T) {
	long := strings.Repeat("x", 3<<20)
	keys := []string{"a", "a}", "{a}", "{a", "k:a", "h:a", long, long + "y", "\x00a", "a\x00", "ключ", " "}
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 1), limiter.Config{})
		for _, k := range keys {
			d := b.at(t, k, t0, 1)
			assert.True(t, d.Allowed, "key %.20q has its own bucket", k)
		}
		for _, k := range keys {
			d := b.at(t, k, t0, 1)
			assert.False(t, d.Allowed, "key %.20q is spent", k)
		}
	})
}

func TestConformanceTimeNeverRunsBackwards(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 2), limiter.Config{})
		b.at(t, "k", t0, 2)
		d := b.at(t, "k", t0.Add(-time.Hour), 1)
		assert.False(t, d.Allowed, "an earlier time refills nothing")
		d = b.at(t, "k", t0.Add(time.Second), 1)
		assert.True(t, d.Allowed, "time after the last update refills")
	})
}

func TestConformanceRamp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(10, 10), limiter.Config{Ramp: 10 * time.Second})
		require.NoError(t, b.SetLimit(limiter.PerSecond(110, 110)))
		assert.Equal(t, limiter.PerSecond(10, 10), b.Limit(), "nothing moves at the start")
		mid := t0.Add(5 * time.Second)
		d := b.at(t, "k", mid, 0)
		assert.InDelta(t, 60, d.Limit.Rate, 1e-9, "halfway: halfway")
		assert.Equal(t, 60, d.Limit.Burst)
		b.clk.Set(t0.Add(time.Minute))
		assert.Equal(t, limiter.PerSecond(110, 110), b.Limit(), "the ramp ends at the new limit")
		// Admissions follow the ramp: a key drained at t0 refills at the
		// interpolated rate, never at the new rate at once.
		b2 := bc.subject(t, limiter.PerSecond(10, 10), limiter.Config{Ramp: 10 * time.Second})
		b2.at(t, "k", t0, 10)
		require.NoError(t, b2.SetLimit(limiter.PerSecond(1000, 1000)))
		d = b2.at(t, "k", t0.Add(100*time.Millisecond), 0)
		assert.LessOrEqual(t, d.Remaining, 10, "100 ms into a 10 s ramp from 10/s to 1000/s: at most ~1.5 tokens/100ms more than before")
		assert.GreaterOrEqual(t, d.Remaining, 1)
	})
}

func TestConformanceAtomicUnderConcurrency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 50), limiter.Config{})
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					d, err := b.AllowN(context.Background(), "hot", 1)
					if err == nil && d.Allowed {
						allowed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		assert.Equal(t, int64(50), allowed.Load(), "exactly the burst, never more")
	})
}

func TestConformanceClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 1), limiter.Config{})
		require.NoError(t, b.Close())
		_, err := b.AllowN(context.Background(), "k", 1)
		assert.ErrorIs(t, err, limiter.ErrClosed)
		_, err = b.Take(context.Background(), limiter.Request{Key: "k", N: 1, Limit: limiter.PerSecond(1, 1)})
		assert.ErrorIs(t, err, limiter.ErrClosed)
		assert.NoError(t, b.Close(), "Close is idempotent")
	})
}

func TestConformanceReserve(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(10, 2), limiter.Config{})
		reserve := func(n int, wait time.Duration) (limiter.Decision, error) {
			return b.takeAt(t0, limiter.Request{Key: "k", N: n, Wait: wait})
		}
		var waits []time.Duration
		for range 5 {
			d, err := reserve(1, time.Second)
			require.NoError(t, err)
			require.True(t, d.Allowed)
			assert.Equal(t, 1, d.Taken)
			waits = append(waits, d.RetryAfter)
		}
		assert.Equal(t, []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}, waits,
			"reservations queue at the limit's rate")
		d, err := reserve(1, 350*time.Millisecond)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "the next slot is 400 ms out")
		assert.Equal(t, 400*time.Millisecond, d.RetryAfter)
		// The debt is real: AllowN waits behind it.
		a := b.at(t, "k", t0.Add(350*time.Millisecond), 1)
		assert.False(t, a.Allowed)
		a = b.at(t, "k", t0.Add(400*time.Millisecond), 1)
		assert.True(t, a.Allowed)
		_, err = b.takeAt(t0, limiter.Request{Key: "k", N: 3, Wait: time.Second})
		assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
		_, err = b.takeAt(t0, limiter.Request{Key: "k", N: 1, Wait: -time.Second})
		assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
	})
}

// TestConformanceLimitChange: a new limit applies from the bucket's last
// write, on every backend alike (the Redis script refills since then at the
// rate it is given, and Local follows it).
func TestConformanceLimitChange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		// NoRamp: this test is about the new limit's arithmetic, not the
		// ramp (see TestConformanceRamp).
		b := bc.subject(t, limiter.PerSecond(10, 10), limiter.Config{Ramp: limiter.NoRamp})
		b.at(t, "k", t0, 10)
		d := b.at(t, "k", t0.Add(100*time.Millisecond), 0) // a peek writes nothing
		assert.Equal(t, 1, d.Remaining)
		b.clk.Set(t0.Add(500 * time.Millisecond))
		require.NoError(t, b.SetLimit(limiter.PerSecond(100, 100)))
		d = b.at(t, "k", t0.Add(time.Second), 0)
		assert.Equal(t, 100, d.Remaining, "1 s since the last take, at the new 100/s")
		d = b.at(t, "k", t0.Add(time.Second), 30)
		assert.True(t, d.Allowed)
		assert.Equal(t, 70, d.Remaining)
		b.clk.Set(t0.Add(1100 * time.Millisecond))
		require.NoError(t, b.SetLimit(limiter.PerSecond(1, 100)))
		d = b.at(t, "k", t0.Add(3*time.Second), 0)
		assert.Equal(t, 72, d.Remaining, "2 s since the last take, at the new 1/s")
	})
}

// TestConformanceRemainingAfterRefill: Remaining counts refill on every
// backend except Leased, whose Remaining is the node's view (see
// backendCase.remainingIsView); a peek is exact on all of them.
func TestConformanceRemainingAfterRefill(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(10, 10), limiter.Config{})
		d := b.at(t, "k", t0, 5)
		require.True(t, d.Allowed)
		assert.Equal(t, 5, d.Remaining)
		// 500 ms later 5 tokens are back: 10 in all, 9 after this take.
		at := t0.Add(500 * time.Millisecond)
		d = b.at(t, "k", at, 1)
		assert.True(t, d.Allowed)
		if bc.remainingIsView {
			// Served from the lease: the view is as of the last exchange,
			// at t0, when 5 were left, one of them since spent.
			assert.Equal(t, 4, d.Remaining, "the node's view, without the refill since t0")
		} else {
			assert.Equal(t, 9, d.Remaining)
		}
		d = b.at(t, "k", at, 0)
		assert.True(t, d.Allowed)
		assert.Equal(t, 9, d.Remaining, "a peek is exact")
		assert.Equal(t, 100*time.Millisecond, d.ResetAfter)
	})
}

// TestConformanceDefaultRamp: with Config.Ramp 0 a new limit ramps over
// 10 s, never in one jump; NoRamp is the explicit opt-out.
func TestConformanceDefaultRamp(t *testing.T) {
	const defaultRamp = 10 * time.Second
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(10, 10), limiter.Config{})
		require.NoError(t, b.SetLimit(limiter.PerSecond(110, 110)))
		assert.Equal(t, limiter.PerSecond(10, 10), b.Limit(), "no jump")
		b.clk.Set(t0.Add(defaultRamp / 2))
		assert.InDelta(t, 60, b.Limit().Rate, 1e-9, "halfway through the default ramp")
		b.clk.Set(t0.Add(defaultRamp))
		assert.Equal(t, limiter.PerSecond(110, 110), b.Limit())

		b0 := bc.subject(t, limiter.PerSecond(10, 10), limiter.Config{Ramp: limiter.NoRamp})
		require.NoError(t, b0.SetLimit(limiter.PerSecond(110, 110)))
		assert.Equal(t, limiter.PerSecond(110, 110), b0.Limit(), "NoRamp: at once")
	})
}

// TestConformanceRequestLimits: each key refills at the limit its requests
// carry, independently of the budget's own and of other keys'.
func TestConformanceRequestLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 1), limiter.Config{})
		free, paid := limiter.PerSecond(2, 2), limiter.PerMinute(6000, 10)
		take := func(key string, l limiter.Limit, at time.Time, n int) limiter.Decision {
			t.Helper()
			d, err := b.takeAt(at, limiter.Request{Key: key, N: n, Limit: l})
			require.NoError(t, err)
			return d
		}
		for i := range 10 {
			d := take("paid", paid, t0, 1)
			assert.True(t, d.Allowed, i)
			assert.Equal(t, paid, d.Limit, "a steady carried limit is reported as given")
		}
		d := take("paid", paid, t0, 1)
		assert.False(t, d.Allowed)
		assert.Equal(t, 10*time.Millisecond, d.RetryAfter, "one token at 100/s")
		assert.True(t, take("free", free, t0, 2).Allowed)
		d = take("free", free, t0, 1)
		assert.False(t, d.Allowed)
		assert.Equal(t, 500*time.Millisecond, d.RetryAfter, "one token at 2/s")
		d = take("own", limiter.Limit{}, t0, 1)
		assert.True(t, d.Allowed)
		assert.Equal(t, limiter.PerSecond(1, 1), d.Limit, "the zero Limit is the budget's own")
		assert.False(t, take("own", limiter.Limit{}, t0, 1).Allowed)
		d = take("paid", paid, t0.Add(50*time.Millisecond), 0)
		assert.Equal(t, 5, d.Remaining, "50 ms at 100/s")
		d = take("free", free, t0.Add(time.Second), 0)
		assert.Equal(t, 2, d.Remaining, "1 s at 2/s")
		_, err := b.takeAt(t0, limiter.Request{Key: "paid", N: 11, Limit: paid})
		assert.ErrorIs(t, err, limiter.ErrInvalidRequest, "beyond the carried burst")
		// UpTo and Wait honour the carried limit too.
		d, err = b.takeAt(t0.Add(time.Second), limiter.Request{Key: "paid", N: 50, UpTo: true, Limit: paid})
		require.NoError(t, err)
		if bc.remainingIsView {
			// What its lease held too: at most L, a tenth of a second of
			// the limit (see the overshoot bound).
			assert.GreaterOrEqual(t, d.Taken, 10)
			assert.LessOrEqual(t, d.Taken, 10+10)
		} else {
			assert.Equal(t, 10, d.Taken)
		}
		d, err = b.takeAt(t0.Add(time.Second), limiter.Request{Key: "paid", N: 1, Wait: time.Second, Limit: paid})
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.Equal(t, 10*time.Millisecond, d.RetryAfter, "booked one interval ahead")
	})
}

// TestConformanceRequestLimitRamps: a key in use whose carried limit
// changes ramps to the new one over Config.Ramp, from the limit in force,
// and refills at the interpolated limit meanwhile; a key seen for the
// first time, or idle (its bucket full), takes its limit at once; with
// NoRamp every change applies at once.
func TestConformanceRequestLimitRamps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(1, 1), limiter.Config{Ramp: 10 * time.Second})
		lo, hi := limiter.PerSecond(10, 10), limiter.PerSecond(110, 110)
		take := func(key string, l limiter.Limit, at time.Time, n int) limiter.Decision {
			t.Helper()
			d, err := b.takeAt(at, limiter.Request{Key: key, N: n, Limit: l})
			require.NoError(t, err)
			return d
		}
		d := take("new", hi, t0, 0)
		assert.Equal(t, hi, d.Limit, "first seen: at once")
		assert.Equal(t, 110, d.Remaining, "and full")

		require.True(t, take("k", lo, t0, 10).Allowed) // in use: drained
		d = take("k", hi, t0, 0)
		assert.Equal(t, lo, d.Limit, "nothing moves at the start of the ramp")
		d = take("k", hi, t0.Add(100*time.Millisecond), 0)
		assert.LessOrEqual(t, d.Remaining, 2, "100 ms into a 10 s ramp from 10/s to 110/s: about 1 token, not 11")
		assert.GreaterOrEqual(t, d.Remaining, 1)
		d = take("k", hi, t0.Add(5*time.Second), 0)
		assert.InDelta(t, 60, d.Limit.PerSecond(), 1e-6, "halfway: halfway")
		assert.Equal(t, 60, d.Limit.Burst)
		assert.Equal(t, 60, d.Remaining, "refilled to the interpolated burst")
		d = take("k", hi, t0.Add(10*time.Second), 0)
		assert.Equal(t, hi, d.Limit, "the ramp ends at the new limit")
		// And down again, in use: from where it stands.
		require.True(t, take("k", hi, t0.Add(10*time.Second), 100).Allowed)
		d = take("k", lo, t0.Add(10100*time.Millisecond), 0)
		assert.Equal(t, hi, d.Limit, "in use (21 of 110): a ramp down starts")
		d = take("k", lo, t0.Add(15100*time.Millisecond), 0)
		assert.InDelta(t, 60, d.Limit.PerSecond(), 1e-6, "halfway down")

		// Idle (full) at lo, then hi: at once.
		require.True(t, take("idle", lo, t0, 1).Allowed)
		d = take("idle", hi, t0.Add(time.Minute), 0)
		assert.Equal(t, hi, d.Limit, "an idle key is a new key")

		// The same limit written another way is no change.
		same := limiter.Limit{Rate: 600, Period: time.Minute, Burst: 10}
		require.True(t, take("same", lo, t0.Add(time.Minute), 10).Allowed)
		d = take("same", same, t0.Add(time.Minute), 0)
		assert.InDelta(t, 10, d.Limit.PerSecond(), 1e-9)
		assert.Equal(t, 10, d.Limit.Burst)

		now := bc.subject(t, limiter.PerSecond(1, 1), limiter.Config{Ramp: limiter.NoRamp})
		_, err := now.takeAt(t0, limiter.Request{Key: "k", N: 10, Limit: lo})
		require.NoError(t, err)
		d, err = now.takeAt(t0.Add(time.Second), limiter.Request{Key: "k", Limit: hi})
		require.NoError(t, err)
		assert.Equal(t, hi, d.Limit, "NoRamp: at once")
		assert.Equal(t, 110, d.Remaining, "1 s at the new 110/s since the last take")
	})
}

// tailRun refuses n callers of one token at t0 on a key drained of its
// burst of 5 at 10/s, and returns what each was told.
func tailRun(t *testing.T, bc backendCase, n int) []time.Duration {
	t.Helper()
	b := bc.subject(t, limiter.PerSecond(10, 5), limiter.Config{})
	require.True(t, b.at(t, "k", t0, 5).Allowed)
	told := make([]time.Duration, n)
	for i := range told {
		d := b.at(t, "k", t0, 1)
		require.False(t, d.Allowed)
		told[i] = d.RetryAfter
	}
	return told
}

// TestConformanceDenialTail: callers refused together are told successive
// times, one token interval apart, up to a horizon (max(burst ÷ rate,
// 1 min)) ahead; the refusals past it are spread over the horizon, the
// same on every backend.
func TestConformanceDenialTail(t *testing.T) {
	local := tailRun(t, conformanceBackends()[0], 700)
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		told := tailRun(t, bc, 700)
		for i := range 599 {
			require.Equal(t, time.Duration(i+1)*100*time.Millisecond, told[i], "refusal %d", i)
		}
		for i := 599; i < len(told); i++ {
			require.GreaterOrEqual(t, told[i], 100*time.Millisecond)
			require.LessOrEqual(t, told[i], time.Minute)
			require.NotEqual(t, told[i-1], told[i], "refusal %d", i)
		}
		assert.Equal(t, local, told, "the same times on every backend")
	})
}

// TestConformanceDenialTailReturnsAreFlat: a thousand callers refused in
// the same instant, each coming back when told (and again if refused),
// arrive at the bucket's rate: in any 100 ms window after the refusal at
// most 1.1 × (rate × 0.1 s) + burst of them.
func TestConformanceDenialTailReturnsAreFlat(t *testing.T) {
	const (
		callers = 1000
		rate    = 100.0
		burst   = 10
	)
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.subject(t, limiter.PerSecond(rate, burst), limiter.Config{})
		var queue []time.Duration // when each refused caller comes back
		for range callers {
			d := b.at(t, "api", t0, 1)
			if !d.Allowed {
				queue = append(queue, d.RetryAfter)
			}
		}
		var arrivals []time.Duration
		for len(queue) > 0 {
			j := 0
			for i := range queue {
				if queue[i] < queue[j] {
					j = i
				}
			}
			at := queue[j]
			queue = append(queue[:j], queue[j+1:]...)
			arrivals = append(arrivals, at)
			if d := b.at(t, "api", t0.Add(at), 1); !d.Allowed {
				queue = append(queue, at+d.RetryAfter)
			}
		}
		bound := int(math.Floor(1.1*rate*0.1)) + burst
		worst := 0
		for i := range arrivals {
			n := 0
			for j := i; j < len(arrivals) && arrivals[j]-arrivals[i] < 100*time.Millisecond; j++ {
				n++
			}
			worst = max(worst, n)
		}
		t.Logf("%d returns; worst 100 ms window %d (bound %d)", len(arrivals), worst, bound)
		assert.LessOrEqual(t, worst, bound)
		assert.GreaterOrEqual(t, len(arrivals), callers-burst, "every refused caller came back")
	})
}
