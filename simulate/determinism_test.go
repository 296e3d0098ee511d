package simulate

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

func compareJSON(t *testing.T, sc *Scenario, cfg Config) []byte {
	t.Helper()
	c, err := Compare(context.Background(), sc, cfg)
	require.NoError(t, err)
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return b
}

// TestDeterministic: the same scenario and seed give the same JSON, byte
// for byte; another seed gives other numbers.
func TestDeterministic(t *testing.T) {
	for _, name := range []string{"incident", "reconnect-storm", "config-change"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sc := builtin(t, name, 3000)
			sc.Duration = Duration(6 * time.Minute)
			a := compareJSON(t, sc, Config{})
			b := compareJSON(t, sc, Config{})
			assert.Equal(t, string(a), string(b))
			sc.Seed = 2
			c := compareJSON(t, sc, Config{})
			assert.NotEqual(t, string(a), string(c))
		})
	}
}

// TestMemoryAgainstRedis: the same runs with coordination on a private
// Redis, the virtual time passed to every script, give the same numbers as
// on the memory store (all but the Redis operation counts and the store's
// name), config-change included: a limit change applies from each bucket's
// last take on both of the limiter's backends (the simulator surfaced that
// they once differed).
func TestMemoryAgainstRedis(t *testing.T) {
	if srv == nil {
		redistest.Require(t) // skips, or fails under CI, without redis-server
	}
	opts := srv.Options()
	for _, name := range []string{"incident", "reconnect-storm", "config-change"} {
		t.Run(name, func(t *testing.T) {
			sc := builtin(t, name, 1500)
			sc.Duration = Duration(6 * time.Minute)
			mem, err := Compare(context.Background(), sc, Config{})
			require.NoError(t, err)
			red, err := Compare(context.Background(), sc, Config{Redis: opts})
			require.NoError(t, err)
			assert.Greater(t, red.Protected.RedisOps, int64(100), "the protected run coordinated through Redis")
			assert.Equal(t, "redis", red.Protected.Store)
			for _, r := range []*Result{red.Unprotected, red.Protected} {
				r.Store = "memory"
				r.RedisOps, r.RedisOpsPeak, r.RedisOpsMean = 0, 0, 0
				clear(r.Series.RedisOps)
			}
			assert.Equal(t, mem.Unprotected, red.Unprotected)
			assert.Equal(t, mem.Protected, red.Protected)
			assert.Equal(t, mem.Checks, red.Checks)
		})
	}
}

// TestRunCancel: a cancelled context stops a run with its error.
func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sc := builtin(t, "incident", 50_000)
	var calls int
	_, err := Run(ctx, sc, Unprotected, Config{Progress: func(Progress) {
		calls++
		cancel()
	}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Positive(t, calls)
}

// TestRunBadInput: bad arguments are errors, not panics.
func TestRunBadInput(t *testing.T) {
	_, err := Run(context.Background(), nil, Protected, Config{})
	assert.ErrorIs(t, err, ErrInvalidScenario)
	sc := builtin(t, "incident", 100)
	_, err = Run(context.Background(), sc, Mode("sideways"), Config{})
	assert.Error(t, err)
	bad := *sc
	bad.Clients = 0
	_, err = Run(context.Background(), &bad, Protected, Config{})
	assert.ErrorIs(t, err, ErrInvalidScenario)
}
