package limiter

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The conformance suite: every backend makes the same decisions for the same
// calls at the same explicit times: local, redis and cluster (Redis), and
// leased and leased-cluster (Leased, one node). Each test gets its own Redis
// name, so tests never share buckets.
//
// Where a backend's semantics differ by design, backendCase says so and the
// tests state the expectation for each kind (see remainingIsView); nothing
// is skipped.

type backendCase struct {
	name string
	// make builds the backend under test; it is closed on cleanup.
	make func(t *testing.T, l Limit, opts ...Option) Backend
	// remainingIsView is set for Leased: Decision.Remaining is the node's
	// view (its unspent lease plus what the shared bucket held at the
	// node's last exchange with Redis), so a decision served from the lease
	// does not count refill since that exchange. Peeks read the bucket, so
	// they are exact on every backend. Every other field of every decision
	// is the same on all backends.
	remainingIsView bool
}

var nameSeq atomic.Int64

// uniqueName returns a fresh WithName value.
func uniqueName() string { return fmt.Sprintf("t%d", nameSeq.Add(1)) }

func conformanceBackends(t *testing.T) []backendCase {
	cases := []backendCase{{
		name: "local",
		make: func(t *testing.T, l Limit, opts ...Option) Backend {
			b, err := NewLocal(l, opts...)
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
	}}
	cases = append(cases, redisBackends(t)...)
	return cases
}

func forEachBackend(t *testing.T, f func(t *testing.T, bc backendCase)) {
	for _, bc := range conformanceBackends(t) {
		t.Run(bc.name, func(t *testing.T) { f(t, bc) })
	}
}

func mustAllow(t *testing.T, b Backend, key string, at time.Time, n int) Decision {
	t.Helper()
	d, err := b.AllowNAt(context.Background(), key, at, n)
	require.NoError(t, err)
	return d
}

func TestConformanceBurstThenRefill(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(10, 5))
		for i := range 5 {
			d := mustAllow(t, b, "k", t0, 1)
			assert.True(t, d.Allowed, "request %d", i)
			assert.Equal(t, 1, d.Taken)
			assert.Equal(t, 4-i, d.Remaining)
			assert.Zero(t, d.RetryAfter)
			assert.Equal(t, time.Duration(i+1)*100*time.Millisecond, d.ResetAfter)
			assert.Equal(t, PerSecond(10, 5), d.Limit)
		}
		d := mustAllow(t, b, "k", t0, 1)
		assert.False(t, d.Allowed)
		assert.Zero(t, d.Taken)
		assert.Zero(t, d.Remaining)
		assert.Equal(t, 100*time.Millisecond, d.RetryAfter)
		assert.Equal(t, 500*time.Millisecond, d.ResetAfter)

		// 250 ms later: 2.5 tokens back.
		at := t0.Add(250 * time.Millisecond)
		d = mustAllow(t, b, "k", at, 1)
		assert.True(t, d.Allowed)
		assert.Equal(t, 1, d.Remaining)
		d = mustAllow(t, b, "k", at, 1)
		assert.True(t, d.Allowed)
		d = mustAllow(t, b, "k", at, 1)
		assert.False(t, d.Allowed)
		assert.Equal(t, 50*time.Millisecond, d.RetryAfter)
	})
}

func TestConformanceMultiToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(2, 10))
		d := mustAllow(t, b, "k", t0, 7)
		assert.True(t, d.Allowed)
		assert.Equal(t, 7, d.Taken)
		assert.Equal(t, 3, d.Remaining)
		d = mustAllow(t, b, "k", t0, 4)
		assert.False(t, d.Allowed, "4 > 3 left")
		assert.Equal(t, 3, d.Remaining, "a denial takes nothing")
		assert.Equal(t, 500*time.Millisecond, d.RetryAfter)
		d = mustAllow(t, b, "k", t0, 3)
		assert.True(t, d.Allowed)
		assert.Equal(t, 0, d.Remaining)
		// n equal to the burst is legal; more is not.
		d = mustAllow(t, b, "k2", t0, 10)
		assert.True(t, d.Allowed)
		_, err := b.AllowNAt(context.Background(), "k2", t0, 11)
		assert.ErrorIs(t, err, ErrInvalidN)
		assert.ErrorContains(t, err, "burst")
	})
}

func TestConformancePeek(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(1, 3))
		d := mustAllow(t, b, "k", t0, 0)
		assert.True(t, d.Allowed)
		assert.Zero(t, d.Taken)
		assert.Equal(t, 3, d.Remaining)
		mustAllow(t, b, "k", t0, 2)
		for range 3 {
			d = mustAllow(t, b, "k", t0, 0)
			assert.True(t, d.Allowed)
			assert.Equal(t, 1, d.Remaining, "peeking takes nothing")
			assert.Equal(t, 2*time.Second, d.ResetAfter)
		}
	})
}

func TestConformanceTakeUpTo(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(4, 5))
		ctx := context.Background()
		d, err := b.TakeUpToAt(ctx, "k", t0, 3)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.Equal(t, 3, d.Taken)
		d, err = b.TakeUpToAt(ctx, "k", t0, 3)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.Equal(t, 2, d.Taken, "only 2 were left")
		assert.Equal(t, 0, d.Remaining)
		d, err = b.TakeUpToAt(ctx, "k", t0, 3)
		require.NoError(t, err)
		assert.False(t, d.Allowed)
		assert.Zero(t, d.Taken)
		assert.Equal(t, 250*time.Millisecond, d.RetryAfter, "the wait for one token")
		// Asking for more than the burst is fine: it is capped.
		d, err = b.TakeUpToAt(ctx, "k2", t0, 100)
		require.NoError(t, err)
		assert.Equal(t, 5, d.Taken)
	})
}

func TestConformanceBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(1, 3))
		ctx := context.Background()
		_, err := b.AllowNAt(ctx, "", t0, 1)
		assert.ErrorIs(t, err, ErrInvalidKey)
		_, err = b.AllowNAt(ctx, "k", t0, -1)
		assert.ErrorIs(t, err, ErrInvalidN)
		_, err = b.TakeUpToAt(ctx, "k", t0, -1)
		assert.ErrorIs(t, err, ErrInvalidN)
		_, err = b.AllowN(ctx, "", 1)
		assert.ErrorIs(t, err, ErrInvalidKey)
		assert.ErrorIs(t, b.SetLimit(Limit{Rate: -1, Burst: 1}), ErrInvalidLimit)
	})
}

func TestConformanceKeysAreIsolated(t *testing.T) {
	long := strings.Repeat("x", 3<<20)
	keys := []string{"a", "a}", "{a}", "{a", "k:a", "h:a", long, long + "y", "\x00a", "a\x00", "ключ", " "}
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(1, 1))
		for _, k := range keys {
			d := mustAllow(t, b, k, t0, 1)
			assert.True(t, d.Allowed, "key %.20q has its own bucket", k)
		}
		for _, k := range keys {
			d := mustAllow(t, b, k, t0, 1)
			assert.False(t, d.Allowed, "key %.20q is spent", k)
		}
	})
}

func TestConformanceTimeNeverRunsBackwards(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(1, 2))
		mustAllow(t, b, "k", t0, 2)
		d := mustAllow(t, b, "k", t0.Add(-time.Hour), 1)
		assert.False(t, d.Allowed, "an earlier time refills nothing")
		d = mustAllow(t, b, "k", t0.Add(time.Second), 1)
		assert.True(t, d.Allowed, "time after the last update refills")
	})
}

func TestConformanceRamp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		clk := fakeClockAt(t0)
		b := bc.make(t, PerSecond(10, 10), WithRamp(10*time.Second), WithClock(clk))
		require.NoError(t, b.SetLimit(PerSecond(110, 110)))
		assert.Equal(t, PerSecond(10, 10), b.Limit(), "nothing moves at the start")
		mid := t0.Add(5 * time.Second)
		d := mustAllow(t, b, "k", mid, 0)
		assert.InDelta(t, 60, d.Limit.Rate, 1e-9, "halfway: halfway")
		assert.Equal(t, 60, d.Limit.Burst)
		clk.Set(t0.Add(time.Minute))
		assert.Equal(t, PerSecond(110, 110), b.Limit(), "the ramp ends at the new limit")
		// Admissions follow the ramp: a key drained at t0 refills at the
		// interpolated rate, never at the new rate at once.
		b2 := bc.make(t, PerSecond(10, 10), WithRamp(10*time.Second), WithClock(fakeClockAt(t0)))
		mustAllow(t, b2, "k", t0, 10)
		require.NoError(t, b2.SetLimit(PerSecond(1000, 1000)))
		d = mustAllow(t, b2, "k", t0.Add(100*time.Millisecond), 0)
		assert.LessOrEqual(t, d.Remaining, 10, "100 ms into a 10 s ramp from 10/s to 1000/s: at most ~1.5 tokens/100ms more than before")
		assert.GreaterOrEqual(t, d.Remaining, 1)
	})
}

func TestConformanceAtomicUnderConcurrency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(1, 50))
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					d, err := b.AllowNAt(context.Background(), "hot", t0, 1)
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
		b := bc.make(t, PerSecond(1, 1))
		require.NoError(t, b.Close())
		_, err := b.AllowNAt(context.Background(), "k", t0, 1)
		assert.ErrorIs(t, err, ErrClosed)
		assert.NoError(t, b.Close(), "Close is idempotent")
	})
}

func TestConformanceReserve(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(10, 2))
		r, ok := b.(Reserver)
		require.True(t, ok)
		ctx := context.Background()
		var waits []time.Duration
		for range 5 {
			d, err := r.ReserveNAt(ctx, "k", t0, 1, time.Second)
			require.NoError(t, err)
			require.True(t, d.Allowed)
			assert.Equal(t, 1, d.Taken)
			waits = append(waits, d.RetryAfter)
		}
		assert.Equal(t, []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}, waits,
			"reservations queue at the limit's rate")
		d, err := r.ReserveNAt(ctx, "k", t0, 1, 350*time.Millisecond)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "the next slot is 400 ms out")
		assert.Equal(t, 400*time.Millisecond, d.RetryAfter)
		// The debt is real: AllowN waits behind it.
		a, err := b.AllowNAt(ctx, "k", t0.Add(350*time.Millisecond), 1)
		require.NoError(t, err)
		assert.False(t, a.Allowed)
		a, err = b.AllowNAt(ctx, "k", t0.Add(400*time.Millisecond), 1)
		require.NoError(t, err)
		assert.True(t, a.Allowed)
		_, err = r.ReserveNAt(ctx, "k", t0, 3, time.Second)
		assert.ErrorIs(t, err, ErrInvalidN)
		_, err = r.ReserveNAt(ctx, "k", t0, 1, -time.Second)
		assert.ErrorIs(t, err, ErrInvalidN)
	})
}

// TestConformanceLimitChange: a new limit applies from the bucket's last
// write, on every backend alike (the Redis script refills since then at the
// rate it is given, and Local follows it).
func TestConformanceLimitChange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		clk := fakeClockAt(t0)
		// WithRamp(0): this test is about the new limit's arithmetic, not
		// the ramp (see TestConformanceRamp).
		b := bc.make(t, PerSecond(10, 10), WithClock(clk), WithRamp(0))
		mustAllow(t, b, "k", t0, 10)
		d := mustAllow(t, b, "k", t0.Add(100*time.Millisecond), 0) // a peek writes nothing
		assert.Equal(t, 1, d.Remaining)
		clk.Set(t0.Add(500 * time.Millisecond))
		require.NoError(t, b.SetLimit(PerSecond(100, 100)))
		d = mustAllow(t, b, "k", t0.Add(time.Second), 0)
		assert.Equal(t, 100, d.Remaining, "1 s since the last take, at the new 100/s")
		d = mustAllow(t, b, "k", t0.Add(time.Second), 30)
		assert.True(t, d.Allowed)
		assert.Equal(t, 70, d.Remaining)
		clk.Set(t0.Add(1100 * time.Millisecond))
		require.NoError(t, b.SetLimit(PerSecond(1, 100)))
		d = mustAllow(t, b, "k", t0.Add(3*time.Second), 0)
		assert.Equal(t, 72, d.Remaining, "2 s since the last take, at the new 1/s")
	})
}

// TestConformanceRemainingAfterRefill: Remaining counts refill on every
// backend except Leased, whose Remaining is the node's view (see
// backendCase.remainingIsView); a peek is exact on all of them.
func TestConformanceRemainingAfterRefill(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		b := bc.make(t, PerSecond(10, 10))
		d := mustAllow(t, b, "k", t0, 5)
		require.True(t, d.Allowed)
		assert.Equal(t, 5, d.Remaining)
		// 500 ms later 5 tokens are back: 10 in all, 9 after this take.
		at := t0.Add(500 * time.Millisecond)
		d = mustAllow(t, b, "k", at, 1)
		assert.True(t, d.Allowed)
		if bc.remainingIsView {
			// Served from the lease: the view is as of the last exchange,
			// at t0, when 5 were left, one of them since spent.
			assert.Equal(t, 4, d.Remaining, "the node's view, without the refill since t0")
		} else {
			assert.Equal(t, 9, d.Remaining)
		}
		d = mustAllow(t, b, "k", at, 0)
		assert.True(t, d.Allowed)
		assert.Equal(t, 9, d.Remaining, "a peek is exact")
		assert.Equal(t, 100*time.Millisecond, d.ResetAfter)
	})
}

// TestConformanceDefaultRamp: without WithRamp a new limit ramps over
// DefaultRamp (10 s), never in one jump; WithRamp(0) is the explicit opt-out.
func TestConformanceDefaultRamp(t *testing.T) {
	require.Equal(t, 10*time.Second, DefaultRamp)
	forEachBackend(t, func(t *testing.T, bc backendCase) {
		clk := fakeClockAt(t0)
		b := bc.make(t, PerSecond(10, 10), WithClock(clk))
		require.NoError(t, b.SetLimit(PerSecond(110, 110)))
		assert.Equal(t, PerSecond(10, 10), b.Limit(), "no jump")
		clk.Set(t0.Add(DefaultRamp / 2))
		assert.InDelta(t, 60, b.Limit().Rate, 1e-9, "halfway through the default ramp")
		clk.Set(t0.Add(DefaultRamp))
		assert.Equal(t, PerSecond(110, 110), b.Limit())

		clk0 := fakeClockAt(t0)
		b0 := bc.make(t, PerSecond(10, 10), WithClock(clk0), WithRamp(0))
		require.NoError(t, b0.SetLimit(PerSecond(110, 110)))
		assert.Equal(t, PerSecond(110, 110), b0.Limit(), "WithRamp(0): at once")
	})
}
