package invalidate

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestEveryControlIsLoggedWithItsSource(t *testing.T) {
	ctx := context.Background()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := newNode(t, NewMemoryStore(), newVClock(t0), WithLogger(log), WithNode("admin-node"))
	r := ro("r")
	r.Source = "deploy-bot"
	mustStart(t, c, r)
	require.NoError(t, c.Pause(ctx, "r"))
	require.NoError(t, c.Resume(ctx, "r"))
	require.NoError(t, c.Abort(ctx, "r"))
	rogue := Rollout{ID: "x1", Scope: ScopeAll, Cohorts: 10, Rate: 1, Source: "rogue"}
	for i := range 4 {
		rogue.ID = string(rune('a' + i))
		_, _ = c.Start(ctx, rogue)
	}
	lines := buf.lines()
	want := []struct{ msg, source string }{
		{"invalidation started", "deploy-bot"},
		{"invalidation pause", "admin-node"},
		{"invalidation resume", "admin-node"},
		{"invalidation abort", "admin-node"},
		{"invalidation started", "rogue"},
		{"invalidation started", "rogue"},
		{"invalidation started", "rogue"},
		{"invalidation refused by the guard", "rogue"},
	}
	require.Len(t, lines, len(want), strings.Join(lines, "\n"))
	for i, w := range want {
		assert.Contains(t, lines[i], w.msg)
		assert.Contains(t, lines[i], "source="+w.source)
	}
	assert.Contains(t, lines[7], "retry_after=3m20s")
}

// TestAppendDueAllocatesNothing holds the hot path's promise in the plain
// test run (the benchmark measures it).
func TestAppendDueAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk, WithPopulationWindow(DefaultPopulationWindow))
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
