package limiter

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 42)) }

func TestBackoffConfig(t *testing.T) {
	cases := []struct {
		base, cap time.Duration
		opts      []BackoffOption
		msg       string
	}{
		{0, time.Second, nil, "base must be > 0"},
		{-time.Second, time.Second, nil, "base must be > 0"},
		{time.Second, time.Millisecond, nil, "cap (1ms) must be >= base (1s)"},
		{time.Millisecond, time.Second, []BackoffOption{WithBackoffRand(nil)}, "WithBackoffRand: rand is nil"},
		{time.Millisecond, time.Second, []BackoffOption{WithHintJitter(-0.1, time.Second)}, "WithHintJitter: frac"},
		{time.Millisecond, time.Second, []BackoffOption{WithHintJitter(1.5, time.Second)}, "WithHintJitter: frac"},
		{time.Millisecond, time.Second, []BackoffOption{WithHintJitter(math.NaN(), time.Second)}, "WithHintJitter: frac"},
		{time.Millisecond, time.Second, []BackoffOption{WithHintJitter(0.1, -time.Second)}, "WithHintJitter: max"},
		{time.Millisecond, time.Second, []BackoffOption{WithSlotJitter(-time.Millisecond)}, "WithSlotJitter: max must be >= 0"},
		{time.Millisecond, time.Second, []BackoffOption{{}}, "zero BackoffOption"},
	}
	for _, c := range cases {
		b, err := NewBackoff(c.base, c.cap, c.opts...)
		assert.Nil(t, b)
		assert.ErrorIs(t, err, ErrInvalidOption)
		assert.ErrorContains(t, err, c.msg)
	}
}

func TestBackoffWindow(t *testing.T) {
	b, err := NewBackoff(100*time.Millisecond, 5*time.Second)
	require.NoError(t, err)
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		assert.Equal(t, w*time.Millisecond, b.Window(i), "attempt %d", i)
	}
	assert.Equal(t, 100*time.Millisecond, b.Window(-3), "a negative attempt counts as 0")
	assert.Equal(t, 5*time.Second, b.Window(62))
	assert.Equal(t, 5*time.Second, b.Window(math.MaxInt))
	huge, err := NewBackoff(time.Nanosecond, math.MaxInt64)
	require.NoError(t, err)
	assert.Equal(t, time.Duration(1<<61), huge.Window(61))
	assert.Equal(t, time.Duration(math.MaxInt64), huge.Window(62), "no overflow")
	assert.Equal(t, time.Duration(math.MaxInt64), huge.Window(1000))
	assert.GreaterOrEqual(t, huge.Delay(1000), time.Duration(0))
}

// TestBackoffFullJitterDistribution: delays are uniform over the window:
// within bounds, mean half the window, and a chi-square test over 20 bins.
func TestBackoffFullJitterDistribution(t *testing.T) {
	b, err := NewBackoff(100*time.Millisecond, time.Second, WithBackoffRand(seeded(1)))
	require.NoError(t, err)
	for _, attempt := range []int{0, 3, 10} {
		w := b.Window(attempt)
		const n = 100_000
		var sum float64
		bins := make([]int, 20)
		lo, hi := time.Duration(math.MaxInt64), time.Duration(-1)
		for range n {
			d := b.Delay(attempt)
			lo, hi = min(lo, d), max(hi, d)
			sum += float64(d)
			bins[min(19, max(0, int(float64(d)/float64(w)*20)))]++
		}
		assert.GreaterOrEqual(t, lo, time.Duration(0))
		assert.Less(t, hi, w)
		mean := sum / n
		// The mean of n uniform draws has a standard deviation of
		// w/√(12n) ≈ 0.09% of w; 1% is over 10 of them.
		assert.InDelta(t, float64(w)/2, mean, 0.01*float64(w), "attempt %d", attempt)
		chi := 0.0
		for _, c := range bins {
			d := float64(c) - n/20.0
			chi += d * d / (n / 20.0)
		}
		// Chi-square critical value for 19 degrees of freedom at p=0.001.
		assert.Less(t, chi, 43.82, "attempt %d: uniform over the window", attempt)
	}
}

func TestBackoffHonoursHints(t *testing.T) {
	b, err := NewBackoff(100*time.Millisecond, 10*time.Second, WithBackoffRand(seeded(2)))
	require.NoError(t, err)
	for _, c := range []struct {
		hint, jitter time.Duration // jitter: the default window, 10% capped at 1 s
	}{
		{2 * time.Second, 200 * time.Millisecond},
		{time.Minute, time.Second},
		{3 * time.Millisecond, 300 * time.Microsecond},
	} {
		distinct := map[time.Duration]bool{}
		var sum float64
		const n = 10_000
		lo, hi := time.Duration(math.MaxInt64), time.Duration(-1)
		for i := range n {
			d := b.DelayHint(i%8, c.hint)
			lo, hi = min(lo, d), max(hi, d)
			distinct[d] = true
			sum += float64(d - c.hint)
		}
		assert.GreaterOrEqual(t, lo, c.hint, "never sooner than the hint")
		assert.Less(t, hi, c.hint+c.jitter)
		assert.Greater(t, len(distinct), n/2, "clients told the same instant do not come back in lockstep")
		assert.InDelta(t, float64(c.jitter)/2, sum/n, 0.05*float64(c.jitter))
	}
	// No hint: full jitter.
	hi := time.Duration(0)
	for range 1000 {
		hi = max(hi, b.DelayHint(2, 0), b.DelayHint(2, -time.Second))
	}
	assert.Less(t, hi, 400*time.Millisecond)
	// The hint wins even when it is shorter than the backoff window.
	d := b.DelayHint(20, 50*time.Millisecond)
	assert.Less(t, d, 55*time.Millisecond)
	// No hint jitter: exactly the hint. A hint at the end of time does not
	// overflow.
	exact, err := NewBackoff(time.Millisecond, time.Second, WithHintJitter(0, 0))
	require.NoError(t, err)
	assert.Equal(t, 1234*time.Millisecond, exact.DelayHint(0, 1234*time.Millisecond))
	assert.Equal(t, time.Duration(math.MaxInt64), b.DelayHint(0, math.MaxInt64))
	assert.GreaterOrEqual(t, b.DelayHint(0, math.MaxInt64-1), time.Duration(math.MaxInt64-1))
}

// TestBackoffSlotJitterIsSmall: an exact slot gets only the slot jitter
// (DefaultSlotJitter, whatever the slot's size), uniform and never early,
// where DelayHint would add up to 10% of the hint.
func TestBackoffSlotJitterIsSmall(t *testing.T) {
	b, err := NewBackoff(100*time.Millisecond, 10*time.Second, WithBackoffRand(seeded(3)))
	require.NoError(t, err)
	for _, slot := range []time.Duration{time.Millisecond, 2 * time.Second, 19 * time.Second, time.Hour} {
		const n = 10_000
		var sum float64
		distinct := map[time.Duration]bool{}
		lo, hi := time.Duration(math.MaxInt64), time.Duration(-1)
		for i := range n {
			d := b.DelaySlot(i%8, slot)
			lo, hi = min(lo, d), max(hi, d)
			distinct[d] = true
			sum += float64(d - slot)
		}
		assert.GreaterOrEqual(t, lo, slot, "never sooner than the slot")
		assert.Less(t, hi, slot+DefaultSlotJitter, "slot %v", slot)
		assert.Greater(t, len(distinct), n/2, "clients told the same slot do not come back in lockstep")
		// The mean of n uniform draws over 5 ms has a standard deviation
		// of 5 ms/√(12n) ≈ 0.3% of it; 5% is over 15 of them.
		assert.InDelta(t, float64(DefaultSlotJitter)/2, sum/n, 0.05*float64(DefaultSlotJitter))
	}
	// Where a hint of 19 s gets up to a second.
	hi := time.Duration(0)
	for range 1000 {
		hi = max(hi, b.DelayHint(0, 19*time.Second)-19*time.Second)
	}
	assert.Greater(t, hi, 500*time.Millisecond)

	// No slot: full jitter.
	hi = 0
	for range 1000 {
		hi = max(hi, b.DelaySlot(2, 0), b.DelaySlot(2, -time.Second))
	}
	assert.Less(t, hi, 400*time.Millisecond)
	assert.Positive(t, hi)

	// WithSlotJitter: its window, or none; no overflow at the end of time.
	wide, err := NewBackoff(time.Millisecond, time.Second, WithSlotJitter(time.Second), WithBackoffRand(seeded(4)))
	require.NoError(t, err)
	hi = 0
	for range 1000 {
		hi = max(hi, wide.DelaySlot(0, time.Second)-time.Second)
	}
	assert.Greater(t, hi, 500*time.Millisecond)
	assert.Less(t, hi, time.Second)
	exact, err := NewBackoff(time.Millisecond, time.Second, WithSlotJitter(0))
	require.NoError(t, err)
	assert.Equal(t, 1234*time.Millisecond, exact.DelaySlot(0, 1234*time.Millisecond))
	assert.Equal(t, time.Duration(math.MaxInt64), b.DelaySlot(0, math.MaxInt64))
	assert.GreaterOrEqual(t, b.DelaySlot(0, math.MaxInt64-1), time.Duration(math.MaxInt64-1))
}

func TestBackoffDeterministicAndConcurrent(t *testing.T) {
	x, _ := NewBackoff(time.Millisecond, time.Second, WithBackoffRand(seeded(7)))
	y, _ := NewBackoff(time.Millisecond, time.Second, WithBackoffRand(seeded(7)))
	for i := range 100 {
		require.Equal(t, x.Delay(i%12), y.Delay(i%12), "same seed, same delays")
	}
	// Shared by goroutines, with an injected source and the default one.
	def, _ := NewBackoff(time.Millisecond, time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				_ = x.Delay(i % 12)
				_ = def.DelayHint(i%12, time.Millisecond)
				_ = x.DelaySlot(i%12, time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkBackoffDelay(b *testing.B) {
	bo, _ := NewBackoff(100*time.Millisecond, 30*time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_ = bo.Delay(i & 15)
			i++
		}
	})
}

func BenchmarkBackoffDelaySeeded(b *testing.B) {
	bo, _ := NewBackoff(100*time.Millisecond, 30*time.Second, WithBackoffRand(seeded(1)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = bo.Delay(i & 15)
		i++
	}
}
