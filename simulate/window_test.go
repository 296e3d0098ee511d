package simulate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPeakWindow: the peak window is the least whole number of seconds in
// which a budget's burst is at most 5% of its allowance, so that the
// bucket's bound (rate·W + burst) ÷ (rate·W) is at most 1.05.
func TestPeakWindow(t *testing.T) {
	for _, c := range []struct {
		rate        float64
		burst, want int
	}{
		{2000, 100, 1}, // the origin budget at 1,000,000 clients
		{2, 1, 10},     // ... at 1,000: one call is 2.5% of 20 s
		{1, 1, 20},     // a budget of 1/s
		{1020, 42, 1},  // the incident's push budget at 1,000,000
		{1020, 52, 2},  // a burst just over 5% of a second
		{0.001, 1, 60}, // capped at the run's length
		{19.99, 1, 2},  // under 20/s a one-call burst is more than 5%
		{20, 1, 1},     // from 20/s on it is not
		{1e9, 1, 1},    // never below 1
		{0, 1, 1},      // no rate: 1
		{30.000000001, 1, 1},
	} {
		got := peakWindow(c.rate, c.burst, 60)
		assert.Equal(t, c.want, got, "rate %v burst %d", c.rate, c.burst)
		if got < 60 && c.rate > 0 {
			w := float64(got)
			assert.LessOrEqual(t, (c.rate*w+float64(c.burst))/(c.rate*w), 1.05+1e-9, "rate %v burst %d", c.rate, c.burst)
		}
	}
}

// TestBurstsExact: the bursts are rounded to 1e-9 first, so that a product
// that lands a hair above a whole number does not gain a token (0.1 × 3 is
// 0.30000000000000004 in float64: 10 s of it is 3, not 4).
func TestBurstsExact(t *testing.T) {
	assert.Equal(t, 3, intervalBurst(0.1*3, 10*time.Second))
	assert.Equal(t, 51, intervalBurst(1.02*1000, 50*time.Millisecond))
	assert.Equal(t, 52, pushLimit(1.02*1000, 50*time.Millisecond).Burst, "one interval's worth and one more")
	assert.Equal(t, 42, pushLimit(1.02*1000, 40*time.Millisecond).Burst)
	assert.Equal(t, 1, intervalBurst(0.001, time.Second))
	assert.Equal(t, 100, originLimit(2000).Burst)
	assert.Equal(t, 1, originLimit(2).Burst)
	assert.Equal(t, 40, admissionLimit(1000).Burst)
	assert.Equal(t, 1, admissionLimit(1).Burst)
}

// TestWindowPeak: the highest mean over w consecutive seconds.
func TestWindowPeak(t *testing.T) {
	x := []float64{0, 2, 0, 1, 1, 1, 0}
	assert.Equal(t, 2.0, windowPeak(x, 1))
	assert.Equal(t, 1.0, windowPeak(x, 2))
	assert.InDelta(t, 1.0, windowPeak(x, 3), 1e-12)
	assert.InDelta(t, 5.0/7, windowPeak(x, 7), 1e-12)
	assert.InDelta(t, 5.0/7, windowPeak(x, 100), 1e-12, "a window longer than the run is the run")
	assert.Equal(t, 2.0, windowPeak(x, 0))
	assert.Zero(t, windowPeak(nil, 3))
}

// TestWindowsAtFullSize: at the built-ins' own size (1,000,000 clients)
// every peak window the scenario sets is one second, as before the windows
// existed (a reconnect storm's run adds its origin queue's share, measured
// in the run); at 1,000 clients they are what makes a one-client quantum
// at most 5%.
func TestWindowsAtFullSize(t *testing.T) {
	scs, err := BuiltIn()
	require.NoError(t, err)
	for _, sc := range scs {
		secs := int(sc.Duration.D() / time.Second)
		p := sc.Protection
		assert.Equal(t, 1, peakWindow(p.OriginBudget, originLimit(p.OriginBudget).Burst, secs), sc.Name)
		assert.Equal(t, 1, changeWindow(sc, secs, 0), sc.Name)
		small, err := sc.Scale(1000)
		require.NoError(t, err)
		if cacheTrigger(sc) {
			// No client changes (the change window is 1 at every size),
			// and their budgets are other than 2,000 at 1,000,000.
			assert.Equal(t, 1, changeWindow(small, secs, 0), sc.Name)
			assert.Greater(t, peakWindow(small.Protection.OriginBudget, originLimit(small.Protection.OriginBudget).Burst, secs), 1, sc.Name)
			continue
		}
		if sc.Protection.Headroom == nil {
			// Paced by headroom, the origin budget is a cap (2 × the
			// capacity in misconfigured-budget) and the peak is judged
			// against the capacity, over its own window.
			assert.Equal(t, 10, peakWindow(small.Protection.OriginBudget, originLimit(small.Protection.OriginBudget).Burst, secs), sc.Name)
		}
		assert.Greater(t, changeWindow(small, secs, 0), 1, sc.Name)
	}
}

// TestChangeWindowQueue: a reconnect storm's change window also covers the
// sessions that waited in the origin's queue, rate × the longest delay;
// the other kinds' changes do not wait for the origin.
func TestChangeWindowQueue(t *testing.T) {
	sc := builtin(t, "reconnect-storm", 20_000) // admission 20/s, burst 1
	assert.Equal(t, 2, changeWindow(sc, 1800, 0), "(1 + 1) ÷ (5% × 20/s)")
	assert.Equal(t, 12, changeWindow(sc, 1800, 0.5), "(1 + 1 + 10) ÷ (5% × 20/s)")
	assert.Equal(t, 1800, changeWindow(sc, 1800, 1e6), "capped at the run")
	ri := builtin(t, "rogue-invalidate", 20_000)
	assert.Equal(t, changeWindow(ri, 1800, 0), changeWindow(ri, 1800, 0.5))
}
