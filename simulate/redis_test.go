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

// redisOpts returns the private Redis's options, skipping (or failing
// under CI) without redis-server.
func redisOpts(t *testing.T) Config {
	t.Helper()
	if srv == nil {
		redistest.Require(t)
	}
	return Config{Redis: srv.Options()}
}

// storeFor returns the Config sc runs with in the tests: the private
// Redis when it has outages (which need it), else the memory store.
func storeFor(t testing.TB, sc *Scenario) Config {
	t.Helper()
	if len(sc.Redis.Outages) == 0 {
		return Config{}
	}
	if srv == nil {
		redistest.Require(t)
	}
	return Config{Redis: srv.Options()}
}

// outageSized is rogue-invalidate sized for Redis (redisSized: 1500
// clients, its rollout from 1m to 3m) with a 20 s Redis outage in the
// middle of the rollout, at 1m40s.
func outageSized(t *testing.T, loseData bool) *Scenario {
	t.Helper()
	sc := redisSized(t, "rogue-invalidate")
	sc.Redis.Outages = []RedisOutage{{At: Duration(100 * time.Second), For: Duration(20 * time.Second), LoseData: loseData}}
	return sc
}

// sum adds v[from:to].
func sum(v []float64, from, to int) float64 {
	var n float64
	for _, x := range v[from:to] {
		n += x
	}
	return n
}

// TestRedisOutage: Redis goes away for 20 s in the middle of a rollout.
// Every call in the window fails (and only there), the failure policy
// answers and the run goes on within its bounds; the rollout releases
// nothing while Redis is away and resumes where it was: it converges about
// the outage's length later than without it, not a rollout later.
func TestRedisOutage(t *testing.T) {
	cfg := redisOpts(t)
	calm := redisSized(t, "rogue-invalidate")
	base, err := Run(context.Background(), calm, Protected, cfg)
	require.NoError(t, err)
	require.True(t, base.Converged)
	assert.Zero(t, base.RedisFailed)

	sc := outageSized(t, false)
	r, err := Run(context.Background(), sc, Protected, cfg)
	require.NoError(t, err)
	assert.Positive(t, r.RedisFailed, "the outage failed the calls in its window")
	f := r.Series.RedisFailed
	assert.Zero(t, sum(f, 0, 100)+sum(f, 120, len(f)), "no call fails outside the outage")
	assert.Equal(t, float64(r.RedisFailed), sum(f, 100, 120))
	assert.Positive(t, sum(f, 115, 120), "calls fail to the outage's end")
	assert.Zero(t, r.RolloutRestores, "no data was lost")

	// The run went on, within the scenario's bounds.
	assert.True(t, r.Converged)
	assert.False(t, r.Collapsed)
	assert.LessOrEqual(t, r.PeakOverBudget, 1.1)
	assert.LessOrEqual(t, r.StormFailedShare, 0.01)
	assert.LessOrEqual(t, r.ChangedOverBudget, 1.1)

	// Nothing is released while Redis is away: once the nodes have
	// pushed what they knew, no client changes until it is back.
	assert.Zero(t, sum(r.Series.Changed, 105, 120), "changes during the outage")
	assert.Positive(t, sum(base.Series.Changed, 105, 120), "changes in the same seconds without it")
	assert.Positive(t, sum(r.Series.Changed, 121, 126), "the rollout resumes after it")
	// Resumed where it was: later by about the outage, not restarted.
	late := r.ConvergeS - base.ConvergeS
	assert.InDelta(t, 20, late, 5, "converged %.1f s later than without the outage (%.1f s)", late, base.ConvergeS)
	assert.Equal(t, float64(sc.Clients), sum(r.Series.Changed, 0, len(r.Series.Changed)), "each client changed once")
}

// TestRedisOutageLoseData: Redis comes back empty after the outage. The
// nodes re-register the rollout (the restore path of invalidate's
// durability), which resumes where it was after its restore grace.
func TestRedisOutageLoseData(t *testing.T) {
	cfg := redisOpts(t)
	sc := outageSized(t, true)
	r, err := Run(context.Background(), sc, Protected, cfg)
	require.NoError(t, err)
	assert.Positive(t, r.RolloutRestores, "the nodes re-registered the rollout")
	assert.LessOrEqual(t, r.RolloutRestores, int64(sc.Nodes))
	assert.True(t, r.Converged)
	assert.False(t, r.Collapsed)
	assert.LessOrEqual(t, r.StormFailedShare, 0.01)
	assert.Equal(t, float64(sc.Clients), sum(r.Series.Changed, 0, len(r.Series.Changed)), "each client changed once")
	kept, err := Run(context.Background(), outageSized(t, false), Protected, cfg)
	require.NoError(t, err)
	// The re-registered rollout releases nothing for its grace (three
	// ticks and the breaker's open period): a few seconds, not a
	// rollout.
	assert.InDelta(t, kept.ConvergeS, r.ConvergeS, 10)
}

// TestRedisOutageDeterministic: a run with outages, data loss and the
// closed failure policy gives the same JSON twice on Redis.
func TestRedisOutageDeterministic(t *testing.T) {
	cfg := redisOpts(t)
	for _, failure := range []string{FailureLocal, FailureClosed} {
		t.Run(failure, func(t *testing.T) {
			sc := outageSized(t, true)
			sc.Redis.Failure = failure
			sc.Redis.Latency = Duration(time.Millisecond)
			var out []string
			for range 2 {
				r, err := Run(context.Background(), sc, Protected, cfg)
				require.NoError(t, err)
				assert.Positive(t, r.RedisFailed)
				// Redis's operation counts are not the run's to decide: a
				// script the server has not cached yet costs an EVALSHA
				// and an EVAL.
				r.RedisOps, r.RedisOpsPeak, r.RedisOpsMean = 0, 0, 0
				b, err := json.Marshal(r)
				require.NoError(t, err)
				out = append(out, string(b))
			}
			assert.Equal(t, out[0], out[1])
		})
	}
}

// TestRedisOutageFailurePolicy: the failure policy answers in the
// outage. Under FailLocal the push budget answers from this node's share,
// and the nodes push the cohorts they knew released in the outage's first
// seconds; under FailClosed it refuses from the outage's first moment.
// Either way the run goes on and the rollout completes.
func TestRedisOutageFailurePolicy(t *testing.T) {
	cfg := redisOpts(t)
	for _, failure := range []string{FailureLocal, FailureClosed} {
		sc := outageSized(t, false)
		sc.Redis.Failure = failure
		r, err := Run(context.Background(), sc, Protected, cfg)
		require.NoError(t, err, failure)
		assert.Positive(t, r.RedisFailed, failure)
		pushed := sum(r.Series.Changed, 100, 103)
		if failure == FailureLocal {
			assert.Positive(t, pushed, "local: pushed what the nodes knew")
		} else {
			assert.Zero(t, pushed, "closed: the push budget refuses")
		}
		assert.Zero(t, sum(r.Series.Changed, 105, 120), failure)
		assert.True(t, r.Converged, failure)
		assert.False(t, r.Collapsed, failure)
	}
}

// TestRedisOutagesNeedRedis: on the memory store a protected run with
// outages is refused, naming the field and the way out.
func TestRedisOutagesNeedRedis(t *testing.T) {
	sc := outageSized(t, false)
	_, err := Run(context.Background(), sc, Protected, Config{})
	require.ErrorIs(t, err, ErrInvalidScenario)
	assert.ErrorContains(t, err, "scenario.redis.outages: need the Redis store")
	assert.ErrorContains(t, err, "-redis")
	// The unprotected run coordinates nothing: it runs.
	_, err = Run(context.Background(), sc, Unprotected, Config{})
	require.NoError(t, err)
}

// TestRedisLatency: the coordination calls' latency moves the protected
// run's numbers (held calls wait longer, notices arrive later), the same
// on both stores.
func TestRedisLatency(t *testing.T) {
	cfg := redisOpts(t)
	sc := redisSized(t, "incident")
	base, err := Compare(context.Background(), sc, Config{})
	require.NoError(t, err)
	sc.Redis.Latency = Duration(2 * time.Millisecond)
	mem, err := Compare(context.Background(), sc, Config{})
	require.NoError(t, err)
	assert.Equal(t, base.Unprotected, mem.Unprotected, "the unprotected run coordinates nothing")
	assert.NotEqual(t, base.Protected, mem.Protected, "the latency moves the protected run")
	assert.NotEqual(t, base.Protected.LatencyP99S, mem.Protected.LatencyP99S)
	red, err := Compare(context.Background(), sc, cfg)
	require.NoError(t, err)
	assertSameNumbers(t, mem, red)
}
