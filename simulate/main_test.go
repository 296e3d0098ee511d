package simulate

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
)

// srv is a private Redis for the memory-against-Redis tests; nil when
// redis-server is missing (those tests then skip, or fail under CI).
var srv *redistest.Server

func TestMain(m *testing.M) {
	s, stop, err := redistest.StartMain()
	if err != nil && !errors.Is(err, redistest.ErrNoRedis) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(redistest.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// modelCheck marks a test that checks the model's figures over long
// simulated runs and skips it under -race. A run is single-threaded (its
// only concurrency, Compare's two runs side by side, a Redis store and
// the progress callback, run under -race in TestDeterministic,
// TestMemoryAgainstRedis, the Redis tests and TestHoldWithinTheCallersDeadline),
// so the race detector finds nothing in these that those do not
// exercise, and it makes them about twenty times slower: the sweep alone
// took 70 s of CI's wall time under -race and takes 3 s without.
// scripts/test runs this package a second time without -race (its step
// "model"), where every model check runs, the sweep at more sizes and
// seeds than -race could afford.
func modelCheck(t *testing.T) {
	t.Helper()
	if raceDetector {
		t.Skip("a model check: runs without -race (scripts/test model)")
	}
}
