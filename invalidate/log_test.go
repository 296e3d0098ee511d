package invalidate

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestEveryControlIsLoggedWithWhoAsked(t *testing.T) {
	ctx := context.Background()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := newNode(t, NewMemoryStore(), newVClock(t0), Config{Logger: log, Node: "admin-node"})
	r := ro("r")
	r.By = "deploy-bot"
	mustStart(t, c, r)
	require.NoError(t, c.Pause(ctx, "r", By{}))
	require.NoError(t, c.Resume(ctx, "r", By{}))
	require.NoError(t, c.Pause(ctx, "r", By{Who: "oncall:alice", Reason: "origin p99 up"}))
	require.NoError(t, c.Resume(ctx, "r", By{Who: "oncall:alice"}))
	require.NoError(t, c.Abort(ctx, "r", By{Who: "oncall:bob", Reason: "wrong page-data file"}))
	require.NoError(t, c.Abort(ctx, "r", By{}))
	rogue := Rollout{ID: "x1", Scope: ScopeAll, Cohorts: 10, Rate: 1, Clients: 10, By: "rogue"}
	for i := range 4 {
		rogue.ID = string(rune('a' + i))
		_, _ = c.Start(ctx, rogue)
	}
	lines := buf.lines()
	want := []struct{ msg, by, more string }{
		{"invalidation started", "deploy-bot", ""},
		{"invalidation pause", "admin-node", `reason=""`},
		{"invalidation resume", "admin-node", ""},
		{"invalidation pause", "oncall:alice", `reason="origin p99 up"`},
		{"invalidation resume", "oncall:alice", ""},
		{"invalidation abort", "oncall:bob", `reason="wrong page-data file"`},
		{"invalidation abort", "admin-node", "changed=false"},
		{"invalidation started", "rogue", ""},
		{"invalidation started", "rogue", ""},
		{"invalidation started", "rogue", ""},
		{"invalidation refused by the guard", "rogue", "retry_after=3m20s"},
	}
	require.Len(t, lines, len(want), strings.Join(lines, "\n"))
	for i, w := range want {
		assert.Contains(t, lines[i], w.msg)
		assert.Contains(t, lines[i], "by="+w.by)
		assert.Contains(t, lines[i], "node=admin-node", "the node that acted is logged too")
		assert.Contains(t, lines[i], w.more)
	}

	// A control request out of range is refused before it reaches the store.
	long := strings.Repeat("x", maxReasonLen+1)
	assert.ErrorIs(t, c.Pause(ctx, "r", By{Reason: long}), ErrInvalidArgument)
	err := c.Abort(ctx, "r", By{Who: strings.Repeat("s", maxByLen+1)})
	assert.ErrorIs(t, err, ErrInvalidArgument)
	assert.ErrorContains(t, err, "By.Who")
}

// TestAppendDueAllocatesNothing holds the hot path's promise in the plain
// test run (the benchmark measures it).
func TestAppendDueAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk, Config{PopulationWindow: defaultPopulationWindow})
	mustStart(t, c, ro("a"))
	mustStart(t, c, ro("b"))
	for s := 1; s <= 5; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	buf := make([]Notice, 0, 4)
	due(t, c, "warm", 0)
	allocs := testing.AllocsPerRun(1000, func() {
		var err error
		buf, err = c.AppendDue(ctx, buf[:0], "client-42", 0)
		if err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

// TestRedisStoreLogsThroughItsCoordinator: the store's breaker transitions
// reach the logger of the coordinator made on it.
func TestRedisStoreLogsThroughItsCoordinator(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	s, err := NewRedisStore(fleet.Redis{Client: dead, BreakerFailures: 1, Timeout: time.Second})
	require.NoError(t, err)
	var buf syncBuffer
	c, err := NewCoordinator(s, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	_, err = c.Status(context.Background(), "x")
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, strings.Join(buf.lines(), "\n"), `msg="herdcap: redis breaker changed state" breaker=herdcap-invalidate-default from=closed to=open`)
}

// TestRedisStoreBreakerObserved: the store's breaker changes reach the
// Breaker hook of the first coordinator made on it with one, named after
// the store's Redis.Name; a second coordinator's hook is not attached.
func TestRedisStoreBreakerObserved(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	s, err := NewRedisStore(fleet.Redis{Client: dead, Name: "obs", BreakerFailures: 1, Timeout: time.Second})
	require.NoError(t, err)
	var mu sync.Mutex
	var got []observe.Breaker
	first, err := NewCoordinator(s, Config{Observe: &observe.Hooks{Breaker: func(b observe.Breaker) {
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}}})
	require.NoError(t, err)
	second, err := NewCoordinator(s, Config{Observe: &observe.Hooks{Breaker: func(observe.Breaker) {
		t.Error("a second coordinator's Breaker hook was attached")
	}}})
	require.NoError(t, err)
	_, err = second.Status(context.Background(), "x")
	require.ErrorIs(t, err, ErrUnavailable)
	_, err = first.Status(context.Background(), "x") // the breaker is open: no change
	require.ErrorIs(t, err, ErrUnavailable)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []observe.Breaker{{Policy: "obs", From: observe.BreakerClosed, To: observe.BreakerOpen}}, got)
}
