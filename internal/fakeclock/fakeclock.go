// Package fakeclock provides a manually advanced limiter.Clock for tests.
package fakeclock

import (
	"slices"
	"sync"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Clock is a clock that moves only when told to: a virtual clock as
// limiter.Clock describes one. Its timers (AfterFunc) fire when Set or Add
// moves the clock to or past their time: in time order (ties in the order
// they were set), each on the goroutine that moved the clock, before the
// move returns, with the clock reading the timer's time while it runs, so
// that a test sees their effects as soon as the move returns (and must not
// hold, while it moves the clock, a lock that a timer takes). A timer set
// for a time already reached fires at the next move (Add(0) will do).
// Moving the clock back fires nothing. No timer's f runs while the clock's
// own lock is held, so f may set timers, stop them and read the clock.
//
// It is safe for concurrent use; its zero value reads the zero time.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
	seq    uint64
}

type timer struct {
	c   *Clock
	at  time.Time
	seq uint64
	f   func()
}

// New returns a clock reading t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc calls f once the clock has been moved d past now. See Clock.
func (c *Clock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &timer{c: c, at: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer, reporting false when it has fired or was
// stopped already.
func (t *timer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return true
}

// Pending returns the number of timers set and not yet fired or stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Set moves the clock to t (backwards too, to test clocks that step back),
// firing the timers due by then.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	forward := !t.Before(c.now)
	if !forward {
		c.now = t
	}
	c.mu.Unlock()
	if forward {
		c.advanceTo(t)
	}
}

// Add moves the clock forward by d, firing the timers due by then, and
// returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	to := c.now.Add(d)
	c.mu.Unlock()
	c.advanceTo(to)
	return to
}

// advanceTo fires, one by one, the timers due at or before to, then sets
// the clock to to. A timer set by a firing one fires too if it is due.
func (c *Clock) advanceTo(to time.Time) {
	for {
		c.mu.Lock()
		next := -1
		for i, t := range c.timers {
			if t.at.After(to) {
				continue
			}
			if next < 0 || t.at.Before(c.timers[next].at) || (t.at.Equal(c.timers[next].at) && t.seq < c.timers[next].seq) {
				next = i
			}
		}
		if next < 0 {
			if to.After(c.now) {
				c.now = to
			}
			c.mu.Unlock()
			return
		}
		t := c.timers[next]
		c.timers = slices.Delete(c.timers, next, next+1)
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
	}
}
