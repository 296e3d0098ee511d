package invalidate

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

func TestConfigRejectsBadValues(t *testing.T) {
	m := NewMemoryStore()
	for field, cfg := range map[string]Config{
		"Config.Node":             {Node: strings.Repeat("n", maxNodeLen+1)},
		"Config.AdvanceInterval":  {AdvanceInterval: -time.Second},
		"Config.Retention":        {Retention: time.Millisecond},
		"Config.MaxRollouts":      {MaxRollouts: -1},
		"Config.PopulationWindow": {PopulationWindow: time.Millisecond},
		"Config.Guard":            {Guard: Guard{MinDuration: time.Millisecond}},
		"Config.PopulationFloor":  {PopulationFloor: -1},
		"Config.PopulationWarmup": {PopulationWarmup: -time.Second},
		"Config.MaxEpochJump":     {MaxEpochJump: MaxEpoch + 1},
	} {
		_, err := NewCoordinator(m, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.ErrorContains(t, err, field)
	}
	_, err := NewCoordinator(m, Config{AdvanceInterval: 500 * time.Microsecond})
	assert.ErrorIs(t, err, ErrInvalidConfig, "a positive interval under 1 ms")
	_, err = NewCoordinator(m, Config{MaxRollouts: maxMaxRollouts + 1})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	for _, g := range []Guard{{MaxRate: -1}, {MaxRate: math.NaN()}, {MaxRate: minRate / 2}, {MinCohorts: -1},
		{MinCohorts: limiter.MaxCohorts + 1}, {Share: 2}, {Share: math.NaN()}} {
		_, err := NewCoordinator(m, Config{Guard: g})
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", g)
		assert.ErrorContains(t, err, "Config.Guard.")
	}
	_, err = NewCoordinator(m, Config{AdvanceInterval: 10 * time.Second, PopulationWarmup: 5 * time.Second})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "Config.PopulationWarmup must be 0 (default) or at least Config.AdvanceInterval (10s), got 5s")
	for field, cfg := range map[string]Config{
		"Config.PopulationFloor": {PopulationFloor: maxClients + 1},
		"Config.MaxEpochJump":    {MaxEpochJump: MaxEpoch + 1},
	} {
		_, err := NewCoordinator(m, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.ErrorContains(t, err, field)
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1, -math.SmallestNonzeroFloat64} {
		_, err := NewCoordinator(m, Config{CallsPerClient: v})
		assert.ErrorIs(t, err, ErrInvalidConfig, "%v", v)
		assert.ErrorContains(t, err, "Config.CallsPerClient", "%v", v)
	}
	_, err = NewCoordinator(nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// TestConfigDefaults: zero fields take the documented defaults, negative
// ones turn the feature off.
func TestConfigDefaults(t *testing.T) {
	m := NewMemoryStore()
	c, err := NewCoordinator(m, Config{})
	require.NoError(t, err)
	assert.Equal(t, settings{
		clock: c.cfg.clock, node: c.cfg.node, log: c.cfg.log, cacheTTL: time.Second, every: time.Second,
		retention: 24 * time.Hour, maxRollouts: 1024, guard: Guard{MinDuration: 10 * time.Minute, MinCohorts: 10, Share: 0.5},
		window: 10 * time.Minute, warmup: 30 * time.Second, epochJump: 24 * 60 * 60 * 1000, grace: 3 * time.Second, perClient: 1,
	}, c.cfg)
	assert.False(t, c.cfg.injected, "no clock injected: the system clock")
	assert.Regexp(t, `^node-[0-9a-f]{8}$`, c.Node())

	c, err = NewCoordinator(m, Config{AdvanceInterval: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, c.cfg.warmup, "the default warm-up is at least two advance intervals")
	assert.Equal(t, 3*time.Minute, c.cfg.grace, "the default grace: three advance intervals (no breaker on memory)")
	c, err = NewCoordinator(m, Config{PopulationWindow: -1, CacheTTL: -1, RestoreGrace: -1})
	require.NoError(t, err)
	assert.Zero(t, c.cfg.window, "no counting")
	assert.Zero(t, c.cfg.warmup, "no counting, no warm-up")
	assert.Zero(t, c.cfg.cacheTTL, "every AppendDue reads the store")
	assert.Zero(t, c.cfg.grace, "no grace")
}

func TestPushConfigChecks(t *testing.T) {
	c, err := NewCoordinator(NewMemoryStore(), Config{})
	require.NoError(t, err)
	_, err = NewPusher(nil, PushConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	for field, cfg := range map[string]PushConfig{
		"PushConfig.Concurrency": {Concurrency: -1},
		"PushConfig.BudgetKey":   {BudgetKey: "k"},
	} {
		_, err = NewPusher(c, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.ErrorContains(t, err, field)
	}
	_, err = NewPusher(c, PushConfig{Concurrency: maxConcurrency + 1})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	p, err := NewPusher(c, PushConfig{})
	require.NoError(t, err)
	assert.Equal(t, PushConfig{Concurrency: 8}, p.cfg)
	b, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{})
	require.NoError(t, err)
	p, err = NewPusher(c, PushConfig{Budget: b})
	require.NoError(t, err)
	assert.Equal(t, "push", p.cfg.BudgetKey)
}

func TestNewRedisStoreChecks(t *testing.T) {
	_, err := NewRedisStore(fleet.Redis{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "Redis.Client")
	noTimeout := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer noTimeout.Close()
	_, err = NewRedisStore(fleet.Redis{Client: noTimeout})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "ContextTimeoutEnabled")
	ok := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer ok.Close()
	for field, r := range map[string]fleet.Redis{
		"Redis.Name":            {Name: "a{b}"},
		"Redis.Prefix":          {Prefix: "a:b"},
		"Redis.Timeout":         {Timeout: -time.Second},
		"Redis.BreakerFailures": {BreakerFailures: -1},
		"Redis.BreakerOpen":     {BreakerOpen: -time.Second},
		// The store runs no heartbeat: the fields that configure one are
		// rejected rather than ignored.
		`Redis.Node must be empty, got "node-1": the store keeps no live-node set, and a coordinator's node is its Config.Node`: {Node: "node-1"},
		"Redis.Heartbeat must be 0, got 1s: the store keeps no live-node set":                                                   {Heartbeat: time.Second},
	} {
		r.Client = ok
		_, err = NewRedisStore(r)
		assert.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.ErrorContains(t, err, field)
	}
	s, err := NewRedisStore(fleet.Redis{Client: ok, Name: "fleet-a", Prefix: "app", Timeout: time.Second, BreakerFailures: 5, BreakerOpen: time.Second})
	require.NoError(t, err)
	assert.Equal(t, "app:{inv:fleet-a}:", s.base)
	s, err = NewRedisStore(fleet.Redis{Client: ok})
	require.NoError(t, err)
	assert.Equal(t, "herdcap:{inv:default}:", s.base, "default prefix and namespace")
	assert.Equal(t, 50*time.Millisecond, s.r.Timeout, "the store's default time limit")
	assert.Equal(t, 3, s.r.BreakerFailures)
	assert.Equal(t, time.Second, s.r.BreakerOpen)
	c, err := NewCoordinator(s, Config{})
	require.NoError(t, err)
	assert.Equal(t, 4*time.Second, c.cfg.grace, "the default grace: three advance intervals and the breaker's open period")
}
