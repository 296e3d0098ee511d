package clientcore

import (
	"context"
	"time"
)

// Clock is where a Client reads the time and sleeps between attempts: the
// shape of limiter.Clock (Now, and AfterFunc like time.AfterFunc), so that
// a limiter.Clock can be handed to a Client as it is once both agree on
// Timer. Tests and the simulator inject a virtual one.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless the
	// returned Timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is what Clock.AfterFunc returns: the shape of limiter.Timer.
// *time.Timer satisfies it.
type Timer = interface{ Stop() bool }

// systemClock is the wall clock, the default Clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// sleep waits d on clk, or until ctx is done, and then returns ctx's
// error. It returns at once (ctx's error, if any) when d <= 0 or ctx is
// already done.
func sleep(ctx context.Context, clk Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	woke := make(chan struct{})
	t := clk.AfterFunc(d, func() { close(woke) })
	select {
	case <-woke:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
