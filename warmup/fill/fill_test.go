package fill

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// wait bounds every wait for a goroutine in these tests: generous, as CI
// runs them under -race on 2 loaded cores; nothing here is timed by it.
const wait = 10 * time.Second

func TestOneFillPerKey(t *testing.T) {
	const callers = 100
	cache := newMemCache[string]()
	g := newGroupT[string](t, cache, Config{Clock: fakeclock.New(t0)})
	var fills atomic.Int32
	gate := make(chan struct{})
	fill := func(ctx context.Context, key string) (string, time.Duration, error) {
		fills.Add(1)
		<-gate
		return "v:" + key, time.Minute, nil
	}
	var wg sync.WaitGroup
	results := make(chan Result[string], callers)
	for range callers {
		wg.Go(func() {
			r, err := g.Do(context.Background(), "k", fill)
			assert.NoError(t, err)
			results <- r
		})
	}
	// Every caller but the first joins the fill, which waits for them.
	require.Eventually(t, func() bool { return g.Stats().Joined == callers-1 }, wait, time.Millisecond)
	close(gate)
	wg.Wait()
	close(results)
	for r := range results {
		assert.Equal(t, Result[string]{Value: "v:k", Expires: t0.Add(time.Minute), Source: FromFill}, r)
	}
	assert.EqualValues(t, 1, fills.Load())
	s := g.Stats()
	assert.EqualValues(t, 1, s.Fills)
	assert.EqualValues(t, callers-1, s.Joined)
	e, ok := cache.Get(context.Background(), "k")
	require.True(t, ok)
	assert.Equal(t, "v:k", e.Value)

	r, err := g.Do(context.Background(), "k", fill)
	require.NoError(t, err)
	assert.Equal(t, FromCache, r.Source)
	assert.EqualValues(t, 1, fills.Load(), "a fresh entry is served without a fill")
}

func TestWaiterCancelledDoesNotCancelFill(t *testing.T) {
	cache := newMemCache[string]()
	g := newGroupT[string](t, cache, Config{Clock: fakeclock.New(t0)})
	type ctxKey struct{}
	gate := make(chan struct{})
	var fillErr, fillVal atomic.Value
	fill := func(ctx context.Context, key string) (string, time.Duration, error) {
		<-gate
		fillVal.Store(ctx.Value(ctxKey{}))
		fillErr.Store(fmt.Sprint(ctx.Err()))
		return "v", time.Minute, nil
	}
	ctxA, cancelA := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "a"))
	errA := make(chan error, 1)
	go func() {
		_, err := g.Do(ctxA, "k", fill)
		errA <- err
	}()
	require.Eventually(t, func() bool { return g.Stats().Fills == 1 }, wait, time.Millisecond)
	resB := make(chan Result[string], 1)
	go func() {
		r, err := g.Do(context.Background(), "k", fill)
		assert.NoError(t, err)
		resB <- r
	}()
	require.Eventually(t, func() bool { return g.Stats().Joined == 1 }, wait, time.Millisecond)

	cancelA() // A started the fill; its cancellation ends only its wait
	select {
	case err := <-errA:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(wait):
		t.Fatal("a cancelled waiter did not return")
	}
	close(gate)
	r := <-resB
	assert.Equal(t, "v", r.Value)
	assert.Equal(t, FromFill, r.Source)
	assert.Equal(t, "<nil>", fillErr.Load(), "the fill's context outlived its starter's")
	assert.Equal(t, "a", fillVal.Load(), "the fill's context keeps the starter's values")
	assert.EqualValues(t, 1, g.Stats().Abandoned)
	_, ok := cache.Get(context.Background(), "k")
	assert.True(t, ok, "the fill still filled the cache")
}

func TestPanickingFill(t *testing.T) {
	g := newGroupT[int](t, newMemCache[int](), Config{Clock: fakeclock.New(t0)})
	gate := make(chan struct{})
	panicky := func(ctx context.Context, key string) (int, time.Duration, error) {
		<-gate
		panic("boom")
	}
	const callers = 5
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := g.Do(context.Background(), "hot", panicky)
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return g.Stats().Joined == callers-1 }, wait, time.Millisecond)
	close(gate)
	for range callers {
		err := <-errs
		var pe *PanicError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "hot", pe.Key)
		assert.Equal(t, "boom", pe.Value)
		assert.NotEmpty(t, pe.Stack)
		assert.Contains(t, err.Error(), `"hot"`)
	}
	s := g.Stats()
	assert.EqualValues(t, 1, s.Panics)
	assert.EqualValues(t, 1, s.Failed)
	r, err := g.Do(context.Background(), "hot", func(context.Context, string) (int, time.Duration, error) {
		return 7, time.Second, nil
	})
	require.NoError(t, err, "the Group goes on after a panic")
	assert.Equal(t, 7, r.Value)
}

func TestStaleWhileRevalidate(t *testing.T) {
	clock := fakeclock.New(t0)
	cache := newMemCache[string]()
	cache.sets = make(chan Entry[string], 1)
	g := newGroupT[string](t, cache, Config{Clock: clock, StaleWhileRevalidate: 10 * time.Second})
	cache.put("k", Entry[string]{Value: "old", Expires: t0.Add(-time.Second)})
	gate := make(chan struct{})
	var fills atomic.Int32
	fill := func(ctx context.Context, key string) (string, time.Duration, error) {
		fills.Add(1)
		<-gate
		return "new", time.Minute, nil
	}
	for range 50 {
		r, err := g.Do(context.Background(), "k", fill)
		require.NoError(t, err)
		assert.Equal(t, Result[string]{Value: "old", Expires: t0.Add(-time.Second), Source: Stale}, r)
	}
	close(gate)
	e := <-cache.sets
	assert.Equal(t, "new", e.Value)
	g.wg.Wait() // the refresh's goroutine has ended
	assert.EqualValues(t, 1, fills.Load(), "one refresh for 50 stale calls")
	s := g.Stats()
	assert.EqualValues(t, 50, s.Stale)
	assert.EqualValues(t, 1, s.Refreshes)

	r, err := g.Do(context.Background(), "k", fill)
	require.NoError(t, err)
	assert.Equal(t, Result[string]{Value: "new", Expires: t0.Add(time.Minute), Source: FromCache}, r)

	// Past the window, a stale entry is a miss: the call waits for a fill.
	clock.Add(time.Minute + 10*time.Second)
	r, err = g.Do(context.Background(), "k", fill)
	require.NoError(t, err)
	<-cache.sets
	assert.Equal(t, FromFill, r.Source)
	assert.EqualValues(t, 2, fills.Load())
}

func TestStaleIfError(t *testing.T) {
	clock := fakeclock.New(t0)
	cache := newMemCache[string]()
	g := newGroupT[string](t, cache, Config{Clock: clock, StaleIfError: 5 * time.Second})
	cache.put("k", Entry[string]{Value: "old", Expires: t0.Add(-time.Second)})
	down := errors.New("origin down")
	failing := func(context.Context, string) (string, time.Duration, error) { return "", 0, down }

	r, err := g.Do(context.Background(), "k", failing)
	require.NoError(t, err)
	assert.Equal(t, Result[string]{Value: "old", Expires: t0.Add(-time.Second), Source: StaleOnError, FillErr: down}, r)
	assert.EqualValues(t, 1, g.Stats().StaleOnError)

	clock.Add(4 * time.Second) // 5 s after expiry: the window has closed
	r, err = g.Do(context.Background(), "k", failing)
	assert.ErrorIs(t, err, down)
	assert.Zero(t, r)
	assert.EqualValues(t, 2, g.Stats().Failed)

	// Without an entry there is nothing stale to serve.
	_, err = g.Do(context.Background(), "other", failing)
	assert.ErrorIs(t, err, down)
}

func TestEarlyRefresh(t *testing.T) {
	// At Δ = 1 s before expiry, with δ = 1 s and β = 2, a call refreshes
	// iff −δ·β·ln(r) ≥ Δ, i.e. r ≤ exp(−Δ/(δβ)) = exp(−0.5) ≈ 0.6065. The
	// injected r runs over a grid of (0, 1], so the number of refreshes is
	// that probability times the grid, to within one.
	const n = 1000
	var i atomic.Int64
	grid := func() float64 { return float64(i.Add(1)) / n }
	clock := fakeclock.New(t0)
	cache := newMemCache[int]()
	g := newGroupT[int](t, cache, Config{Clock: clock, Beta: 2, Rand: grid})
	entry := Entry[int]{Value: 1, Expires: t0.Add(time.Second), FillTime: time.Second}
	fills := make(chan struct{})
	fill := func(context.Context, string) (int, time.Duration, error) {
		fills <- struct{}{}
		return 2, time.Minute, nil
	}
	p := math.Exp(-0.5)
	want := 0
	for k := 1; k <= n; k++ {
		cache.put("k", entry) // the refresh's Set is undone, to keep Δ
		r, err := g.Do(context.Background(), "k", fill)
		require.NoError(t, err)
		require.Equal(t, FromCache, r.Source)
		if float64(k)/n <= p {
			want++
			require.EqualValues(t, want, g.Stats().Early, "r = %v refreshes", float64(k)/n)
			<-fills
			g.wg.Wait()
		} else {
			require.EqualValues(t, want, g.Stats().Early, "r = %v does not refresh", float64(k)/n)
		}
	}
	assert.InDelta(t, p*n, want, 1)

	// Early refresh needs the fill's duration, and Beta.
	cache.put("k", Entry[int]{Value: 1, Expires: t0.Add(time.Millisecond)})
	i.Store(0)
	_, err := g.Do(context.Background(), "k", fill)
	require.NoError(t, err)
	assert.EqualValues(t, want, g.Stats().Early, "no FillTime, no early refresh")
}

func TestTooManyFills(t *testing.T) {
	clock := fakeclock.New(t0)
	cache := newMemCache[string]()
	g := newGroupT[string](t, cache, Config{Clock: clock, MaxKeys: 2, StaleIfError: time.Minute})
	gate := make(chan struct{})
	blocked := func(context.Context, string) (string, time.Duration, error) {
		<-gate
		return "v", time.Minute, nil
	}
	var wg sync.WaitGroup
	for _, k := range []string{"a", "b"} {
		wg.Go(func() {
			_, err := g.Do(context.Background(), k, blocked)
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return g.Stats().Fills == 2 }, wait, time.Millisecond)
	_, err := g.Do(context.Background(), "c", blocked)
	assert.ErrorIs(t, err, ErrTooManyFills)
	cache.put("d", Entry[string]{Value: "old", Expires: t0.Add(-time.Second)})
	r, err := g.Do(context.Background(), "d", blocked)
	require.NoError(t, err)
	assert.Equal(t, StaleOnError, r.Source)
	assert.ErrorIs(t, r.FillErr, ErrTooManyFills)
	assert.EqualValues(t, 2, g.Stats().Rejected)
	close(gate)
	wg.Wait()
	_, err = g.Do(context.Background(), "c", blocked)
	assert.NoError(t, err, "room again once the fills are done")
}

func TestFillTimeoutAndBadTTL(t *testing.T) {
	cache := newMemCache[string]()
	g := newGroupT[string](t, cache, Config{FillTimeout: 20 * time.Millisecond})
	_, err := g.Do(context.Background(), "slow", func(ctx context.Context, _ string) (string, time.Duration, error) {
		<-ctx.Done()
		return "", 0, ctx.Err()
	})
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	for _, ttl := range []time.Duration{0, -time.Second} {
		_, err = g.Do(context.Background(), "k", func(context.Context, string) (string, time.Duration, error) {
			return "v", ttl, nil
		})
		assert.ErrorIs(t, err, ErrInvalidTTL)
		assert.Contains(t, err.Error(), `"k"`)
		_, ok := cache.Get(context.Background(), "k")
		assert.False(t, ok, "nothing cached")
	}
	_, err = g.Do(context.Background(), "k", nil)
	assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = g.Do(ctx, "k", func(context.Context, string) (string, time.Duration, error) { return "v", time.Second, nil })
	assert.ErrorIs(t, err, context.Canceled)
}

func TestClose(t *testing.T) {
	g, err := New[string](newMemCache[string](), Config{})
	require.NoError(t, err)
	started := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		_, err := g.Do(context.Background(), "k", func(ctx context.Context, _ string) (string, time.Duration, error) {
			close(started)
			<-ctx.Done() // Close ends the fill's context
			return "", 0, ctx.Err()
		})
		errs <- err
	}()
	<-started
	require.NoError(t, g.Close())
	assert.ErrorIs(t, <-errs, context.Canceled)
	_, err = g.Do(context.Background(), "k", func(context.Context, string) (string, time.Duration, error) { return "v", time.Second, nil })
	assert.ErrorIs(t, err, limiter.ErrClosed)
	require.NoError(t, g.Close(), "idempotent")
}

func TestBadConfig(t *testing.T) {
	cache := newMemCache[int]()
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{FillTimeout: -1}, "fill.Config.FillTimeout"},
		{Config{StaleWhileRevalidate: -1}, "fill.Config.StaleWhileRevalidate"},
		{Config{StaleIfError: -time.Second}, "fill.Config.StaleIfError"},
		{Config{Beta: -1}, "fill.Config.Beta"},
		{Config{Beta: math.NaN()}, "fill.Config.Beta"},
		{Config{Beta: math.Inf(1)}, "fill.Config.Beta"},
		{Config{MaxKeys: -1}, "fill.Config.MaxKeys"},
	} {
		_, err := New[int](cache, tc.cfg)
		assert.ErrorIs(t, err, limiter.ErrInvalidConfig, tc.field)
		assert.ErrorContains(t, err, tc.field)
	}
	_, err := New[int](nil, Config{})
	assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
	assert.ErrorContains(t, err, "cache is nil")
}
