package logthrottle

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestThrottleOnePerInterval(t *testing.T) {
	var th Throttle
	n, ok := th.AllowAt(t0)
	assert.True(t, ok, "the first record goes through")
	assert.Zero(t, n)
	for i := range 5 {
		_, ok = th.AllowAt(t0.Add(time.Duration(i) * 100 * time.Millisecond))
		assert.False(t, ok, "within the interval")
	}
	n, ok = th.AllowAt(t0.Add(Interval))
	assert.True(t, ok, "one interval later")
	assert.Equal(t, uint64(5), n, "carrying the count held back")
	n, ok = th.AllowAt(t0.Add(10 * Interval))
	assert.True(t, ok)
	assert.Zero(t, n, "the count starts again")
	_, ok = th.AllowAt(t0.Add(10*Interval + Interval - 1))
	assert.False(t, ok)
}

// TestThrottleConcurrent: goroutines racing at one instant let exactly one
// record through, and the others are all counted.
func TestThrottleConcurrent(t *testing.T) {
	var (
		th      Throttle
		allowed atomic.Int32
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, ok := th.AllowAt(t0); ok {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), allowed.Load())
	n, ok := th.AllowAt(t0.Add(Interval))
	assert.True(t, ok)
	assert.Equal(t, uint64(799), n)
}

func TestThrottleWallClock(t *testing.T) {
	var th Throttle
	_, ok := th.Allow()
	assert.True(t, ok)
	// A second record within the interval: the two calls would have to be
	// a whole second apart for this to fail.
	_, ok = th.Allow()
	assert.False(t, ok)
}
