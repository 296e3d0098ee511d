package redisguard

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
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

func TestEvalBatch(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	g := New(c, Settings{Name: "t", Timeout: 50 * time.Millisecond, Failures: 2, OpenFor: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "a", "1", 0).Err())
	require.NoError(t, c.LPush(ctx, "list", "x").Err())
	require.NoError(t, c.ScriptFlush(ctx).Err()) // every call meets NOSCRIPT first

	calls := []*Call{
		{Script: echo, Keys: []string{"a"}},
		{Script: echo, Keys: []string{"list"}}, // WRONGTYPE: this call's own error
		{Script: echo, Keys: []string{"missing"}},
	}
	g.EvalBatch(calls)
	assert.Equal(t, "1", calls[0].Val)
	assert.NoError(t, calls[0].Err)
	require.Error(t, calls[1].Err)
	assert.False(t, IsStoreFailure(calls[1].Err), "an answer, not an outage")
	assert.ErrorIs(t, calls[2].Err, redis.Nil)
	assert.False(t, g.Open())

	// A stalled Redis fails the whole batch as a store failure, within the
	// budget (generously bounded: CI is a loaded 2-core machine), and counts
	// once against the breaker.
	s.Pause(t)
	calls = []*Call{{Script: echo, Keys: []string{"a"}}, {Script: echo, Keys: []string{"a"}}}
	start := time.Now()
	g.EvalBatch(calls)
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	for _, c := range calls {
		assert.True(t, IsStoreFailure(c.Err), "%v", c.Err)
	}
	assert.False(t, g.Open(), "one failed batch is one failure")
	g.EvalBatch(calls)
	assert.True(t, g.Open(), "a second opens the breaker")
	s.Resume(t)
	calls = []*Call{{Script: echo, Keys: []string{"a"}}}
	g.EvalBatch(calls)
	assert.ErrorIs(t, calls[0].Err, gobreaker.ErrOpenState, "an open breaker answers without Redis")
}
