// Package coalescetest holds what the tests of httpmw's and grpcmw's
// Coalesce share: waiting for requests to reach a flight.
package coalescetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/serverside"
)

// WaitBound bounds how long a test waits for requests to reach a state:
// far above what loopback requests take, even on a loaded 2-core machine
// under -race, so that it only ends a test that is stuck.
const WaitBound = 10 * time.Second

// InFlight waits (polling each millisecond, up to WaitBound) until c has
// keys in flight and waiters joined to them, and fails t if it never has.
func InFlight[T any](t testing.TB, c *serverside.Coalescer[T], keys, waiters int) {
	t.Helper()
	require.Eventually(t, func() bool {
		k, w := c.InFlight()
		return k == keys && w == waiters
	}, WaitBound, time.Millisecond, "want %d keys and %d waiters in flight", keys, waiters)
}
