package retry

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

// lockedRand is a seeded source safe for concurrent use, as Backoff.Rand
// must be when a Backoff is shared.
func lockedRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := seeded(seed)
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

func TestBackoffValidate(t *testing.T) {
	cases := []struct {
		b   Backoff
		msg string
	}{
		{Backoff{Base: -time.Second, Cap: time.Second}, "Backoff.Base must be >= 0, got -1s"},
		{Backoff{Base: time.Millisecond, Cap: -time.Second}, "Backoff.Cap must be >= 0, got -1s"},
		{Backoff{Base: time.Second, Cap: time.Millisecond}, "Backoff.Cap (1ms) must be >= Backoff.Base (1s)"},
		{Backoff{Cap: time.Millisecond}, "Backoff.Cap (1ms) must be >= Backoff.Base (100ms)"},
		{Backoff{HintJitter: -0.1}, "Backoff.HintJitter must be in [0, 1] or NoJitter, got -0.1"},
		{Backoff{HintJitter: 1.5}, "Backoff.HintJitter"},
		{Backoff{HintJitter: math.NaN()}, "Backoff.HintJitter"},
		{Backoff{HintJitterMax: -time.Second}, "Backoff.HintJitterMax must be >= 0 or NoJitter, got -1s"},
		{Backoff{SlotJitter: -time.Millisecond}, "Backoff.SlotJitter must be >= 0 or NoJitter, got -1ms"},
	}
	for _, c := range cases {
		err := c.b.Validate()
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, "retry: invalid config: "+c.msg)
	}
	for _, b := range []Backoff{
		{}, {Base: time.Second, Cap: time.Second}, {Base: time.Minute}, // Cap 0: 10 s, or Base if larger
		{HintJitter: NoJitter, HintJitterMax: NoJitter, SlotJitter: NoJitter}, {HintJitter: 1, HintJitterMax: time.Hour},
	} {
		assert.NoError(t, b.Validate(), "%+v", b)
	}
}

// TestBackoffDefaults: every zero field takes its documented default.
func TestBackoffDefaults(t *testing.T) {
	var b Backoff // the zero value is usable: Rand nil is math/rand/v2's
	assert.Equal(t, 100*time.Millisecond, b.Window(0), "Base 0: 100 ms")
	assert.Equal(t, 10*time.Second, b.Window(20), "Cap 0: 10 s")
	assert.Equal(t, time.Minute, Backoff{Base: time.Minute}.Window(5), "Cap 0 below Base: Base")
	hi := time.Duration(0)
	for range 1000 {
		d := b.Delay(0)
		require.GreaterOrEqual(t, d, time.Duration(0))
		hi = max(hi, d)
	}
	assert.Less(t, hi, 100*time.Millisecond)
	assert.Positive(t, hi)
	assert.Equal(t, 0.1, b.hintFrac())
	assert.Equal(t, time.Second, b.hintMax())
	assert.Equal(t, 5*time.Millisecond, b.slotMax())
	none := Backoff{HintJitter: NoJitter, HintJitterMax: NoJitter, SlotJitter: NoJitter}
	assert.Zero(t, none.hintFrac())
	assert.Zero(t, none.hintMax())
	assert.Zero(t, none.slotMax())
}

func TestBackoffWindow(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Cap: 5 * time.Second}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		assert.Equal(t, w*time.Millisecond, b.Window(i), "attempt %d", i)
	}
	assert.Equal(t, 100*time.Millisecond, b.Window(-3), "a negative attempt counts as 0")
	assert.Equal(t, 5*time.Second, b.Window(62))
	assert.Equal(t, 5*time.Second, b.Window(math.MaxInt))
	huge := Backoff{Base: time.Nanosecond, Cap: math.MaxInt64}
	assert.Equal(t, time.Duration(1<<61), huge.Window(61))
	assert.Equal(t, time.Duration(math.MaxInt64), huge.Window(62), "no overflow")
	assert.Equal(t, time.Duration(math.MaxInt64), huge.Window(1000))
	assert.GreaterOrEqual(t, huge.Delay(1000), time.Duration(0))
}

// TestBackoffFullJitterDistribution: delays are uniform over the window:
// within bounds, mean half the window, and a chi-square test over 20 bins.
func TestBackoffFullJitterDistribution(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Cap: time.Second, Rand: seeded(1).Float64}
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
	b := Backoff{Base: 100 * time.Millisecond, Cap: 10 * time.Second, Rand: seeded(2).Float64}
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
	for _, exact := range []Backoff{
		{Base: time.Millisecond, Cap: time.Second, HintJitter: NoJitter},
		{Base: time.Millisecond, Cap: time.Second, HintJitterMax: NoJitter},
	} {
		assert.Equal(t, 1234*time.Millisecond, exact.DelayHint(0, 1234*time.Millisecond))
	}
	assert.Equal(t, time.Duration(math.MaxInt64), b.DelayHint(0, math.MaxInt64))
	assert.GreaterOrEqual(t, b.DelayHint(0, math.MaxInt64-1), time.Duration(math.MaxInt64-1))
}

// TestBackoffSlotJitterIsSmall: an exact slot gets only the slot jitter
// (5 ms by default, whatever the slot's size), uniform and never early,
// where DelayHint would add up to 10% of the hint.
func TestBackoffSlotJitterIsSmall(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Cap: 10 * time.Second, Rand: seeded(3).Float64}
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
		assert.Less(t, hi, slot+defaultSlotJitter, "slot %v", slot)
		assert.Greater(t, len(distinct), n/2, "clients told the same slot do not come back in lockstep")
		// The mean of n uniform draws over 5 ms has a standard deviation
		// of 5 ms/√(12n) ≈ 0.3% of it; 5% is over 15 of them.
		assert.InDelta(t, float64(defaultSlotJitter)/2, sum/n, 0.05*float64(defaultSlotJitter))
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

	// SlotJitter: its window, or none; no overflow at the end of time.
	wide := Backoff{Base: time.Millisecond, Cap: time.Second, SlotJitter: time.Second, Rand: seeded(4).Float64}
	hi = 0
	for range 1000 {
		hi = max(hi, wide.DelaySlot(0, time.Second)-time.Second)
	}
	assert.Greater(t, hi, 500*time.Millisecond)
	assert.Less(t, hi, time.Second)
	exact := Backoff{Base: time.Millisecond, Cap: time.Second, SlotJitter: NoJitter}
	assert.Equal(t, 1234*time.Millisecond, exact.DelaySlot(0, 1234*time.Millisecond))
	assert.Equal(t, time.Duration(math.MaxInt64), b.DelaySlot(0, math.MaxInt64))
	assert.GreaterOrEqual(t, b.DelaySlot(0, math.MaxInt64-1), time.Duration(math.MaxInt64-1))
}

func TestBackoffDeterministicAndConcurrent(t *testing.T) {
	x := Backoff{Base: time.Millisecond, Cap: time.Second, Rand: lockedRand(7)}
	y := Backoff{Base: time.Millisecond, Cap: time.Second, Rand: lockedRand(7)}
	for i := range 100 {
		require.Equal(t, x.Delay(i%12), y.Delay(i%12), "same seed, same delays")
	}
	// Shared by goroutines, with an injected source and the default one.
	def := Backoff{Base: time.Millisecond, Cap: time.Second}
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

// TestBackoffInvalidClamps: the methods of an invalid Backoff clamp its
// fields into range instead of returning negative or runaway waits.
func TestBackoffInvalidClamps(t *testing.T) {
	b := Backoff{Base: -time.Second, Cap: -time.Second, HintJitter: 7, HintJitterMax: -5, SlotJitter: -5, Rand: seeded(5).Float64}
	require.Error(t, b.Validate())
	assert.Equal(t, 100*time.Millisecond, b.Window(0))
	assert.Equal(t, 10*time.Second, b.Window(30))
	assert.Equal(t, time.Second, b.DelaySlot(0, time.Second), "a negative SlotJitter is none")
	assert.Equal(t, time.Second, b.DelayHint(0, time.Second), "a negative HintJitterMax is none")
	wide := Backoff{Base: time.Second, Cap: time.Millisecond}
	assert.Equal(t, time.Second, wide.Window(3), "a Cap below Base is Base")
	assert.Equal(t, 1.0, Backoff{HintJitter: 7}.hintFrac())
	assert.Equal(t, 0.1, Backoff{HintJitter: math.NaN()}.hintFrac())
}

func BenchmarkBackoffDelay(b *testing.B) {
	bo := Backoff{Base: 100 * time.Millisecond, Cap: 30 * time.Second}
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
	bo := Backoff{Base: 100 * time.Millisecond, Cap: 30 * time.Second, Rand: seeded(1).Float64}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = bo.Delay(i & 15)
		i++
	}
}
