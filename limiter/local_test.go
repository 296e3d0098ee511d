package limiter

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/herdcap/herdcap/internal/fakeclock"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fakeClockAt(t time.Time) *fakeclock.Clock { return fakeclock.New(t) }

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
		_, err = NewLocal(tc.l)
		assert.ErrorIs(t, err, ErrInvalidLimit)
	}
	assert.NoError(t, PerSecond(0.5, 1).Validate())
	assert.NoError(t, Every(3*time.Second, 2).Validate())
	assert.NoError(t, Limit{Rate: 3, Burst: 1}.Validate(), "zero Period means one second")
	assert.InDelta(t, 0.05, PerMinute(3, 3).PerSecond(), 1e-12)
	assert.Equal(t, 20*time.Second, PerMinute(3, 3).Interval())
	assert.Equal(t, "3/1m0s burst 3", PerMinute(3, 3).String())
}

func TestOptionsRejected(t *testing.T) {
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithMaxKeys(0), "WithMaxKeys"},
		{WithRamp(-time.Second), "WithRamp"},
		{WithClock(nil), "WithClock"},
		{WithLogger(nil), "WithLogger"},
		{WithTimeout(time.Second), "WithTimeout does not apply to NewLocal"},
		{WithFailure(FailOpen), "WithFailure does not apply"},
		{Option{}, "zero Option"},
	} {
		_, err := NewLocal(PerSecond(1, 1), tc.opt)
		require.ErrorIs(t, err, ErrInvalidOption)
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestLocalBoundedUnderUniqueKeyFlood(t *testing.T) {
	const capacity = 10_000
	lb, err := NewLocal(PerSecond(1, 5), WithMaxKeys(capacity))
	require.NoError(t, err)
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
		d, err := lb.AllowNAt(ctx, string(buf), t0, 1)
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
	lb, err := NewLocal(PerSecond(1, 2), WithMaxKeys(4))
	require.NoError(t, err)
	ctx := context.Background()
	_, _ = lb.AllowNAt(ctx, "hot", t0, 2) // drained: evicting it would forgive it
	for i := range 3 {
		_, _ = lb.AllowNAt(ctx, fmt.Sprint("idle", i), t0, 0) // full
	}
	for i := range 20 {
		d, err := lb.AllowNAt(ctx, fmt.Sprint("new", i), t0, 0) // full newcomers
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	st := lb.Stats()
	assert.Equal(t, 4, st.Keys)
	assert.Equal(t, uint64(20), st.Evictions)
	assert.Zero(t, st.LossyEvictions, "there was always a full bucket to drop")
	d, err := lb.AllowNAt(ctx, "hot", t0, 1)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the drained bucket survived")

	// With no full bucket left, the least recently used goes.
	lb2, err := NewLocal(PerSecond(1, 2), WithMaxKeys(2))
	require.NoError(t, err)
	_, _ = lb2.AllowNAt(ctx, "old", t0, 2)
	_, _ = lb2.AllowNAt(ctx, "recent", t0.Add(time.Millisecond*10), 2)
	_, _ = lb2.AllowNAt(ctx, "third", t0.Add(time.Millisecond*20), 2)
	st = lb2.Stats()
	assert.Equal(t, uint64(1), st.LossyEvictions)
	d, _ = lb2.AllowNAt(ctx, "recent", t0.Add(time.Millisecond*20), 1)
	assert.False(t, d.Allowed, "recent was kept")
	d, _ = lb2.AllowNAt(ctx, "old", t0.Add(time.Millisecond*20), 1)
	assert.True(t, d.Allowed, "old was dropped and starts afresh")
}

func TestLocalZeroAllocs(t *testing.T) {
	lb, err := NewLocal(PerSecond(1e6, 1e6))
	require.NoError(t, err)
	ctx := context.Background()
	_, _ = lb.AllowN(ctx, "user:1", 1)
	allocs := testing.AllocsPerRun(1000, func() { _, _ = lb.AllowN(ctx, "user:1", 1) })
	assert.Zero(t, allocs)
}

func BenchmarkRateAllowN(b *testing.B) {
	lim := rate.NewLimiter(rate.Limit(1e9), 1e9)
	b.ReportAllocs()
	for b.Loop() {
		lim.AllowN(time.Now(), 1)
	}
}

func BenchmarkLocalAllowN(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = lb.AllowN(ctx, "user:12345", 1)
	}
}

func BenchmarkRateAllowNParallel(b *testing.B) {
	lim := rate.NewLimiter(rate.Limit(1e9), 1e9)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lim.AllowN(time.Now(), 1)
		}
	})
}

func BenchmarkLocalAllowNParallel(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = lb.AllowN(ctx, "user:12345", 1)
		}
	})
}

func BenchmarkLocalAllowN10kKeys(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9))
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
