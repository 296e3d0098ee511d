package headroom

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter/origin"
)

// TestSpareGain checks the spare's gain (see step): background work that
// runs while the limit is not in use is offered 3 % more an interval, up
// to 4 × the spare; no background work resets it; refused background
// calls while the limit is in use shrink it again, never below 1.
func TestSpareGain(t *testing.T) {
	clk := fakeclock.New(t0)
	c, err := New(Config{Origins: map[string]Bounds{"db": {Floor: 10, Ceiling: 10_000, Initial: 1000}}, Clock: clk})
	require.NoError(t, err)
	defer c.Close()
	o, err := c.Origin("db")
	require.NoError(t, err)
	// interval records fg and bg successes of 5 ms, and bgRefused
	// refused background calls, over one interval, and returns the gain
	// it published: Spare ÷ (limit − foreground).
	interval := func(fg, bg, bgRefused int) float64 {
		t.Helper()
		for range fg {
			o.Record(origin.Foreground, 5*time.Millisecond, origin.Success)
		}
		for range bg {
			o.Record(origin.Background, 5*time.Millisecond, origin.Success)
		}
		for range bgRefused {
			o.Record(origin.Background, 0, origin.Refused)
		}
		clk.Add(time.Second)
		return o.Spare() / (o.Limit().Rate - float64(fg))
	}

	// 300 calls/s of a limit of 1000: not in use, and the limit holds.
	for k := 1; k <= 10; k++ {
		g := interval(200, 100, 0)
		assert.InDelta(t, math.Pow(1.03, float64(k)), g, 1e-9, "interval %d", k)
	}
	assert.Equal(t, 1000.0, o.Limit().Rate, "demand-limited: the limit holds")
	for range 60 {
		interval(200, 100, 0)
	}
	assert.InDelta(t, 4, interval(200, 100, 0), 1e-9, "the gain is at most 4")
	// No background work: the spare is the limit less the foreground.
	assert.InDelta(t, 1, interval(200, 0, 0), 1e-9)
	assert.Equal(t, 800.0, o.Spare())

	// Grown again, then refused background calls while the limit is in
	// use (offered 1100 of 1000): 3 % less an interval, down to 1.
	for range 5 {
		interval(200, 100, 0)
	}
	for k := 1; k <= 8; k++ {
		g := interval(200, 700, 200)
		assert.InDelta(t, math.Max(1, math.Pow(1.03, float64(5-k))), g, 1e-9, "interval %d", k)
	}
}
