package origin_test

import (
	"context"
	"testing"
	"time"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// benchLimit leaves room for every call of a benchmark: a decision on a
// healthy origin, a token available, no wait.
var benchLimit = limiter.PerSecond(1e12, 1_000_000)

// benchBudget returns a Local budget of benchLimit with no ramp.
func benchBudget(b *testing.B) *limiter.Local {
	b.Helper()
	budget, err := limiter.NewLocal(benchLimit, limiter.Config{Ramp: limiter.NoRamp})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { budget.Close() })
	return budget
}

// BenchmarkLocalAllowN is the baseline of the guard's decision: a Local
// budget's AllowN of one token, on the guard's key.
func BenchmarkLocalAllowN(b *testing.B) {
	budget := benchBudget(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := budget.AllowN(ctx, "db", 1); err != nil || !d.Allowed {
			b.Fatal(err, d)
		}
	}
}

// benchGuard measures a foreground decision and its record (Reserve +
// RecordOutcome) on a healthy origin: a token available, no wait.
func benchGuard(b *testing.B, cfg origin.Config) {
	cfg.Budget, cfg.Name = benchBudget(b), "db"
	g, err := origin.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
		if err != nil || !h.Allowed || h.Wait != 0 {
			b.Fatal(err, h.Reason, h.Wait)
		}
		h.RecordOutcome(origin.Success, time.Millisecond)
	}
}

// BenchmarkGuardDecision is the guard's decision on a fixed Local budget;
// compare with BenchmarkLocalAllowN.
func BenchmarkGuardDecision(b *testing.B) { benchGuard(b, origin.Config{}) }

// BenchmarkGuardDecisionHeadroom is the guard's decision carrying a
// Headroom's limit, and reporting the outcome to it.
func BenchmarkGuardDecisionHeadroom(b *testing.B) {
	benchGuard(b, origin.Config{Headroom: newTestHeadroom(benchLimit, 1e6)})
}

// BenchmarkGuardDecisionParallel is BenchmarkGuardDecision from every
// core at once, on one key.
func BenchmarkGuardDecisionParallel(b *testing.B) {
	g, err := origin.New(origin.Config{Budget: benchBudget(b), Name: "db"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, _ := g.Reserve(ctx, time.Time{}, origin.Foreground)
			h.RecordOutcome(origin.Success, time.Millisecond)
		}
	})
}
