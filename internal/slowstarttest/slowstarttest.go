// Package slowstarttest helps the transports' tests of slow start: it
// finds clients by their place on a slowstart.Gate and drives a virtual
// clock while a client of ours sleeps on it. Only tests may import it.
package slowstarttest

import (
	"strconv"
	"testing"
	"time"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

// Place is a client's place on a Gate with the default salt: the Gate
// places clients as limiter.Cohort does, here over 2^20 cohorts, and
// admits a client once its share exceeds the place.
func Place(id string) float64 {
	return float64(limiter.Cohort(slowstart.DefaultSalt, id, 1<<20)) / (1 << 20)
}

// ClientAt returns a client ID ("client-N") whose place is in [lo, hi).
func ClientAt(tb testing.TB, lo, hi float64) string {
	tb.Helper()
	for i := range 100000 {
		id := "client-" + strconv.Itoa(i)
		if p := Place(id); p >= lo && p < hi {
			return id
		}
	}
	tb.Fatalf("no client placed in [%v, %v)", lo, hi)
	return ""
}

// Drive moves clk a millisecond at a time whenever something sleeps on it
// (a client's wait between attempts), until done delivers the call's
// result, which it returns. It fails tb if neither happens within 10 s of
// real time: generous for one loopback round trip on a loaded machine
// under -race.
func Drive[T any](tb testing.TB, clk *fakeclock.Clock, done <-chan T) T {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case v := <-done:
			return v
		default:
		}
		if clk.Pending() > 0 {
			clk.Add(time.Millisecond)
			deadline = time.Now().Add(10 * time.Second)
			continue
		}
		if time.Now().After(deadline) {
			tb.Fatal("nothing sleeps on the clock, and the call is not done")
		}
		time.Sleep(100 * time.Microsecond) // polling, as require.Eventually does
	}
}
