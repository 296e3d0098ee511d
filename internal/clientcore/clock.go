package clientcore

import (
	"context"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Clock is where a Client reads the time and sleeps between attempts:
// limiter.Clock. Tests and the simulator inject a virtual one.
type Clock = limiter.Clock

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
