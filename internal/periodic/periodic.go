// Package periodic runs a function every interval on a limiter.Clock until
// stopped: the live-node heartbeat of package remote and the control loop
// of package headroom.
package periodic

import (
	"sync"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Loop calls its function every interval on its clock: interval after
// Start, then interval after each call has returned (so calls never
// overlap), until Stop. It is safe for concurrent use.
type Loop struct {
	clock limiter.Clock
	every time.Duration
	f     func()

	mu      sync.Mutex // guards what follows, and wg.Add against Stop
	stopped bool
	timer   limiter.Timer
	armGen  uint64         // counts arms: only the latest stores its timer
	wg      sync.WaitGroup // calls armed or under way
}

// Start returns a loop calling f every interval on clock.
func Start(clock limiter.Clock, every time.Duration, f func()) *Loop {
	l := &Loop{clock: clock, every: every, f: f}
	l.arm()
	return l
}

// arm sets the next call, unless Stop has begun. The clock is user code:
// no lock is held while it runs.
func (l *Loop) arm() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.armGen++
	gen := l.armGen
	l.mu.Unlock()
	t := l.clock.AfterFunc(l.every, l.tick)
	l.mu.Lock()
	if l.stopped {
		// Stop began meanwhile, without this timer to stop.
		l.mu.Unlock()
		if t.Stop() {
			l.wg.Done()
		}
		return
	}
	if l.armGen == gen { // not re-armed meanwhile by the timer itself
		l.timer = t
	}
	l.mu.Unlock()
}

// tick is the timer's function: one call, then the next arm.
func (l *Loop) tick() {
	defer l.wg.Done()
	l.mu.Lock()
	stopped := l.stopped
	l.mu.Unlock()
	if stopped {
		return
	}
	l.f()
	l.arm()
}

// Stop ends the loop: no call starts afterwards, and Stop returns once a
// call under way has returned. It is idempotent. It must not be called
// from the loop's own function.
func (l *Loop) Stop() {
	l.mu.Lock()
	l.stopped = true
	t := l.timer
	l.timer = nil
	l.mu.Unlock()
	if t != nil && t.Stop() {
		l.wg.Done() // its call will not run
	}
	l.wg.Wait()
}
