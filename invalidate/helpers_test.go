package invalidate

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
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
				out[i] = newRedisStore(t, fleet.Redis{Client: srv.Client(t), Name: ns})
			}
			return out
		}},
		{name: "cluster", fleet: func(t *testing.T, n int) []Store {
			ns := uniqueNS()
			out := make([]Store, n)
			for i := range out {
				out[i] = newRedisStore(t, fleet.Redis{Client: cluster.Client(t), Name: ns})
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

// newRedisStore returns a store on r, in a namespace of its own unless
// r.Name says which.
func newRedisStore(t testing.TB, r fleet.Redis) *RedisStore {
	t.Helper()
	if r.Name == "" {
		r.Name = uniqueNS()
	}
	// A generous time limit: CI runs under -race on 2 loaded cores, and
	// these tests check outcomes, not latency.
	if r.Timeout == 0 {
		r.Timeout = 2 * time.Second
	}
	s, err := NewRedisStore(r)
	require.NoError(t, err)
	return s
}

// newNode returns a coordinator on st driven by clk, configured by cfg (at
// most one), with population counting off (so that paces depend on
// Rollout.Clients alone) unless cfg turns it on.
func newNode(t testing.TB, st Store, clk *vclock, cfg ...Config) *Coordinator {
	t.Helper()
	var c Config
	if len(cfg) > 1 {
		t.Fatalf("newNode takes at most one Config")
	}
	if len(cfg) == 1 {
		c = cfg[0]
	}
	c.Clock = clk
	if c.PopulationWindow == 0 {
		c.PopulationWindow = -1
	}
	co, err := NewCoordinator(st, c)
	require.NoError(t, err)
	return co
}

// ro returns an unguarded rollout: 10 cohorts of 100 clients at 100 clients
// per second, so one cohort per second.
func ro(id string) Rollout {
	return Rollout{ID: id, Scope: "tag:" + id, Cohorts: 10, Rate: 100, Clients: 1000, Coverage: 0.1, By: "test"}
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

// advance sets c's clock (a vclock, which other nodes may share) to at and
// advances c.
func advance(t testing.TB, c *Coordinator, at time.Time) {
	t.Helper()
	require.NoError(t, advanceAt(c, at))
}

// advanceAt sets c's clock to at and returns c's advance's error.
func advanceAt(c *Coordinator, at time.Time) error {
	c.cfg.clock.(*vclock).Set(at)
	return c.Advance(context.Background())
}

func due(t testing.TB, c *Coordinator, client string, applied uint64) []Notice {
	t.Helper()
	n, err := c.AppendDue(context.Background(), nil, client, applied)
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
