package limiter_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

func ExampleNewLocal() {
	// 10 tokens per second, at most 3 at once, per key.
	b, err := limiter.NewLocal(limiter.PerSecond(10, 3))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 4 {
		d, _ := b.AllowNAt(ctx, "client-42", t0, 1)
		fmt.Println(d.Allowed, d.Remaining, d.RetryAfter, d.Source)
	}
	// Output:
	// true 2 0s local
	// true 1 0s local
	// true 0 0s local
	// false 0 100ms local
}

func ExampleLocal_SetLimitAt() {
	// Raising a limit 100× ramps over a minute instead of jumping.
	b, _ := limiter.NewLocal(limiter.PerSecond(10, 10), limiter.WithRamp(time.Minute))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_ = b.SetLimitAt(t0, limiter.PerSecond(1000, 1000))
	for _, after := range []time.Duration{0, 15 * time.Second, 30 * time.Second, time.Minute} {
		d, _ := b.AllowNAt(context.Background(), "k", t0.Add(after), 0)
		fmt.Printf("%v: %.0f/s burst %d\n", after, d.Limit.PerSecond(), d.Limit.Burst)
	}
	// Output:
	// 0s: 10/s burst 10
	// 15s: 258/s burst 258
	// 30s: 505/s burst 505
	// 1m0s: 1000/s burst 1000
}

func ExampleLocal_TakeUpTo() {
	b, _ := limiter.NewLocal(limiter.PerSecond(1, 5))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d, _ := b.TakeUpToAt(context.Background(), "wave", t0, 8)
	fmt.Println(d.Allowed, d.Taken, d.Remaining)
	// Output:
	// true 5 0
}

func ExampleLimit_Validate() {
	err := limiter.Limit{Rate: 10, Burst: 0}.Validate()
	fmt.Println(err)
	// Output:
	// limiter: invalid limit: Limit.Burst must be >= 1, got 0
}

func ExampleCohort() {
	// Tell every 4th client first: a rolling change releases cohort 0, then
	// 1, and so on. Placement is sticky for a salt (every node computes the
	// same cohort, with no shared state), and a new salt reshuffles it, so
	// the same clients are not always first.
	for _, id := range []string{"alice", "bob", "carol"} {
		fmt.Println(id, limiter.Cohort("invalidate-v41", id, 4), limiter.Cohort("invalidate-v42", id, 4))
	}
	// Over many clients, each cohort gets its share.
	counts := make([]int, 4)
	for i := range 100_000 {
		counts[limiter.Cohort("invalidate-v42", "client-"+strconv.Itoa(i), 4)]++
	}
	fmt.Println(counts)
	// Output:
	// alice 1 2
	// bob 2 3
	// carol 3 2
	// [25197 24899 24912 24992]
}
