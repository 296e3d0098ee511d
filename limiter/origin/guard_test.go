package origin_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// newGuard returns a guard over a Local budget of rate per second, burst
// 1, on a virtual clock.
func newGuard(t *testing.T, rate float64, cfg origin.Config) (*origin.Guard, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(time.Unix(1_000_000, 0))
	b, err := limiter.NewLocal(limiter.PerSecond(rate, 1), limiter.Config{Clock: clk})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	cfg.Budget, cfg.Name, cfg.Clock = b, "db", clk
	g, err := origin.New(cfg)
	require.NoError(t, err)
	return g, clk
}

// TestReserveHoldsThenRefuses: calls within the budget go at once, the
// next are held at the budget's spacing up to MaxWait, and past it are
// refused with when to come back.
func TestReserveHoldsThenRefuses(t *testing.T) {
	g, _ := newGuard(t, 10, origin.Config{MaxWait: 250 * time.Millisecond})
	ctx := context.Background()
	var waits []time.Duration
	for range 3 {
		h, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
		require.NoError(t, err)
		waits = append(waits, h.Wait)
		h.Record(nil, time.Millisecond)
	}
	assert.Equal(t, []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}, waits, "spaced at the rate")
	h, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
	require.NoError(t, err)
	assert.False(t, h.Allowed)
	err = h.Err()
	var re *origin.RefusedError
	require.ErrorAs(t, err, &re)
	assert.ErrorIs(t, err, origin.ErrRefused)
	assert.Equal(t, origin.ReasonBudget, re.Reason)
	assert.Equal(t, "origin: db refused (budget); retry after "+re.RetryAfter.String(), re.Error())
	assert.Equal(t, "db", re.Origin)
	assert.Positive(t, re.RetryAfter)
	s := g.Stats()
	assert.Equal(t, int64(3), s.Calls)
	assert.Equal(t, int64(2), s.Held)
	assert.Equal(t, 300*time.Millisecond, s.HeldTime)
	assert.Equal(t, int64(1), s.RefusedBudget)
}

// TestHoldCountsAgainstTheDeadline: a caller with little time left is held
// only while it keeps MinCallTime for the call, else refused; the same
// wait is granted to a caller with time to spare.
func TestHoldCountsAgainstTheDeadline(t *testing.T) {
	g, clk := newGuard(t, 10, origin.Config{MinCallTime: 20 * time.Millisecond})
	ctx := context.Background()
	h, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
	require.NoError(t, err)
	h.Record(nil, 0)
	// The next token is 100 ms away: 110 ms left keeps only 90 ms.
	h, err = g.Reserve(ctx, clk.Now().Add(110*time.Millisecond), origin.Foreground)
	require.NoError(t, err)
	require.ErrorIs(t, h.Err(), origin.ErrRefused, "held past its deadline's margin: refused, not held")
	assert.Equal(t, origin.ReasonBudget, h.Reason)
	// Less than MinCallTime left, or a deadline passed: refused at once,
	// for the deadline, without taking a token.
	for _, left := range []time.Duration{15 * time.Millisecond, -5 * time.Millisecond} {
		h, err = g.Reserve(ctx, clk.Now().Add(left), origin.Foreground)
		require.NoError(t, err)
		assert.False(t, h.Allowed, "%v left", left)
		assert.Equal(t, origin.ReasonDeadline, h.Reason)
	}
	assert.Equal(t, int64(2), g.Stats().RefusedDeadline)
	// 120 ms left keeps 100 ms: held.
	h, err = g.Reserve(ctx, clk.Now().Add(120*time.Millisecond), origin.Foreground)
	require.NoError(t, err)
	assert.True(t, h.Allowed)
	assert.NoError(t, h.Err())
	assert.Equal(t, 100*time.Millisecond, h.Wait)
	h.Cancel()
}

// TestReserveAllocatesNothing: the event-loop form allocates nothing, in
// either lane, allowed or refused, with a Headroom or not: a healthy
// origin's decision (a token there, no wait) and a busy one's.
func TestReserveAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		rate  float64
		burst int
		hr    bool
	}{
		{"healthy", 1e12, 1_000_000, false},
		{"healthy headroom", 1e12, 1_000_000, true},
		{"busy", 10, 1, false},
		{"busy headroom", 10, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := origin.Config{MaxWait: time.Millisecond, MaxConcurrent: 100}
			l := limiter.PerSecond(c.rate, c.burst)
			if c.hr {
				cfg.Headroom = newTestHeadroom(l, c.rate/10)
			}
			g, _, _ := newLaneGuard(t, l, cfg)
			for _, lane := range []origin.Lane{origin.Foreground, origin.Background} {
				h, err := g.Reserve(ctx, time.Time{}, lane) // the keys' buckets exist
				require.NoError(t, err)
				h.Cancel()
				allocs := testing.AllocsPerRun(100, func() {
					h, _ := g.Reserve(ctx, time.Time{}, lane)
					h.RecordOutcome(origin.Success, time.Millisecond)
				})
				assert.Zero(t, allocs, "lane %v", lane)
			}
			s := g.Stats()
			if c.rate > 100 {
				assert.Positive(t, s.LaneCalls[origin.Foreground])
				assert.Zero(t, s.LaneRefused[origin.Foreground], "healthy: every foreground call went")
			} else {
				assert.Positive(t, s.LaneRefused[origin.Foreground], "busy: refusals were measured too")
			}
		})
	}
}

// TestDoHoldsOnTheClock: Do sleeps on the injected clock for its hold, then
// calls, and records the outcome.
func TestDoHoldsOnTheClock(t *testing.T) {
	g, clk := newGuard(t, 10, origin.Config{})
	ctx := context.Background()
	require.NoError(t, g.Do(ctx, origin.Foreground, func(context.Context) error { return nil }))
	called := make(chan time.Time, 1)
	done := make(chan error, 1)
	go func() {
		done <- g.Do(ctx, origin.Foreground, func(context.Context) error {
			called <- clk.Now()
			return origin.ErrOverload
		})
	}()
	// Move the clock until the held call's timer is set and fires.
	start := clk.Now()
	deadline := time.Now().Add(10 * time.Second) // a bound on a hung test, not a timing assertion
	for {
		select {
		case at := <-called:
			assert.Equal(t, start.Add(100*time.Millisecond), at, "held until its token was due")
			require.ErrorIs(t, <-done, origin.ErrOverload)
			s := g.Stats()
			assert.Equal(t, int64(2), s.Calls)
			assert.Equal(t, int64(1), s.Outcomes[origin.Success])
			assert.Equal(t, int64(1), s.Outcomes[origin.Overload])
			return
		default:
		}
		require.True(t, time.Now().Before(deadline), "the held call never ran")
		if clk.Pending() > 0 {
			clk.Add(100 * time.Millisecond)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDoContextEndsDuringHold: a caller that gives up while held is not
// called, gets its context's error, and frees its concurrency slot.
func TestDoContextEndsDuringHold(t *testing.T) {
	g, clk := newGuard(t, 10, origin.Config{MaxConcurrent: 1})
	h, err := g.Reserve(context.Background(), time.Time{}, origin.Foreground)
	require.NoError(t, err)
	h.Record(nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- g.Do(ctx, origin.Foreground, func(context.Context) error {
			t.Error("called after its caller gave up")
			return nil
		})
	}()
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	clk.Add(time.Second)
	// The slot is free again.
	h, err = g.Reserve(context.Background(), time.Time{}, origin.Foreground)
	require.NoError(t, err)
	require.True(t, h.Allowed, "the cancelled hold freed its slot")
	h.Cancel()
}

// TestConcurrencyCap: beyond MaxConcurrent calls in flight, a call is
// refused at once, with the recent mean latency as its wait.
func TestConcurrencyCap(t *testing.T) {
	g, _ := newGuard(t, 1e6, origin.Config{MaxConcurrent: 2})
	ctx := context.Background()
	a, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
	require.NoError(t, err)
	b, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
	require.NoError(t, err)
	h, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
	require.NoError(t, err)
	var re *origin.RefusedError
	require.ErrorAs(t, h.Err(), &re)
	assert.Equal(t, origin.ReasonConcurrency, re.Reason)
	assert.GreaterOrEqual(t, re.RetryAfter, 100*time.Millisecond, "no call finished yet: the default, spread over [1, 2) of it")
	assert.Less(t, re.RetryAfter, 200*time.Millisecond)
	a.Record(nil, 40*time.Millisecond)
	c, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
	require.NoError(t, err, "a finished call frees its slot")
	h, err = g.Reserve(ctx, time.Time{}, origin.Foreground)
	require.NoError(t, err)
	require.ErrorAs(t, h.Err(), &re)
	assert.GreaterOrEqual(t, re.RetryAfter, 40*time.Millisecond, "the mean latency of recent calls, spread")
	assert.Less(t, re.RetryAfter, 80*time.Millisecond)
	h.Cancel() // a refused Hold's Cancel does nothing
	b.Cancel()
	c.Cancel()
	assert.Equal(t, int64(2), g.Stats().RefusedConcurrency)
}

// TestConcurrentDo: many goroutines through one guard never exceed the
// cap and every call is counted once.
func TestConcurrentDo(t *testing.T) {
	b, err := limiter.NewLocal(limiter.PerSecond(1e9, 1000), limiter.Config{})
	require.NoError(t, err)
	defer b.Close()
	g, err := origin.New(origin.Config{Budget: b, Name: "db", MaxConcurrent: 4})
	require.NoError(t, err)
	var mu sync.Mutex
	inFlight, most := 0, 0
	var wg sync.WaitGroup
	var ok, refused int
	for range 16 {
		wg.Go(func() {
			for range 200 {
				err := g.Do(context.Background(), origin.Foreground, func(context.Context) error {
					mu.Lock()
					inFlight++
					most = max(most, inFlight)
					mu.Unlock()
					time.Sleep(10 * time.Microsecond)
					mu.Lock()
					inFlight--
					mu.Unlock()
					return nil
				})
				mu.Lock()
				if err == nil {
					ok++
				} else if errors.Is(err, origin.ErrRefused) {
					refused++
				} else {
					t.Error(err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, most, 4)
	s := g.Stats()
	assert.Equal(t, int64(ok), s.Calls)
	assert.Equal(t, int64(refused), s.RefusedConcurrency)
	assert.Equal(t, 16*200, ok+refused)
}

func TestClassify(t *testing.T) {
	assert.Equal(t, origin.Success, origin.DefaultClassify(nil))
	assert.Equal(t, origin.Overload, origin.DefaultClassify(errors.Join(errors.New("503"), origin.ErrOverload)))
	assert.Equal(t, origin.Timeout, origin.DefaultClassify(context.DeadlineExceeded))
	assert.Equal(t, origin.Canceled, origin.DefaultClassify(context.Canceled))
	assert.Equal(t, origin.Failure, origin.DefaultClassify(errors.New("boom")))
	for o, name := range map[origin.Outcome]string{origin.Success: "success", origin.Overload: "overload", origin.Timeout: "timeout", origin.Failure: "failure", origin.Canceled: "canceled", 9: "unknown"} {
		assert.Equal(t, name, o.String())
	}
}

func TestConfigErrors(t *testing.T) {
	b, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{})
	require.NoError(t, err)
	defer b.Close()
	for _, c := range []struct {
		cfg  origin.Config
		want string
	}{
		{origin.Config{Name: "db"}, "origin.Config.Budget is nil"},
		{origin.Config{Budget: b}, "origin.Config.Name is empty"},
		{origin.Config{Budget: b, Name: "db", MaxWait: -2}, "origin.Config.MaxWait must be >= 0 or NoWait, got -2ns"},
		{origin.Config{Budget: b, Name: "db", MinCallTime: -1}, "origin.Config.MinCallTime must be >= 0, got -1ns"},
		{origin.Config{Budget: b, Name: "db", MaxConcurrent: -1}, "origin.Config.MaxConcurrent must be >= 0, got -1"},
	} {
		_, err := origin.New(c.cfg)
		require.ErrorIs(t, err, limiter.ErrInvalidConfig)
		assert.Contains(t, err.Error(), c.want)
	}
}

// TestBudgetErrors: a budget that cannot decide is the caller's to handle,
// and frees the concurrency slot.
func TestBudgetErrors(t *testing.T) {
	b, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{})
	require.NoError(t, err)
	g, err := origin.New(origin.Config{Budget: b, Name: "db", MaxConcurrent: 1})
	require.NoError(t, err)
	b.Close()
	for range 2 {
		err = g.Do(context.Background(), origin.Foreground, func(context.Context) error { return nil })
		require.ErrorIs(t, err, limiter.ErrClosed, "the slot was freed: the second sees the budget too")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, g.Do(ctx, origin.Foreground, func(context.Context) error { return nil }), context.Canceled)
}

// TestDoPanicFreesItsSlot: a call that panics is recorded as a failure and
// frees its concurrency slot; the panic goes on to the caller.
func TestDoPanicFreesItsSlot(t *testing.T) {
	g, clk := newGuard(t, 1e6, origin.Config{MaxConcurrent: 1})
	assert.Panics(t, func() {
		_ = g.Do(context.Background(), origin.Foreground, func(context.Context) error { panic("boom") })
	})
	assert.Equal(t, int64(1), g.Stats().Outcomes[origin.Failure])
	clk.Add(time.Second) // a token for the next call, without a hold
	assert.NoError(t, g.Do(context.Background(), origin.Foreground, func(context.Context) error { return nil }), "the slot was freed")
}

// TestNoWait: with NoWait a call goes at once or is refused, never held.
func TestNoWait(t *testing.T) {
	g, _ := newGuard(t, 10, origin.Config{MaxWait: origin.NoWait})
	h, err := g.Reserve(context.Background(), time.Time{}, origin.Foreground)
	require.NoError(t, err)
	assert.True(t, h.Allowed)
	assert.Zero(t, h.Wait)
	h.Cancel()
	h, err = g.Reserve(context.Background(), time.Time{}, origin.Foreground)
	require.NoError(t, err)
	assert.False(t, h.Allowed)
	assert.Equal(t, origin.ReasonBudget, h.Reason)
	assert.NoError(t, origin.Hold{}.Err(), "the zero Hold is not a refusal")
}

// TestConcurrencyRefusalsSpread: callers refused together are told
// different waits, spread over [1, 2) of the recent latency.
func TestConcurrencyRefusalsSpread(t *testing.T) {
	g, _ := newGuard(t, 1e6, origin.Config{MaxConcurrent: 1})
	h, err := g.Reserve(context.Background(), time.Time{}, origin.Foreground)
	require.NoError(t, err)
	seen := map[time.Duration]bool{}
	lo, hi := time.Hour, time.Duration(0)
	for range 100 {
		r, err := g.Reserve(context.Background(), time.Time{}, origin.Foreground)
		require.NoError(t, err)
		require.False(t, r.Allowed)
		seen[r.RetryAfter] = true
		lo, hi = min(lo, r.RetryAfter), max(hi, r.RetryAfter)
	}
	h.Cancel()
	assert.Len(t, seen, 100, "no two alike")
	assert.GreaterOrEqual(t, lo, 100*time.Millisecond)
	assert.Less(t, hi, 200*time.Millisecond)
	assert.Greater(t, hi-lo, 90*time.Millisecond, "spread over the whole window")
}
