package simulate

import (
	"sync/atomic"
	"time"
)

// epoch is virtual time zero: a fixed instant, so that every run hands the
// components the same times (the Redis scripts see them as µs since the
// Unix epoch).
var epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// vclock is the virtual clock the real components are given (their
// WithClock options). The simulator moves it; components may read it from
// their own goroutines, hence the atomic. An atomic store is a full memory
// barrier on amd64, which costs a run with a million clients seconds when
// made on every event, so the clock is published only once it has been
// handed to a component (lent): a run without one (unprotected, most
// scenarios) keeps the time in a plain field.
type vclock struct {
	ns   atomic.Int64 // the published time, once lent
	now  int64        // the simulator's time, always current
	lent bool
}

// Now returns the virtual time.
func (c *vclock) Now() time.Time { return epoch.Add(time.Duration(c.ns.Load())) }

// set moves the clock to ns; only the simulator's goroutine calls it.
func (c *vclock) set(ns int64) {
	c.now = ns
	if c.lent {
		c.ns.Store(ns)
	}
}

// lend returns c for a component's WithClock, publishing the time from then
// on; only the simulator's goroutine calls it.
func (c *vclock) lend() *vclock {
	if !c.lent {
		c.lent = true
		c.ns.Store(c.now)
	}
	return c
}

// at converts virtual ns to a time.Time.
func at(ns int64) time.Time { return epoch.Add(time.Duration(ns)) }
