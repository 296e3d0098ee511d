package fleet

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var nameSeq atomic.Int64

// uniqueName returns a fresh Redis.Name.
func uniqueName() string { return fmt.Sprintf("t%d", nameSeq.Add(1)) }

func fakeClockAt(t time.Time) *fakeclock.Clock { return fakeclock.New(t) }

// forTest fills r for a test: the client c, a fresh Name unless set, and a
// generous Timeout unless set (CI runs under -race on 2 loaded cores, and
// these tests check decisions, not latency).
func forTest(c redis.UniversalClient, r Redis) Redis {
	r.Client = c
	if r.Name == "" {
		r.Name = uniqueName()
	}
	if r.Timeout == 0 {
		r.Timeout = 2 * time.Second
	}
	return r
}

func newStrictForTest(t *testing.T, c redis.UniversalClient, l limiter.Limit, r Redis, cfg Config) *Strict {
	t.Helper()
	b, err := NewStrict(forTest(c, r), l, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newLeasedForTest(t *testing.T, c redis.UniversalClient, l limiter.Limit, r Redis, cfg LeasedConfig) *Leased {
	t.Helper()
	b, err := NewLeased(forTest(c, r), l, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// failOpen is the config of tests that want no heartbeat traffic.
var failOpen = Config{Failure: FailOpen}
