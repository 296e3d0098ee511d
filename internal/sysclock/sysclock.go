// Package sysclock provides the system clock as a limiter.Clock, for the
// packages built on limiter that default to it when none is injected.
package sysclock

import (
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Clock reads time.Now and runs timers with time.AfterFunc. Its zero value
// is ready to use; it is safe for concurrent use.
type Clock struct{}

// Now returns time.Now().
func (Clock) Now() time.Time { return time.Now() }

// AfterFunc runs f on its own goroutine after d, as time.AfterFunc does.
func (Clock) AfterFunc(d time.Duration, f func()) limiter.Timer { return time.AfterFunc(d, f) }

// Or returns c, or the system clock when c is nil.
func Or(c limiter.Clock) limiter.Clock {
	if c == nil {
		return Clock{}
	}
	return c
}
