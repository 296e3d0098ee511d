package redistest_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
)

const redialProbe = "github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"

// goroutinesIn reports whether any goroutine's stack mentions fn.
func goroutinesIn(fn string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn+"(")
}

func TestLeakOptionsCoverRedialProbe(t *testing.T) {
	before := goleak.IgnoreCurrent()
	s := redistest.Start(t)
	opts := s.Options()
	opts.PoolSize = 2 // the probe starts after PoolSize failed dials
	c := redis.NewClient(opts)
	s.Kill(t)
	// Fail dials until go-redis starts its probe: after PoolSize failures,
	// by its code; allow more in case a failure is counted differently.
	var errs []error
	for range 10 * opts.PoolSize {
		ctx, cancel := context.WithTimeout(context.Background(), ctxTimeout)
		err := c.Ping(ctx).Err()
		cancel()
		require.Error(t, err)
		errs = append(errs, err)
		if goroutinesIn(redialProbe) {
			break
		}
	}
	// The probe sleeps 1 s between dials and notices Close only then; check
	// while the client is open, so it cannot have ended yet.
	require.True(t, goroutinesIn(redialProbe),
		"go-redis no longer starts %s; update LeakOptions (ping errors: %v)", redialProbe, errs)
	assert.NoError(t, goleak.Find(append(redistest.LeakOptions(), before)...))
	require.NoError(t, c.Close())

	// Let it exit so the package's final leak check (which does not use
	// LeakOptions) stays strict. It ends within ~1 s; 10 s allows for load.
	deadline := time.Now().Add(10 * time.Second)
	for goroutinesIn(redialProbe) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.False(t, goroutinesIn(redialProbe))
}
