package limiter

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/observe"
)

func TestViaMatchesObserveSource(t *testing.T) {
	for v := ViaLocal; v <= ViaFallback; v++ {
		assert.Equal(t, v.String(), observe.Source(v).String())
	}
}

func TestLocalReportsDecisions(t *testing.T) {
	var got []observe.Decision
	lb, err := NewLocal(Limit{Rate: 1, Period: time.Minute, Burst: 2}, Config{Name: "login",
		Clock: &testClock{now: t0}, Observe: &observe.Hooks{Decision: func(e observe.Decision) { got = append(got, e) }}})
	require.NoError(t, err)
	ctx := context.Background()
	for range 3 {
		_, err := lb.AllowN(ctx, "user:1", 1) // slow path, fast path, refused
		require.NoError(t, err)
	}
	_, err = lb.Take(ctx, Request{Key: "user:2", N: 2})
	require.NoError(t, err)
	_, err = lb.Take(ctx, Request{Key: "user:3", N: 1, Limit: Limit{Rate: 5, Period: time.Minute, Burst: 5}})
	require.NoError(t, err)
	_, err = lb.Take(ctx, Request{Key: "", N: 1}) // bad request: no decision, no event
	require.Error(t, err)
	allowed := observe.Decision{Policy: "login", Outcome: observe.Allowed, Source: observe.SourceLocal, Tokens: 1}
	assert.Equal(t, []observe.Decision{
		allowed, allowed,
		{Policy: "login", Outcome: observe.Denied, Source: observe.SourceLocal, Tokens: 1},
		{Policy: "login", Outcome: observe.Allowed, Source: observe.SourceLocal, Tokens: 2},
		allowed,
	}, got)
}

// A hook that calls back into the budget must not deadlock: Local calls
// it with no lock held, on every path (fast, keyed, general, refusal).
func TestLocalHookMayCallBack(t *testing.T) {
	var (
		lb    *Local
		mu    sync.Mutex
		inner int
	)
	hook := func(e observe.Decision) {
		mu.Lock()
		again := inner == 0
		inner++
		mu.Unlock()
		_ = lb.Limit()
		_ = lb.Stats()
		if again {
			// Into the same key's bucket, whose entry lock a refusal takes.
			_, _ = lb.AllowN(context.Background(), "k", 1)
		}
	}
	var err error
	lb, err = NewLocal(Limit{Rate: 1, Period: time.Minute, Burst: 1}, Config{Observe: &observe.Hooks{Decision: hook}})
	require.NoError(t, err)
	for _, r := range []Request{{Key: "k", N: 1}, {Key: "k", N: 1}, {Key: "j", N: 1, Limit: Limit{Rate: 1, Period: time.Minute, Burst: 1}},
		{Key: "j", N: 1, Limit: Limit{Rate: 1, Period: time.Minute, Burst: 1}}} {
		mu.Lock()
		inner = 0
		mu.Unlock()
		_, err := lb.Take(context.Background(), r)
		require.NoError(t, err)
	}
	assert.Equal(t, 2, inner)
}

func TestLocalObservedAllocatesNothing(t *testing.T) {
	var n int
	lb, err := NewLocal(PerSecond(1e6, 1e6), Config{Name: "api", Observe: &observe.Hooks{Decision: func(observe.Decision) { n++ }}})
	require.NoError(t, err)
	ctx := context.Background()
	_, _ = lb.AllowN(ctx, "k", 1)
	allocs := testing.AllocsPerRun(100, func() { _, _ = lb.AllowN(ctx, "k", 1) })
	assert.Zero(t, allocs)
	assert.Equal(t, 102, n)
}
