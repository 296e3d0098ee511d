package invalidate

import (
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsRejectBadValues(t *testing.T) {
	m := NewMemoryStore()
	for name, o := range map[string]Option{
		"WithClock":            WithClock(nil),
		"WithNode":             WithNode(""),
		"WithLogger":           WithLogger(nil),
		"WithCacheTTL":         WithCacheTTL(-time.Second),
		"WithAdvanceInterval":  WithAdvanceInterval(0),
		"WithHealth":           WithHealth(nil),
		"WithRetention":        WithRetention(time.Millisecond),
		"WithMaxRollouts":      WithMaxRollouts(0),
		"WithPopulationWindow": WithPopulationWindow(time.Millisecond),
		"WithGuard":            WithGuard(Guard{MinDuration: time.Millisecond}),
		"WithPopulationFloor":  WithPopulationFloor(-1),
		"WithWarmup":           WithWarmup(0),
		"WithMaxEpochJump":     WithMaxEpochJump(0),
		"WithRestoreGrace":     WithRestoreGrace(-time.Second),
	} {
		_, err := NewCoordinator(m, o)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
		assert.ErrorContains(t, err, name)
	}
	for _, g := range []Guard{{MaxRate: -1}, {MaxRate: math.NaN()}, {MinCohorts: -1}, {Share: 2}, {Share: math.NaN()}} {
		_, err := NewCoordinator(m, WithGuard(g))
		assert.ErrorIs(t, err, ErrInvalidOption, "%+v", g)
		assert.ErrorContains(t, err, "Guard.")
	}
	_, err := NewCoordinator(m, WithAdvanceInterval(10*time.Second), WithWarmup(5*time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption)
	assert.ErrorContains(t, err, "WithWarmup: warm-up 5s is shorter than the advance interval 10s")
	for name, o := range map[string]Option{
		"WithPopulationFloor": WithPopulationFloor(MaxClients + 1),
		"WithMaxEpochJump":    WithMaxEpochJump(MaxEpoch + 1),
	} {
		_, err := NewCoordinator(m, o)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
	c, err := NewCoordinator(m, WithAdvanceInterval(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, c.warmup, "the default warm-up is at least two advance intervals")
	assert.Equal(t, 3*time.Minute, c.grace, "the default grace: three advance intervals (no breaker on memory)")
	c, err = NewCoordinator(m, WithPopulationWindow(0))
	require.NoError(t, err)
	assert.Zero(t, c.warmup, "no counting, no warm-up")
	_, err = NewCoordinator(nil)
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewCoordinator(m, Option{})
	assert.ErrorIs(t, err, ErrInvalidOption)
}

func TestOptionsApplyOnlyWhereTheyBelong(t *testing.T) {
	m := NewMemoryStore()
	_, err := NewCoordinator(m, WithNamespace("x"))
	assert.ErrorContains(t, err, "WithNamespace does not apply to NewCoordinator")
	c, err := NewCoordinator(m)
	require.NoError(t, err)
	_, err = NewPusher(c, WithCacheTTL(time.Second))
	assert.ErrorContains(t, err, "WithCacheTTL does not apply to NewPusher")
	_, err = NewPusher(nil)
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewPusher(c, WithConcurrency(0))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewPusher(c, WithPushBudget(nil, "k"))
	assert.ErrorIs(t, err, ErrInvalidOption)
}

func TestNewRedisStoreChecks(t *testing.T) {
	_, err := NewRedisStore(nil)
	assert.ErrorIs(t, err, ErrInvalidOption)
	noTimeout := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer noTimeout.Close()
	_, err = NewRedisStore(noTimeout)
	assert.ErrorIs(t, err, ErrInvalidOption)
	assert.ErrorContains(t, err, "ContextTimeoutEnabled")
	ok := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer ok.Close()
	for _, o := range []Option{WithNamespace("a{b}"), WithNamespace(""), WithPrefix("a:b"), WithTimeout(0), WithBreaker(0, time.Second), WithBreaker(1, 0), WithClock(nil)} {
		_, err = NewRedisStore(ok, o)
		assert.ErrorIs(t, err, ErrInvalidOption, o.name)
	}
	_, err = NewRedisStore(ok, WithNamespace("fleet-a"), WithPrefix("app"), WithTimeout(time.Second), WithBreaker(5, time.Second))
	assert.NoError(t, err)
}
