package invalidate

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// vclock is a virtual clock with After, so Run can be driven in virtual
// time: Add moves it and fires the waiters that are due.
type vclock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []vwaiter
}

type vwaiter struct {
	at time.Time
	ch chan time.Time
}

func newVClock(t time.Time) *vclock { return &vclock{now: t} }

func (c *vclock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *vclock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, vwaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Add moves the clock forward by d and returns the new time.
func (c *vclock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
	return c.now
}

// Set moves the clock to t (forward only; it fires due waiters).
func (c *vclock) Set(t time.Time) { c.Add(t.Sub(c.Now())) }

// AfterFunc makes vclock a limiter.Clock. Nothing under test sets a timer
// through it (Run waits on After), so its timers never fire.
func (c *vclock) AfterFunc(time.Duration, func()) limiter.Timer { return stoppedTimer{} }

type stoppedTimer struct{}

func (stoppedTimer) Stop() bool { return true }

// Waiters returns how many After calls are pending.
func (c *vclock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

type atomicBool struct{ v atomic.Bool }

func (b *atomicBool) Load() bool   { return b.v.Load() }
func (b *atomicBool) Store(v bool) { b.v.Store(v) }
