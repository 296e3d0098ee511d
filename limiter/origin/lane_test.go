package origin_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// newLaneGuard returns a guard named "db" over a Local budget of l (no
// ramp) on a virtual clock, and the budget.
func newLaneGuard(t *testing.T, l limiter.Limit, cfg origin.Config) (*origin.Guard, *fakeclock.Clock, *limiter.Local) {
	t.Helper()
	clk := fakeclock.New(time.Unix(1_000_000, 0))
	b, err := limiter.NewLocal(l, limiter.Config{Clock: clk, Ramp: limiter.NoRamp})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	cfg.Budget, cfg.Name, cfg.Clock = b, "db", clk
	g, err := origin.New(cfg)
	require.NoError(t, err)
	return g, clk, b
}

// reserve reserves one call in lane with no deadline, and requires no error.
func reserve(t *testing.T, g *origin.Guard, lane origin.Lane) origin.Hold {
	t.Helper()
	h, err := g.Reserve(context.Background(), time.Time{}, lane)
	require.NoError(t, err)
	return h
}

// TestBackgroundKeepsHalfTheBurst: on a fixed budget, background calls
// take tokens only while the bucket keeps half its burst, so a foreground
// burst of that half then goes at once.
func TestBackgroundKeepsHalfTheBurst(t *testing.T) {
	g, clk, _ := newLaneGuard(t, limiter.PerSecond(10, 10), origin.Config{})
	var bg int
	for range 20 {
		h := reserve(t, g, origin.Background)
		if !h.Allowed {
			assert.Equal(t, origin.ReasonBudget, h.Reason)
			// One token short of 6 at 10 a second: 100 ms, spread over [1, 2) of it.
			assert.GreaterOrEqual(t, h.RetryAfter, 100*time.Millisecond)
			assert.Less(t, h.RetryAfter, 200*time.Millisecond)
			break
		}
		assert.Zero(t, h.Wait, "background is never held")
		h.Record(nil, time.Millisecond)
		bg++
	}
	assert.Equal(t, 5, bg, "10 tokens: background takes them while 6 or more are left (one taken keeps 5)")
	for k := range 5 {
		h := reserve(t, g, origin.Foreground)
		require.True(t, h.Allowed)
		assert.Zero(t, h.Wait, "foreground call %d found its token", k)
		h.Record(nil, time.Millisecond)
	}
	assert.False(t, reserve(t, g, origin.Background).Allowed, "an empty bucket: nothing for background")
	clk.Add(600 * time.Millisecond) // 6 tokens
	h := reserve(t, g, origin.Background)
	assert.True(t, h.Allowed, "refilled past half the burst")
	h.Cancel()
	s := g.Stats()
	assert.Equal(t, [2]int64{5, 5}, s.LaneCalls)
	assert.Equal(t, [2]int64{0, 2}, s.LaneRefused)
	assert.Equal(t, int64(10), s.Calls)
	assert.Equal(t, int64(2), s.Outcomes[origin.Refused])
}

// TestBackgroundRefusedWhileForegroundHeld: a foreground call held for its
// token has put the bucket in debt, so background work is refused, with
// or without a Headroom, until the debt is paid and half the burst is
// back.
func TestBackgroundRefusedWhileForegroundHeld(t *testing.T) {
	for _, hr := range []*testHeadroom{nil, newTestHeadroom(limiter.PerSecond(10, 4), 1000)} {
		cfg := origin.Config{}
		name := "fixed"
		if hr != nil {
			cfg.Headroom, name = hr, "headroom"
		}
		t.Run(name, func(t *testing.T) {
			g, clk, _ := newLaneGuard(t, limiter.PerSecond(10, 4), cfg)
			for range 4 {
				h := reserve(t, g, origin.Foreground)
				require.True(t, h.Allowed)
				require.Zero(t, h.Wait)
			}
			held := reserve(t, g, origin.Foreground)
			require.True(t, held.Allowed)
			require.Equal(t, 100*time.Millisecond, held.Wait, "booked ahead: the bucket is in debt")
			h := reserve(t, g, origin.Background)
			require.False(t, h.Allowed, "no background token while a foreground call waits")
			assert.Equal(t, origin.ReasonBudget, h.Reason)
			if hr == nil {
				// From a debt of 1 to 3 tokens (one taken keeps half of 4):
				// 400 ms, spread over [1, 2) of it.
				assert.GreaterOrEqual(t, h.RetryAfter, 400*time.Millisecond)
			} else {
				assert.GreaterOrEqual(t, h.RetryAfter, 100*time.Millisecond, "the main key's decision: its own wait for a token")
				assert.Equal(t, int64(1), hr.got(origin.Background, origin.Refused))
			}
			clk.Add(100 * time.Millisecond) // the held call's token is due
			assert.False(t, reserve(t, g, origin.Background).Allowed, "the bucket is empty")
		})
	}
}

// TestHeadroomLimitCarried: with a Headroom, every foreground request
// carries its limit, whatever the budget's own, and follows it as it moves.
func TestHeadroomLimitCarried(t *testing.T) {
	hr := newTestHeadroom(limiter.PerSecond(100, 10), 0)
	g, clk, _ := newLaneGuard(t, limiter.PerSecond(1, 1), origin.Config{Headroom: hr, MaxWait: origin.NoWait})
	for k := range 10 {
		h := reserve(t, g, origin.Foreground)
		require.True(t, h.Allowed, "call %d within the headroom's burst of 10", k)
		h.Record(nil, 5*time.Millisecond)
	}
	h := reserve(t, g, origin.Foreground)
	require.False(t, h.Allowed)
	assert.Equal(t, 10*time.Millisecond, h.RetryAfter, "a token every 10 ms at the headroom's 100 a second")
	hr.set(limiter.PerSecond(1000, 10), 0)
	clk.Add(time.Millisecond)
	assert.True(t, reserve(t, g, origin.Foreground).Allowed, "1 ms at the new 1000 a second: a token")
	assert.Equal(t, int64(10), hr.got(origin.Foreground, origin.Success))
	assert.Equal(t, int64(1), hr.got(origin.Foreground, origin.Refused))
	assert.Equal(t, int64(50*time.Millisecond), hr.latency.Load())
}

// TestBackgroundSpare: with a Headroom, background takes from the key
// "db/background" at the spare rate (burst 100 ms of it), then a token of
// the main key without waiting; no spare refuses at once, spread.
func TestBackgroundSpare(t *testing.T) {
	hr := newTestHeadroom(limiter.PerSecond(1000, 100), 20)
	g, clk, b := newLaneGuard(t, limiter.PerSecond(1, 1), origin.Config{Headroom: hr})
	ctx := context.Background()
	for k := range 2 {
		h := reserve(t, g, origin.Background)
		require.True(t, h.Allowed, "background call %d: a burst of 100 ms at 20 a second is 2", k)
		assert.Zero(t, h.Wait)
		h.RecordOutcome(origin.Overload, 3*time.Millisecond)
	}
	h := reserve(t, g, origin.Background)
	require.False(t, h.Allowed)
	assert.Equal(t, origin.ReasonBudget, h.Reason)
	assert.Equal(t, 50*time.Millisecond, h.RetryAfter, "the background key's wait: one token at 20 a second")
	// The key is the budget's, for every node sharing it.
	d, err := b.Take(ctx, limiter.Request{Key: "db/background", N: 0, Limit: limiter.PerSecond(20, 2)})
	require.NoError(t, err)
	assert.Zero(t, d.Remaining, "the two background tokens came from db/background")
	d, err = b.Take(ctx, limiter.Request{Key: "db", N: 0, Limit: limiter.PerSecond(1000, 100)})
	require.NoError(t, err)
	assert.Equal(t, 98, d.Remaining, "and one each from db")
	clk.Add(50 * time.Millisecond)
	h = reserve(t, g, origin.Background)
	assert.True(t, h.Allowed, "a background token 50 ms later")
	h.Cancel()

	// No spare: refused at once, over [1 s, 2 s), spread.
	for _, spare := range []float64{0, -3, math.NaN(), 1e-12} {
		hr.set(limiter.PerSecond(1000, 100), spare)
		h = reserve(t, g, origin.Background)
		require.False(t, h.Allowed, "spare %v", spare)
		assert.GreaterOrEqual(t, h.RetryAfter, time.Second)
		assert.Less(t, h.RetryAfter, 2*time.Second)
	}
	// A huge spare is bounded to what a Limit can carry.
	hr.set(limiter.PerSecond(1000, 100), math.Inf(1))
	h = reserve(t, g, origin.Background)
	assert.True(t, h.Allowed, "an infinite spare is capped, not an error")
	h.Cancel()

	assert.Equal(t, int64(2), hr.got(origin.Background, origin.Overload))
	assert.Equal(t, int64(5), hr.got(origin.Background, origin.Refused))
	assert.Equal(t, int64(7), hr.total())
	s := g.Stats()
	assert.Equal(t, [2]int64{0, 2}, s.LaneCalls)
	assert.Equal(t, [2]int64{0, 5}, s.LaneRefused)
}

// TestBackgroundMainKeyRefuses: a background token of the spare is not
// enough when the main key has none: the call is refused, never held,
// with the main key's wait.
func TestBackgroundMainKeyRefuses(t *testing.T) {
	hr := newTestHeadroom(limiter.PerSecond(10, 1), 100)
	g, _, _ := newLaneGuard(t, limiter.PerSecond(10, 1), origin.Config{Headroom: hr})
	h := reserve(t, g, origin.Foreground)
	require.True(t, h.Allowed)
	h.Record(nil, 0)
	h = reserve(t, g, origin.Background)
	require.False(t, h.Allowed)
	assert.Equal(t, 100*time.Millisecond, h.RetryAfter, "the main key's own wait for its token")
	assert.Equal(t, int64(1), hr.got(origin.Background, origin.Refused))
}

// TestRefusalsReported: refusals for the budget and the concurrency cap
// are reported to the Headroom as Refused in their lane; refusals for a
// deadline are not (they say nothing of the origin).
func TestRefusalsReported(t *testing.T) {
	hr := newTestHeadroom(limiter.PerSecond(1e6, 1000), 1e6)
	g, clk, _ := newLaneGuard(t, limiter.PerSecond(1, 1), origin.Config{Headroom: hr, MaxConcurrent: 1, MinCallTime: 10 * time.Millisecond})
	ctx := context.Background()
	a := reserve(t, g, origin.Foreground)
	require.True(t, a.Allowed)
	for _, lane := range []origin.Lane{origin.Foreground, origin.Background} {
		h := reserve(t, g, lane)
		require.False(t, h.Allowed)
		assert.Equal(t, origin.ReasonConcurrency, h.Reason)
		h, err := g.Reserve(ctx, clk.Now().Add(5*time.Millisecond), lane)
		require.NoError(t, err)
		assert.Equal(t, origin.ReasonDeadline, h.Reason)
	}
	a.Record(errors.New("boom"), 7*time.Millisecond)
	assert.Equal(t, int64(1), hr.got(origin.Foreground, origin.Refused))
	assert.Equal(t, int64(1), hr.got(origin.Background, origin.Refused))
	assert.Equal(t, int64(1), hr.got(origin.Foreground, origin.Failure))
	assert.Equal(t, int64(3), hr.total(), "the deadline refusals were not reported")
	s := g.Stats()
	assert.Equal(t, int64(2), s.RefusedConcurrency)
	assert.Equal(t, int64(2), s.RefusedDeadline)
	assert.Equal(t, [2]int64{2, 2}, s.LaneRefused)
	assert.Equal(t, int64(2), s.Outcomes[origin.Refused], "only those reported")
}

// TestClassifyPanics: a classifier that panics never crashes the caller:
// the call counts as a Failure, and the panic in Stats.ClassifyPanics. A
// Refused or unknown outcome of a call that went is read as a Failure.
func TestClassifyPanics(t *testing.T) {
	hr := newTestHeadroom(limiter.PerSecond(1e6, 1000), 0)
	g, _, _ := newLaneGuard(t, limiter.PerSecond(1, 1), origin.Config{Headroom: hr,
		Classify: func(err error) origin.Outcome {
			if err != nil {
				panic("classifier bug")
			}
			return origin.Refused
		}})
	require.NotPanics(t, func() {
		err := g.Do(context.Background(), origin.Foreground, func(context.Context) error { return origin.ErrOverload })
		assert.ErrorIs(t, err, origin.ErrOverload, "the call's own error")
	})
	h := reserve(t, g, origin.Foreground)
	require.NotPanics(t, func() { h.Record(errors.New("x"), 0) })
	reserve(t, g, origin.Foreground).Record(nil, 0)        // Classify says Refused
	reserve(t, g, origin.Foreground).RecordOutcome(200, 0) // out of range
	reserve(t, g, origin.Foreground).RecordOutcome(origin.Refused, 0)
	s := g.Stats()
	assert.Equal(t, int64(2), s.ClassifyPanics)
	assert.Equal(t, int64(5), s.Outcomes[origin.Failure])
	assert.Equal(t, int64(5), s.Calls)
	assert.Zero(t, s.Outcomes[origin.Refused])
	assert.Equal(t, int64(5), hr.got(origin.Foreground, origin.Failure))
}

// TestLaneOutOfRange: a lane out of range is taken for Background, the
// lane that never takes what the foreground needs.
func TestLaneOutOfRange(t *testing.T) {
	g, _, _ := newLaneGuard(t, limiter.PerSecond(10, 1), origin.Config{})
	h := reserve(t, g, origin.Lane(7))
	assert.False(t, h.Allowed, "a burst of 1 leaves background nothing")
	assert.Equal(t, origin.ReasonBudget, h.Reason)
	h = reserve(t, g, origin.Foreground)
	assert.True(t, h.Allowed, "the token was not taken")
	h.Cancel()
	assert.Equal(t, [2]int64{0, 1}, g.Stats().LaneRefused)
	assert.Equal(t, "background", origin.Lane(7).String())
	assert.Equal(t, "background", origin.Background.String())
	assert.Equal(t, "foreground", origin.Foreground.String())
	assert.Equal(t, "refused", origin.Refused.String())
	// Do with a lane out of range: no hold, no panic.
	err := g.Do(context.Background(), 255, func(context.Context) error { return nil })
	assert.ErrorIs(t, err, origin.ErrRefused)
}

// TestLanesConcurrent: both lanes through one guard from many goroutines:
// every call and every refusal is reported once, and the counts agree.
func TestLanesConcurrent(t *testing.T) {
	hr := newTestHeadroom(limiter.PerSecond(1e5, 50), 2e4)
	b, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{Ramp: limiter.NoRamp})
	require.NoError(t, err)
	defer b.Close()
	g, err := origin.New(origin.Config{Budget: b, Name: "db", Headroom: hr, MaxConcurrent: 3, MaxWait: origin.NoWait})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for k := range 8 {
		lane := origin.Lane(k % 2)
		wg.Go(func() {
			for range 300 {
				_ = g.Do(context.Background(), lane, func(context.Context) error { return nil })
			}
		})
	}
	wg.Wait()
	s := g.Stats()
	assert.Equal(t, int64(8*300), s.Calls+s.LaneRefused[0]+s.LaneRefused[1])
	assert.Equal(t, s.Calls, s.LaneCalls[0]+s.LaneCalls[1])
	assert.Equal(t, s.Outcomes[origin.Success], hr.got(origin.Foreground, origin.Success)+hr.got(origin.Background, origin.Success))
	assert.Equal(t, s.Outcomes[origin.Refused], hr.got(origin.Foreground, origin.Refused)+hr.got(origin.Background, origin.Refused))
	assert.Equal(t, s.RefusedBudget+s.RefusedConcurrency, s.Outcomes[origin.Refused])
	assert.Equal(t, int64(8*300), hr.total())
	assert.Positive(t, s.LaneCalls[origin.Background], "background got some of the spare")
}
