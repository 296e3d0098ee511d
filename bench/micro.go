package main

import (
	"context"
	"slices"
	"testing"

	"golang.org/x/time/rate"

	"github.com/herdcap/herdcap/limiter"
)

// microResult is the hot-key, one-goroutine cost of a decision, measured
// with testing.Benchmark (no timing in the loop) over several interleaved
// rounds, so that a burst of load from elsewhere hits both sides alike.
type microResult struct {
	bareNs, localNs         []float64 // per round
	bareAllocs, localAllocs int64     // allocs/op, worst round
	localAllocsPerRun       float64   // testing.AllocsPerRun, as a cross-check
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

func runMicro(ctx context.Context, rounds int, l limitSpec) (microResult, error) {
	var m microResult
	lb, err := limiter.NewLocal(l.herdcap(), limiter.Config{})
	if err != nil {
		return m, err
	}
	defer lb.Close()
	bg := context.Background()
	bare := func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(l.perSec), l.burst)
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	}
	local := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = lb.AllowN(bg, hotKey, 1)
		}
	}
	for range rounds {
		if ctx.Err() != nil {
			return m, ctx.Err()
		}
		rb := testing.Benchmark(bare)
		rl := testing.Benchmark(local)
		m.bareNs = append(m.bareNs, float64(rb.T.Nanoseconds())/float64(rb.N))
		m.localNs = append(m.localNs, float64(rl.T.Nanoseconds())/float64(rl.N))
		m.bareAllocs = max(m.bareAllocs, rb.AllocsPerOp())
		m.localAllocs = max(m.localAllocs, rl.AllocsPerOp())
	}
	m.localAllocsPerRun = testing.AllocsPerRun(10_000, func() { _, _ = lb.AllowN(bg, hotKey, 1) })
	return m, nil
}
