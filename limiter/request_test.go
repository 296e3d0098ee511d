package limiter

import (
	"context"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/ramp"
)

func TestRequestValidate(t *testing.T) {
	for _, tc := range []struct {
		r    Request
		err  error
		want string
	}{
		{Request{}, ErrInvalidRequest, "Request.Key is empty"},
		{Request{Key: "k", N: -1}, ErrInvalidRequest, "Request.N must be >= 0, got -1"},
		{Request{Key: "k", Wait: -time.Second}, ErrInvalidRequest, "Request.Wait must be >= 0"},
		{Request{Key: "k", N: 1, UpTo: true, Wait: time.Second}, ErrInvalidRequest, "Request.UpTo cannot be combined with Request.Wait"},
		{Request{Key: "k", N: 1, Limit: Limit{Rate: 1}}, ErrInvalidLimit, "Request.Limit.Burst must be >= 1, got 0"},
		{Request{Key: "k", N: 1, Limit: Limit{Rate: -1, Burst: 1}}, ErrInvalidLimit, "Request.Limit.Rate must be > 0"},
	} {
		err := tc.r.Validate()
		require.ErrorIs(t, err, tc.err, "%+v", tc.r)
		assert.ErrorContains(t, err, tc.want)
		lb, _ := localAt(t, t0, PerSecond(1, 1), Config{})
		_, err = lb.Take(context.Background(), tc.r)
		assert.ErrorIs(t, err, tc.err, "Take validates: %+v", tc.r)
	}
	assert.NoError(t, Request{Key: "k"}.Validate())
	assert.NoError(t, Request{Key: "k", N: 1000, UpTo: true, Limit: PerSecond(1, 1)}.Validate(), "the burst is the budget's to check")
}

// TestLocalRequestLimits: each key refills at the limit its requests carry,
// independently of the budget's own, which keys without one keep.
func TestLocalRequestLimits(t *testing.T) {
	ctx := context.Background()
	lb, clk := localAt(t, t0, PerSecond(1, 1), Config{})
	free, paid := PerSecond(2, 2), PerSecond(100, 10)
	take := func(key string, l Limit, n int) Decision {
		t.Helper()
		d, err := lb.Take(ctx, Request{Key: key, N: n, Limit: l})
		require.NoError(t, err)
		return d
	}
	for i := range 10 {
		d := take("paid", paid, 1)
		assert.True(t, d.Allowed, i)
		assert.Equal(t, paid, d.Limit, "a steady carried limit is reported as given")
		assert.Equal(t, 9-i, d.Remaining)
	}
	assert.False(t, take("paid", paid, 1).Allowed)
	assert.True(t, take("free", free, 2).Allowed)
	d := take("free", free, 1)
	assert.False(t, d.Allowed)
	assert.Equal(t, 500*time.Millisecond, d.RetryAfter, "one token at 2/s")
	d = take("own", Limit{}, 1)
	assert.True(t, d.Allowed)
	assert.Equal(t, PerSecond(1, 1), d.Limit, "the zero Limit is the budget's own")
	assert.False(t, take("own", Limit{}, 1).Allowed)
	clk.Set(t0.Add(100 * time.Millisecond))
	assert.Equal(t, 10, take("paid", paid, 0).Remaining, "100 ms at 100/s: the 10 taken are back")
	_, err := lb.Take(ctx, Request{Key: "paid", N: 11, Limit: paid})
	assert.ErrorIs(t, err, ErrInvalidRequest, "beyond the carried burst")
	assert.ErrorContains(t, err, "burst of 10")
}

// TestLocalRequestLimitRamps: a key whose carried limit changes ramps over
// Config.Ramp, from the limit in force; an idle (full) key and a key seen
// for the first time take their limit at once; NoRamp applies changes at
// once. (The conformance suite in package fleet holds Strict and Leased to
// the same.)
func TestLocalRequestLimitRamps(t *testing.T) {
	ctx := context.Background()
	lb, clk := localAt(t, t0, PerSecond(1, 1), Config{Ramp: 10 * time.Second})
	lo, hi := PerSecond(10, 10), PerSecond(110, 110)
	take := func(key string, l Limit, n int) Decision {
		t.Helper()
		d, err := lb.Take(ctx, Request{Key: key, N: n, Limit: l})
		require.NoError(t, err)
		return d
	}
	// First seen: at once, full.
	d := take("k", hi, 0)
	assert.Equal(t, hi, d.Limit)
	assert.Equal(t, 110, d.Remaining)
	// Drained at lo, then hi: a ramp from lo.
	d = take("drained", lo, 10)
	require.True(t, d.Allowed)
	d = take("drained", hi, 0)
	assert.Equal(t, lo, d.Limit, "nothing moves at the start of the ramp")
	clk.Set(t0.Add(5 * time.Second))
	d = take("drained", hi, 0)
	assert.InDelta(t, 60, d.Limit.PerSecond(), 1e-9, "halfway: halfway")
	assert.Equal(t, 60, d.Limit.Burst)
	clk.Set(t0.Add(10 * time.Second))
	d = take("drained", hi, 0)
	assert.Equal(t, hi, d.Limit, "the ramp ends at the new limit")
	// Idle (full) at lo, then hi: at once.
	d = take("idle", lo, 1)
	require.True(t, d.Allowed)
	clk.Set(t0.Add(20 * time.Second)) // refilled long ago
	d = take("idle", hi, 0)
	assert.Equal(t, hi, d.Limit, "an idle key is a new key")
	// The same limit written another way is no change.
	d = take("drained", Limit{Rate: 110 * 60, Period: time.Minute, Burst: 110}, 0)
	assert.Equal(t, Limit{Rate: 110 * 60, Period: time.Minute, Burst: 110}, d.Limit)

	now, _ := localAt(t, t0, PerSecond(1, 1), Config{Ramp: NoRamp})
	_, err := now.Take(ctx, Request{Key: "k", N: 10, Limit: lo})
	require.NoError(t, err)
	d, err = now.Take(ctx, Request{Key: "k", N: 0, Limit: hi})
	require.NoError(t, err)
	assert.Equal(t, hi, d.Limit, "NoRamp: at once")
}

// TestLocalRequestLimitsConcurrent: requests carrying different limits, and
// none, on one key from many goroutines; the race detector checks the
// lock-free read of the carried limit, and every decision reports a limit
// in force somewhere between the ones carried.
func TestLocalRequestLimitsConcurrent(t *testing.T) {
	lb, err := NewLocal(PerSecond(50, 50), Config{Ramp: 50 * time.Millisecond})
	require.NoError(t, err)
	limits := []Limit{{}, PerSecond(10, 10), PerSecond(100, 100), {Rate: 6000, Period: time.Minute, Burst: 100}}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				l := limits[(w+i/100)%len(limits)]
				d, err := lb.Take(context.Background(), Request{Key: "hot", N: 1, Limit: l})
				if !assert.NoError(t, err) {
					return
				}
				ps := d.Limit.PerSecond()
				assert.True(t, ps >= 10-1e-9 && ps <= 100+1e-9, "limit %v", d.Limit)
			}
		}()
	}
	wg.Wait()
}

// TestLocalDenialTail: callers refused together are told successive times,
// one per token interval, so that they come back at the refill rate; past
// the horizon, refusals are spread over it. Taken at their word, the
// returns admit no more than the bucket refills.
func TestLocalDenialTail(t *testing.T) {
	ctx := context.Background()
	const rate = 10 // tokens per second, burst 5: the horizon is 1 min
	lb, clk := localAt(t, t0, PerSecond(rate, 5), Config{})
	d, err := lb.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	var told []time.Duration
	for range 1000 {
		d, err := lb.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.False(t, d.Allowed)
		told = append(told, d.RetryAfter)
	}
	// The first 599 (a horizon of refills, less the first interval) are
	// told 100 ms, 200 ms, ..., 59.9 s: the tail is then a horizon ahead.
	for i := range 599 {
		require.Equal(t, time.Duration(i+1)*100*time.Millisecond, told[i], "refusal %d", i)
	}
	// The rest are spread over the horizon, never the same instant twice
	// in a row, and never sooner than their own wait.
	seen := map[time.Duration]bool{}
	for i := 599; i < 1000; i++ {
		require.GreaterOrEqual(t, told[i], 100*time.Millisecond)
		require.LessOrEqual(t, told[i], time.Minute)
		require.NotEqual(t, told[i-1], told[i])
		seen[told[i]] = true
	}
	assert.Greater(t, len(seen), 390, "401 refusals past the horizon, spread")
	// Spread evenly: every tenth of the horizon gets its share (40 ± 15).
	var deciles [10]int
	for _, x := range told[599:] {
		deciles[min(9, int(x*10/time.Minute))]++
	}
	for i, n := range deciles {
		assert.InDelta(t, 40, n, 15, "decile %d: %v", i, deciles)
	}
	// A later refusal queues behind the tail; one past it starts afresh.
	clk.Set(t0.Add(30 * time.Second))
	d, _ = lb.AllowN(ctx, "k", 0)
	require.Equal(t, 5, d.Remaining)
	_, _ = lb.AllowN(ctx, "k", 5)
	d, _ = lb.AllowN(ctx, "k", 1)
	assert.Equal(t, 30*time.Second, d.RetryAfter, "the tail is capped a horizon from the last refusal at t0")
	clk.Set(t0.Add(2 * time.Minute))
	_, _ = lb.AllowN(ctx, "k", 5)
	d, _ = lb.AllowN(ctx, "k", 1)
	assert.Equal(t, 100*time.Millisecond, d.RetryAfter, "the tail lies in the past: the natural wait")
	// Reservations queue by debt, not by the tail.
	d, err = lb.Take(ctx, Request{Key: "r", N: 5, Wait: time.Second})
	require.NoError(t, err)
	d, err = lb.Take(ctx, Request{Key: "r", N: 1, Wait: time.Second})
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	assert.Equal(t, 100*time.Millisecond, d.RetryAfter)
}

// TestLocalDenialTailReturnsAreFlat: a thousand callers refused in the same
// instant, each coming back exactly when told (and again if refused),
// arrive at most at the bucket's rate: in any 100 ms window after the
// refusal, at most 1.1 × (rate × 0.1 s) + burst retries.
func TestLocalDenialTailReturnsAreFlat(t *testing.T) {
	ctx := context.Background()
	const (
		callers = 1000
		rate    = 100.0
		burst   = 10
	)
	lb, clk := localAt(t, t0, PerSecond(rate, burst), Config{})
	type ret struct {
		at     time.Duration
		caller int
	}
	var queue []ret
	for i := range callers {
		d, err := lb.AllowN(ctx, "api", 1)
		require.NoError(t, err)
		if !d.Allowed {
			queue = append(queue, ret{d.RetryAfter, i})
		}
	}
	var arrivals []time.Duration
	for len(queue) > 0 {
		// Next arrival in time order.
		j := 0
		for i := range queue {
			if queue[i].at < queue[j].at {
				j = i
			}
		}
		r := queue[j]
		queue = append(queue[:j], queue[j+1:]...)
		clk.Set(t0.Add(r.at))
		arrivals = append(arrivals, r.at)
		d, err := lb.AllowN(ctx, "api", 1)
		require.NoError(t, err)
		if !d.Allowed {
			queue = append(queue, ret{r.at + d.RetryAfter, r.caller})
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
	t.Logf("%d retries; worst 100 ms window: %d (bound %d)", len(arrivals), worst, bound)
	assert.LessOrEqual(t, worst, bound)
}

func BenchmarkLocalTake(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9), Config{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = lb.Take(ctx, Request{Key: "user:12345", N: 1})
	}
}

// BenchmarkLocalTakeLimit: a request carrying its own limit, the same as
// the key's last one: the hot path of per-plan limits. Compare with
// BenchmarkLocalAllowN (the target: at most ~50 ns more, no allocation).
func BenchmarkLocalTakeLimit(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1, 1), Config{})
	ctx := context.Background()
	plan := PerSecond(1e9, 1e9)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = lb.Take(ctx, Request{Key: "user:12345", N: 1, Limit: plan})
	}
}

func BenchmarkLocalTakeLimitParallel(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1, 1), Config{})
	ctx := context.Background()
	plan := PerSecond(1e9, 1e9)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = lb.Take(ctx, Request{Key: "user:12345", N: 1, Limit: plan})
		}
	})
}

// BenchmarkLocalTakeLimit10kKeys: per-plan limits over many keys, two
// plans.
func BenchmarkLocalTakeLimit10kKeys(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1, 1), Config{})
	ctx := context.Background()
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	plans := [2]Limit{PerSecond(1e9, 1e9), PerSecond(2e9, 1e9)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := i % len(keys)
		_, _ = lb.Take(ctx, Request{Key: keys[k], N: 1, Limit: plans[k&1]})
		i++
	}
}

// BenchmarkLocalRefused: the refusal path, denial tail included.
func BenchmarkLocalRefused(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e-6, 1), Config{})
	ctx := context.Background()
	_, _ = lb.AllowN(ctx, "k", 1)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = lb.AllowN(ctx, "k", 1)
	}
}

func TestNoRampIsTheRampPackagesNone(t *testing.T) {
	assert.Equal(t, ramp.None, NoRamp)
	w, ok := ramp.Window(NoRamp)
	assert.True(t, ok)
	assert.Zero(t, w)
	w, _ = ramp.Window(0)
	assert.Equal(t, 10*time.Second, w, "the default ramp")
}

// TestWaitFastPath: a request with Wait whose tokens are there now is
// decided on the fast path exactly as the general path decides it (the
// first take of a key goes the general way, the next the fast way, with
// a limit carried or not); one whose tokens are not there is booked by the
// general path, and trying the fast path first moves no denial tail.
func TestWaitFastPath(t *testing.T) {
	ctx := context.Background()
	for _, carried := range []Limit{{}, PerSecond(10, 3)} {
		lb, _ := localAt(t, t0, PerSecond(10, 3), Config{})
		var got []Decision
		for range 3 {
			d, err := lb.Take(ctx, Request{Key: "k", N: 1, Wait: time.Second, Limit: carried})
			require.NoError(t, err)
			got = append(got, d)
		}
		for i, d := range got {
			assert.Equal(t, Decision{Allowed: true, Taken: 1, Remaining: 2 - i, ResetAfter: time.Duration(i+1) * 100 * time.Millisecond,
				Limit: PerSecond(10, 3), Via: ViaLocal}, d, "take %d", i)
		}
		// Empty: booked ahead by the general path.
		d, err := lb.Take(ctx, Request{Key: "k", N: 1, Wait: time.Second, Limit: carried})
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.Equal(t, 100*time.Millisecond, d.RetryAfter)
		// Beyond Wait, refused many times: the tail does not move, so a
		// refusal without Wait is told its own wait (the debt and its
		// token), not pushed back by those refusals.
		for range 5 {
			d, err = lb.Take(ctx, Request{Key: "k", N: 1, Wait: time.Millisecond, Limit: carried})
			require.NoError(t, err)
			require.False(t, d.Allowed)
		}
		d, err = lb.Take(ctx, Request{Key: "k", N: 1, Limit: carried})
		require.NoError(t, err)
		assert.False(t, d.Allowed)
		assert.Equal(t, 200*time.Millisecond, d.RetryAfter)
		lb.Close()
	}
}
