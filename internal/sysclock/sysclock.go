// Package sysclock provides the system clock as a limiter.Clock, for the
// packages built on limiter that default to it when none is injected.
package sysclock

import (
	"context"
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

// Sleep waits d on clock, or until ctx is done, and then returns ctx's
// error. It returns at once (ctx's error, if any) when d <= 0 or ctx is
// already done. A timer that clock cannot stop may still fire after Sleep
// has returned; it then does nothing.
func Sleep(ctx context.Context, clock limiter.Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	woke := make(chan struct{})
	t := clock.AfterFunc(d, func() { close(woke) })
	select {
	case <-woke:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
