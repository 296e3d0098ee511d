package clientcore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

// manualClock hands each AfterFunc to the test, which fires it (or not).
type manualClock struct {
	timers chan *manualTimer
}

func newManualClock() *manualClock { return &manualClock{timers: make(chan *manualTimer, 1)} }

func (c *manualClock) Now() time.Time { return time.Time{} }

func (c *manualClock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	t := &manualTimer{d: d, f: f}
	c.timers <- t
	return t
}

type manualTimer struct {
	d time.Duration
	f func()

	mu      sync.Mutex
	stopped bool
}

func (t *manualTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (t *manualTimer) isStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

// TestSleepThroughTheClock: a wait is one AfterFunc of the injected clock,
// ending when its timer fires or, earlier, when the context is done (the
// timer is then stopped); a wait of 0 or a done context never reaches the
// clock.
func TestSleepThroughTheClock(t *testing.T) {
	clk := newManualClock()
	c, err := New(Config{Clock: clk})
	require.NoError(t, err)

	t.Run("the timer fires", func(t *testing.T) {
		done := make(chan error)
		go func() { done <- c.Sleep(t.Context(), 3*time.Second) }()
		tm := <-clk.timers
		assert.Equal(t, 3*time.Second, tm.d)
		select {
		case err := <-done:
			t.Fatalf("returned %v before the timer fired", err)
		case <-time.After(20 * time.Millisecond):
		}
		tm.f()
		assert.NoError(t, <-done)
		assert.False(t, tm.isStopped())
	})
	t.Run("the context ends first", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Sleep(ctx, time.Hour) }()
		tm := <-clk.timers
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		assert.True(t, tm.isStopped(), "the timer is stopped")
		tm.f() // a timer that fires anyway harms nothing
	})
	t.Run("no wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		assert.NoError(t, c.Sleep(ctx, 0))
		assert.NoError(t, c.Sleep(ctx, -time.Second))
		cancel()
		assert.ErrorIs(t, c.Sleep(ctx, time.Hour), context.Canceled, "a done context does not wait")
		assert.ErrorIs(t, c.Sleep(ctx, 0), context.Canceled)
		assert.Empty(t, clk.timers, "the clock was not asked")
	})
}

// TestSleepSystemClock: without a Clock, the wait is real, and a deadline
// ends it.
func TestSleepSystemClock(t *testing.T) {
	c, err := New(Config{})
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, c.Sleep(t.Context(), 20*time.Millisecond))
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
	assert.WithinDuration(t, time.Now(), c.Now(), time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	assert.ErrorIs(t, c.Sleep(ctx, time.Hour), context.DeadlineExceeded)
	// The wait was an hour; 10 s of slack for a loaded machine still
	// proves the deadline ended it.
	assert.Less(t, time.Since(start), 10*time.Second)
}
