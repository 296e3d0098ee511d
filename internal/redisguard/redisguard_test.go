package redisguard

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, redistest.LeakOptions()...) }

var echo = redis.NewScript(`return redis.call("GET", KEYS[1])`)

func TestGuard(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	require.NoError(t, CheckClient(c))
	g := New(c, Settings{Name: "t", Timeout: 50 * time.Millisecond, Failures: 2, OpenFor: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()

	require.NoError(t, c.LPush(ctx, "list", "x").Err())
	_, err := g.Eval(ctx, echo, []string{"list"})
	require.Error(t, err)
	assert.False(t, IsStoreFailure(err), "WRONGTYPE is an answer, not an outage")

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = g.Eval(canceled, echo, []string{"k"})
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, IsStoreFailure(err))

	s.Pause(t)
	for range 2 {
		start := time.Now()
		_, err = g.Eval(ctx, echo, []string{"k"})
		assert.True(t, IsStoreFailure(err), "%v", err)
		// Generous: 50 ms budget on a loaded CI machine.
		assert.Less(t, time.Since(start), 500*time.Millisecond)
	}
	assert.True(t, g.Open(), "two failures open the breaker")
	s.Resume(t)
	_, err = g.Eval(ctx, echo, []string{"k"})
	assert.True(t, IsStoreFailure(err), "an open breaker is a store failure: %v", err)
}

func TestCheckClient(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	assert.True(t, errors.Is(CheckClient(c), ErrNoContextTimeout))
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true})
	defer cc.Close()
	assert.NoError(t, CheckClient(cc))
}
