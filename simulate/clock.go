package simulate

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// epoch is virtual time zero: a fixed instant, so that every run hands the
// components the same times (the Redis scripts see them as µs since the
// Unix epoch).
var epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// vclock is the virtual clock the real components are given (their
// Config.Clock). The simulator moves it; components may read it from their
// own goroutines, hence the atomic. An atomic store is a full memory
// barrier on amd64, which costs a run with a million clients seconds when
// made on every event, so the clock is published only once it has been
// handed to a component (lent): a run without one (unprotected, most
// scenarios) keeps the time in a plain field.
//
// Timers (AfterFunc) fire on the simulator's goroutine when the clock
// reaches them, in time order, with the clock reading their time: a run
// stays deterministic. The components a run uses set none (their Redis
// backends fail closed, so no heartbeat runs), so set checks one atomic
// counter and nothing more.
type vclock struct {
	ns   atomic.Int64 // the published time, once lent
	now  int64        // the simulator's time, always current
	lent bool

	pending atomic.Int32 // timers set and not yet fired or stopped
	mu      sync.Mutex   // guards timers and seq
	timers  []*vtimer
	seq     uint64
}

// vtimer is one AfterFunc of a vclock.
type vtimer struct {
	c   *vclock
	at  int64 // virtual ns
	seq uint64
	f   func()
}

// Now returns the virtual time.
func (c *vclock) Now() time.Time { return epoch.Add(time.Duration(c.ns.Load())) }

// set moves the clock to ns, firing the timers due by then; only the
// simulator's goroutine calls it.
func (c *vclock) set(ns int64) {
	if c.pending.Load() != 0 {
		c.fire(ns)
	}
	c.now = ns
	if c.lent {
		c.ns.Store(ns)
	}
}

// AfterFunc calls f on the simulator's goroutine once the virtual clock
// has moved d past now.
func (c *vclock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &vtimer{c: c, at: c.ns.Load() + int64(max(d, 0)), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	c.pending.Add(1)
	return t
}

// Stop cancels the timer, reporting false when it has fired or was
// stopped already.
func (t *vtimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	c.pending.Add(-1)
	return true
}

// fire runs, one by one and in (time, setting) order, the timers due at
// or before ns, each with the clock reading its time.
func (c *vclock) fire(ns int64) {
	for {
		c.mu.Lock()
		next := -1
		for i, t := range c.timers {
			if t.at <= ns && (next < 0 || t.at < c.timers[next].at || (t.at == c.timers[next].at && t.seq < c.timers[next].seq)) {
				next = i
			}
		}
		if next < 0 {
			c.mu.Unlock()
			return
		}
		t := c.timers[next]
		c.timers = slices.Delete(c.timers, next, next+1)
		c.pending.Add(-1)
		c.mu.Unlock()
		if t.at > c.now {
			c.now = t.at
			c.ns.Store(t.at)
		}
		t.f()
	}
}

// lend returns c for a component's Config.Clock, publishing the time from
// then on; only the simulator's goroutine calls it.
func (c *vclock) lend() *vclock {
	if !c.lent {
		c.lent = true
		c.ns.Store(c.now)
	}
	return c
}
