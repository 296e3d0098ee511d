package invalidate

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// benchCoordinator returns a memory-store coordinator on the system clock
// with three rollouts (one done, one half released, one pending) and a
// fresh cache that stays fresh for the benchmark. The rollouts are
// advanced by a second coordinator on the same store and a virtual clock
// that starts now.
func benchCoordinator(b *testing.B) *Coordinator {
	b.Helper()
	ctx := context.Background()
	st := NewMemoryStore()
	clk := newVClock(time.Now())
	setup, err := NewCoordinator(st, Config{Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewCoordinator(st, Config{CacheTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for i, r := range []Rollout{
		{ID: "done", Scope: "tag:a", Cohorts: 10, Rate: 1e6, Clients: 10, Coverage: 0.1, By: "b"},
		{ID: "half", Scope: "tag:b", Cohorts: 100, Rate: 1000, Clients: 100_000, Coverage: 0.1, By: "b"},
		{ID: "pending", Scope: "tag:c", Cohorts: 1000, Rate: 1, Clients: 1_000_000, Coverage: 0.1, By: "b"},
	} {
		if _, err := setup.Start(ctx, r); err != nil {
			b.Fatal(err, i)
		}
	}
	for range 50 {
		clk.Add(time.Second)
		if err := setup.Advance(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := c.AppendDue(ctx, nil, "warm", 0); err != nil {
		b.Fatal(err)
	}
	return c
}

func benchClients(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%08d", i)
	}
	return ids
}

// BenchmarkAppendDueCached is the per-request hot path: the answer from the
// node's cached released-wave state, population sketch included. Target:
// at most 1 µs and 0 allocs/op.
func BenchmarkAppendDueCached(b *testing.B) {
	c := benchCoordinator(b)
	ids := benchClients(1 << 16)
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		buf := make([]Notice, 0, 8)
		i := next.Add(1 << 20)
		for pb.Next() {
			i++
			var err error
			buf, err = c.AppendDue(ctx, buf[:0], ids[i&(1<<16-1)], 0)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendDueCachedSerial is the same on one goroutine.
func BenchmarkAppendDueCachedSerial(b *testing.B) {
	c := benchCoordinator(b)
	ids := benchClients(1 << 16)
	ctx := context.Background()
	buf := make([]Notice, 0, 8)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var err error
		buf, err = c.AppendDue(ctx, buf[:0], ids[i&(1<<16-1)], 0)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDueRedisRoundTrip reads the store on every call (TTL 0): the
// price of one snapshot round trip to a local Redis when the cache expires.
func BenchmarkDueRedisRoundTrip(b *testing.B) {
	st := newRedisStore(b, fleet.Redis{Client: srv.Client(b)})
	c, err := NewCoordinator(st, Config{CacheTTL: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Start(ctx, ro("a")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.AppendDue(ctx, nil, "client-1", 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdvanceRedis is one advance (one script) with three rollouts, at
// the system clock's time (injected, so the script is given the time).
func BenchmarkAdvanceRedis(b *testing.B) {
	st := newRedisStore(b, fleet.Redis{Client: srv.Client(b)})
	c, err := NewCoordinator(st, Config{Clock: sysclock.Clock{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		r := ro(id)
		r.Rate = 1e-3
		if _, err := c.Start(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Advance(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
