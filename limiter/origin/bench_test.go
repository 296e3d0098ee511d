package origin_test

import (
	"context"
	"testing"
	"time"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// BenchmarkReserve: the guard's decision and outcome record, over a Local
// budget with room for every call, against the budget's Take alone: what
// the guard adds to a call to the origin.
func BenchmarkReserve(b *testing.B) {
	budget, err := limiter.NewLocal(limiter.PerSecond(1e12, 1_000_000), limiter.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer budget.Close()
	ctx := context.Background()
	b.Run("budget", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := budget.Take(ctx, limiter.Request{Key: "db", N: 1, Wait: time.Second}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("guard", func(b *testing.B) {
		g, err := origin.New(origin.Config{Budget: budget, Name: "db"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			h, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
			if err != nil || !h.Allowed {
				b.Fatal(err, h.Reason)
			}
			h.RecordOutcome(origin.Success, time.Millisecond)
		}
	})
}
