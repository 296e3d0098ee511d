package limiter

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testClock is a Clock that moves only when told to. (internal/fakeclock
// imports this package, so its tests cannot use it.) Local sets no timers.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func clockAt(t time.Time) *testClock { return &testClock{now: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *testClock) AfterFunc(time.Duration, func()) Timer { panic("Local sets no timers") }

// localAt returns a Local on a test clock reading t.
func localAt(t *testing.T, at time.Time, l Limit, cfg Config) (*Local, *testClock) {
	t.Helper()
	clk := clockAt(at)
	cfg.Clock = clk
	lb, err := NewLocal(l, cfg)
	require.NoError(t, err)
	return lb, clk
}

func TestLimitValidate(t *testing.T) {
	nan, inf := 0.0, 1.0
	nan /= nan
	inf /= 0
	for _, tc := range []struct {
		l     Limit
		field string
	}{
		{Limit{Rate: 0, Burst: 1}, "Rate"},
		{Limit{Rate: -1, Burst: 1}, "Rate"},
		{Limit{Rate: nan, Burst: 1}, "Rate"},
		{Limit{Rate: inf, Burst: 1}, "Rate"},
		{Limit{Rate: 1, Burst: 0}, "Burst"},
		{Limit{Rate: 1, Burst: -3}, "Burst"},
		{Limit{Rate: 1, Burst: 1 << 41}, "Burst"},
		{Limit{Rate: 1, Period: -time.Second, Burst: 1}, "Period"},
		{Limit{Rate: 1e-12, Burst: 1}, "tokens per second"},
	} {
		err := tc.l.Validate()
		require.ErrorIs(t, err, ErrInvalidLimit, "%+v", tc.l)
		assert.ErrorContains(t, err, tc.field)
		_, err = NewLocal(tc.l, Config{})
		assert.ErrorIs(t, err, ErrInvalidLimit)
	}
	assert.NoError(t, PerSecond(0.5, 1).Validate())
	assert.NoError(t, Every(3*time.Second, 2).Validate())
	assert.NoError(t, Limit{Rate: 3, Burst: 1}.Validate(), "zero Period means one second")
	assert.InDelta(t, 0.05, PerMinute(3, 3).PerSecond(), 1e-12)
	assert.Equal(t, 20*time.Second, PerMinute(3, 3).Interval())
	assert.Equal(t, "3/1m0s burst 3", PerMinute(3, 3).String())
}

func TestConfigRejected(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxKeys: -1}, "limiter: invalid config: Config.MaxKeys must be >= 0, got -1"},
		{Config{Ramp: -time.Second}, "Config.Ramp must be >= 0 or NoRamp, got -1s"},
		{Config{Ramp: NoRamp - 1}, "Config.Ramp"},
	} {
		_, err := NewLocal(PerSecond(1, 1), tc.cfg)
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, tc.want)
	}
	for _, cfg := range []Config{{}, {Ramp: NoRamp}, {MaxKeys: 1}, {Ramp: time.Nanosecond}} {
		_, err := NewLocal(PerSecond(1, 1), cfg)
		assert.NoError(t, err, "%+v", cfg)
	}
}

func TestLocalBoundedUnderUniqueKeyFlood(t *testing.T) {
	const capacity = 10_000
	lb, _ := localAt(t, t0, PerSecond(1, 5), Config{MaxKeys: capacity})
	ctx := context.Background()
	n := 1_000_000
	if raceEnabled || testing.Short() {
		// Under -race a million inserts take ~40 s; a quarter million
		// still evicts 96% of them, which is what the test is about.
		n = 250_000
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, 0, 32)
	for i := range n {
		buf = strconv.AppendInt(append(buf[:0], "flood-"...), int64(i), 10)
		d, err := lb.AllowN(ctx, string(buf), 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := lb.Stats()
	assert.LessOrEqual(t, st.Keys, capacity)
	assert.Equal(t, uint64(n-st.Keys), st.Evictions)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	perKey := float64(grown) / float64(st.Keys)
	t.Logf("%d unique keys, %d held, heap grew %d bytes: %.0f bytes per held key", n, st.Keys, grown, perKey)
	// A held key costs a few hundred bytes; 1,000,000 unbounded keys would
	// have cost hundreds of MB. 4 MiB is a generous ceiling for 10,000.
	assert.Less(t, grown, int64(4<<20))
	runtime.KeepAlive(lb)
}

func TestLocalEvictsFullBucketsFirst(t *testing.T) {
	lb, _ := localAt(t, t0, PerSecond(1, 2), Config{MaxKeys: 4})
	ctx := context.Background()
	_, _ = lb.AllowN(ctx, "hot", 2) // drained: evicting it would forgive it
	for i := range 3 {
		_, _ = lb.AllowN(ctx, fmt.Sprint("idle", i), 0) // full
	}
	for i := range 20 {
		d, err := lb.AllowN(ctx, fmt.Sprint("new", i), 0) // full newcomers
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	st := lb.Stats()
	assert.Equal(t, 4, st.Keys)
	assert.Equal(t, uint64(20), st.Evictions)
	assert.Zero(t, st.LossyEvictions, "there was always a full bucket to drop")
	d, err := lb.AllowN(ctx, "hot", 1)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the drained bucket survived")

	// With no full bucket left, the least recently used goes.
	lb2, clk := localAt(t, t0, PerSecond(1, 2), Config{MaxKeys: 2})
	_, _ = lb2.AllowN(ctx, "old", 2)
	clk.Set(t0.Add(time.Millisecond * 10))
	_, _ = lb2.AllowN(ctx, "recent", 2)
	clk.Set(t0.Add(time.Millisecond * 20))
	_, _ = lb2.AllowN(ctx, "third", 2)
	st = lb2.Stats()
	assert.Equal(t, uint64(1), st.LossyEvictions)
	d, _ = lb2.AllowN(ctx, "recent", 1)
	assert.False(t, d.Allowed, "recent was kept")
	d, _ = lb2.AllowN(ctx, "old", 1)
	assert.True(t, d.Allowed, "old was dropped and starts afresh")
}

// TestLocalKeepsTailsFromEviction: a key whose bucket is full but whose
// denial tail lies ahead is not idle: dropping it would lose the promises
// made to the callers it refused.
func TestLocalKeepsTailsFromEviction(t *testing.T) {
	ctx := context.Background()
	lb, clk := localAt(t, t0, PerSecond(10, 1), Config{MaxKeys: 2})
	_, _ = lb.AllowN(ctx, "tail", 1)
	d, _ := lb.AllowN(ctx, "tail", 1)
	require.False(t, d.Allowed)
	_, _ = lb.AllowN(ctx, "tail", 1) // tail now 300 ms ahead
	clk.Set(t0.Add(150 * time.Millisecond))
	// "tail" is full again (1 token at 10/s), yet its tail lies ahead.
	_, _ = lb.AllowN(ctx, "b", 0)
	_, _ = lb.AllowN(ctx, "c", 0)
	st := lb.Stats()
	assert.Equal(t, uint64(1), st.Evictions)
	d, _ = lb.AllowN(ctx, "tail", 0)
	assert.True(t, d.Allowed)
	_, _ = lb.AllowN(ctx, "tail", 1)
	d, _ = lb.AllowN(ctx, "tail", 1)
	assert.False(t, d.Allowed)
	assert.Equal(t, 150*time.Millisecond, d.RetryAfter, "the tail survived: the next refusal is told after it (t0+300ms), not the natural 100 ms")
}

func TestLocalZeroAllocs(t *testing.T) {
	lb, err := NewLocal(PerSecond(1e6, 1e6), Config{})
	require.NoError(t, err)
	ctx := context.Background()
	_, _ = lb.AllowN(ctx, "user:1", 1)
	allocs := testing.AllocsPerRun(1000, func() { _, _ = lb.AllowN(ctx, "user:1", 1) })
	assert.Zero(t, allocs)
	// Take, with the budget's limit and with a limit of the request's own
	// equal to the key's last one.
	allocs = testing.AllocsPerRun(1000, func() { _, _ = lb.Take(ctx, Request{Key: "user:1", N: 1}) })
	assert.Zero(t, allocs)
	plan := PerSecond(5e5, 5e5)
	_, _ = lb.Take(ctx, Request{Key: "user:2", N: 1, Limit: plan})
	allocs = testing.AllocsPerRun(1000, func() { _, _ = lb.Take(ctx, Request{Key: "user:2", N: 1, Limit: plan}) })
	assert.Zero(t, allocs)
	// Refusals too, the denial tail included.
	tight := PerSecond(1, 1)
	_, _ = lb.Take(ctx, Request{Key: "user:3", N: 1, Limit: tight})
	allocs = testing.AllocsPerRun(1000, func() { _, _ = lb.Take(ctx, Request{Key: "user:3", N: 1, Limit: tight}) })
	assert.Zero(t, allocs)
}

func BenchmarkBareRateAllowN(b *testing.B) {
	lim := rate.NewLimiter(rate.Limit(1e9), 1e9)
	b.ReportAllocs()
	for b.Loop() {
		lim.AllowN(time.Now(), 1)
	}
}

func BenchmarkLocalAllowN(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9), Config{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = lb.AllowN(ctx, "user:12345", 1)
	}
}

func BenchmarkBareRateAllowNParallel(b *testing.B) {
	lim := rate.NewLimiter(rate.Limit(1e9), 1e9)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lim.AllowN(time.Now(), 1)
		}
	})
}

func BenchmarkLocalAllowNParallel(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9), Config{})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = lb.AllowN(ctx, "user:12345", 1)
		}
	})
}

func BenchmarkLocalAllowN10kKeys(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9), Config{})
	ctx := context.Background()
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = lb.AllowN(ctx, keys[i%len(keys)], 1)
		i++
	}
}
