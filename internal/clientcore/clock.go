package clientcore

import (
	"context"
	"time"

	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
)

// Clock is where a Client reads the time and sleeps between attempts:
// limiter.Clock. Tests and the simulator inject a virtual one.
type Clock = limiter.Clock

// sleep waits d on clk, or until ctx is done: sysclock.Sleep.
func sleep(ctx context.Context, clk Clock, d time.Duration) error { return sysclock.Sleep(ctx, clk, d) }
