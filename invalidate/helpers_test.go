package invalidate

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var nsSeq atomic.Int64

// uniqueNS returns a fresh namespace, so tests never share rollouts.
func uniqueNS() string { return fmt.Sprintf("t%d", nsSeq.Add(1)) }

// storeCase builds the stores of one fleet: n stores on one namespace, as n
// nodes would hold them (the memory store is one instance shared by all).
type storeCase struct {
	name  string
	fleet func(t *testing.T, n int) []Store
}

func storeCases() []storeCase {
	return []storeCase{
		{name: "memory", fleet: func(t *testing.T, n int) []Store {
			m := NewMemoryStore()
			out := make([]Store, n)
			for i := range out {
				out[i] = m
			}
			return out
		}},
		{name: "redis", fleet: func(t *testing.T, n int) []Store {
			ns := uniqueNS()
			out := make([]Store, n)
			for i := range out {
				out[i] = newRedisStore(t, srv.Client(t), WithNamespace(ns))
			}
			return out
		}},
		{name: "cluster", fleet: func(t *testing.T, n int) []Store {
			ns := uniqueNS()
			out := make([]Store, n)
			for i := range out {
				out[i] = newRedisStore(t, cluster.Client(t), WithNamespace(ns))
			}
			return out
		}},
	}
}

func forEachStore(t *testing.T, f func(t *testing.T, sc storeCase)) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) { f(t, sc) })
	}
}

func newRedisStore(t testing.TB, c redis.UniversalClient, opts ...Option) *RedisStore {
	t.Helper()
	// A generous time budget: CI runs under -race on 2 loaded cores, and
	// these tests check outcomes, not latency.
	opts = append([]Option{WithNamespace(uniqueNS()), WithTimeout(2 * time.Second)}, opts...)
	s, err := NewRedisStore(c, opts...)
	require.NoError(t, err)
	return s
}

// newNode returns a coordinator on st driven by clk, with population
// counting off (so that paces depend on Rollout.Clients alone) unless opts
// turn it on.
func newNode(t testing.TB, st Store, clk *vclock, opts ...Option) *Coordinator {
	t.Helper()
	opts = append([]Option{WithClock(clk), WithPopulationWindow(0)}, opts...)
	c, err := NewCoordinator(st, opts...)
	require.NoError(t, err)
	return c
}

// ro returns an unguarded rollout: 10 cohorts of 100 clients at 100 clients
// per second, so one cohort per second.
func ro(id string) Rollout {
	return Rollout{ID: id, Scope: "tag:" + id, Cohorts: 10, Rate: 100, Clients: 1000, Coverage: 0.1, Source: "test"}
}

func mustStart(t testing.TB, c *Coordinator, r Rollout) Status {
	t.Helper()
	st, err := c.Start(context.Background(), r)
	require.NoError(t, err)
	return st
}

func mustStatus(t testing.TB, c *Coordinator, id string) Status {
	t.Helper()
	st, err := c.Status(context.Background(), id)
	require.NoError(t, err)
	return st
}

func advance(t testing.TB, c *Coordinator, at time.Time) {
	t.Helper()
	require.NoError(t, c.AdvanceAt(context.Background(), at))
}

func due(t testing.TB, c *Coordinator, client string, applied uint64) []Notice {
	t.Helper()
	n, err := c.Due(context.Background(), client, applied)
	require.NoError(t, err)
	return n
}

// clientWith returns a client ID whose cohorts in the given rollouts
// satisfy pred.
func clientWith(t testing.TB, rs []Rollout, pred func(cohorts []int) bool) string {
	t.Helper()
	cs := make([]int, len(rs))
	for i := range 100000 {
		id := fmt.Sprintf("client-%d", i)
		for j, r := range rs {
			cs[j] = limiter.Cohort(r.ID, id, r.Cohorts)
		}
		if pred(cs) {
			return id
		}
	}
	t.Fatalf("no client fits")
	return ""
}

func ids(ns []Notice) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.RolloutID)
	}
	return out
}
