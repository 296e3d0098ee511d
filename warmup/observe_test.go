package warmup_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
	"github.com/herdcap/herdcap/warmup"
)

// TestWarmerReportsProgress: a warm's phase changes (with the reason a
// pause gives), its chunks and its failed key reach Config.Observe, whose
// hook calls back into the warmer (it is called with no lock held).
func TestWarmerReportsProgress(t *testing.T) {
	var (
		mu     sync.Mutex
		phases []string
		chunks int
		keys   int
		failed []string
		w      *warmup.Warmer
	)
	hook := func(e observe.Warmup) {
		_, _ = w.Status(context.Background(), e.ID)
		mu.Lock()
		defer mu.Unlock()
		switch e.Kind {
		case observe.WarmupPhase:
			phases = append(phases, e.Phase+":"+e.Reason)
		case observe.WarmupChunkDone:
			chunks++
			keys += e.Keys
		case observe.WarmupKeyFailed:
			failed = append(failed, e.Reason)
		}
	}
	var err error
	w, err = warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: localBudget(t, 1e6, 10), ChunkSize: 4,
		Workers: 1, Retries: -1, Interval: 10 * time.Millisecond, Observe: &observe.Hooks{Warmup: hook}})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, w.Start(ctx, warmup.Warm{ID: "catalog", Source: warmup.Slice(items(10)),
		Fetch: func(_ context.Context, key string) (any, time.Time, error) {
			if key == "key-0000003" {
				return nil, time.Time{}, errors.New("origin said 404")
			}
			return key, time.Time{}, nil
		},
		Store: newCache().store}))
	require.NoError(t, w.Pause(ctx, "catalog", warmup.By{Who: "ops", Reason: "orders dipped"}))
	require.NoError(t, w.Resume(ctx, "catalog", warmup.By{Who: "ops"}))
	runFleet(t, w)
	// Ten no-op fetches: 10 s is generous on a loaded machine.
	waitPhase(t, w, "catalog", warmup.Done, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"running:", "paused:orders dipped", "running:", "done:"}, phases)
	assert.Equal(t, 3, chunks)
	assert.Equal(t, 9, keys, "10 keys, one failed")
	assert.Equal(t, []string{"origin said 404"}, failed)
}

// TestRedisStoreBreakerObserved: a RedisStore's breaker changes reach the
// Breaker hook of the Warmer made on it, named after the store's
// Redis.Name.
func TestRedisStoreBreakerObserved(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	store, err := warmup.NewRedisStore(fleet.Redis{Client: dead, Name: "obs", BreakerFailures: 1, Timeout: time.Second})
	require.NoError(t, err)
	var mu sync.Mutex
	var got []observe.Breaker
	w, err := warmup.New(warmup.Config{Store: store, Budget: localBudget(t, 100, 1), Observe: &observe.Hooks{Breaker: func(b observe.Breaker) {
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}}})
	require.NoError(t, err)
	_, err = w.Status(context.Background(), "x")
	require.ErrorIs(t, err, warmup.ErrUnavailable)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []observe.Breaker{{Policy: "obs", From: observe.BreakerClosed, To: observe.BreakerOpen}}, got)
}
