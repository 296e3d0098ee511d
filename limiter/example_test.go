package limiter_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// clock is a Clock that moves only when told to, for examples that show
// time passing. Local sets no timers.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time                                { return c.t }
func (c *clock) AfterFunc(time.Duration, func()) limiter.Timer { panic("no timers here") }

func ExampleNewLocal() {
	// 10 tokens per second, at most 3 at once, per key. (The clock stands
	// still, so that the printed waits are exact; on the system clock they
	// would shrink by whatever time passes between the calls.)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, err := limiter.NewLocal(limiter.PerSecond(10, 3), limiter.Config{Clock: clk})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	// Five callers at once: three are let in, and the two refused are told
	// successive times (one token interval apart), so that they do not
	// come back together.
	for range 5 {
		d, _ := b.AllowN(ctx, "client-42", 1)
		fmt.Println(d.Allowed, d.Remaining, d.RetryAfter, d.Via)
	}
	// Output:
	// true 2 0s local
	// true 1 0s local
	// true 0 0s local
	// false 0 100ms local
	// false 0 200ms local
}

func ExampleLocal_Take() {
	// The budget's own limit is for keys of no plan; a request may carry
	// its key's plan.
	b, _ := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{})
	free, pro := limiter.PerSecond(1, 2), limiter.PerMinute(600, 20)
	ctx := context.Background()
	for _, r := range []limiter.Request{
		{Key: "alice", N: 5, Limit: free},
		{Key: "bob", N: 5, Limit: pro},
		{Key: "carol", N: 8, UpTo: true, Limit: pro},
	} {
		d, err := b.Take(ctx, r)
		fmt.Println(r.Key, d.Allowed, d.Taken, d.Limit, err)
	}
	// Output:
	// alice false 0 1/1s burst 2 limiter: invalid request: Request.N = 5 exceeds the burst of 2, so it could never be granted
	// bob true 5 600/1m0s burst 20 <nil>
	// carol true 8 600/1m0s burst 20 <nil>
}

func ExampleLocal_SetLimit() {
	// Raising a limit 100× ramps over a minute instead of jumping.
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, _ := limiter.NewLocal(limiter.PerSecond(10, 10), limiter.Config{Clock: clk, Ramp: time.Minute})
	t0 := clk.t
	_ = b.SetLimit(limiter.PerSecond(1000, 1000))
	for _, after := range []time.Duration{0, 15 * time.Second, 30 * time.Second, time.Minute} {
		clk.t = t0.Add(after)
		d, _ := b.AllowN(context.Background(), "k", 0)
		fmt.Printf("%v: %.0f/s burst %d\n", after, d.Limit.PerSecond(), d.Limit.Burst)
	}
	// Output:
	// 0s: 10/s burst 10
	// 15s: 258/s burst 258
	// 30s: 505/s burst 505
	// 1m0s: 1000/s burst 1000
}

func ExampleRequest_limitChange() {
	// A key moved from one plan to a bigger one ramps to it over
	// Config.Ramp (here 10 s) while it is in use; an idle key, or one seen
	// for the first time, takes its limit at once.
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, _ := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{Clock: clk, Ramp: 10 * time.Second})
	basic, big := limiter.PerSecond(10, 10), limiter.PerSecond(110, 110)
	ctx := context.Background()
	_, _ = b.Take(ctx, limiter.Request{Key: "acme", N: 10, Limit: basic}) // in use: drained
	t0 := clk.t
	for _, after := range []time.Duration{0, 5 * time.Second, 10 * time.Second} {
		clk.t = t0.Add(after)
		d, _ := b.Take(ctx, limiter.Request{Key: "acme", Limit: big})
		fmt.Printf("acme %v: %v\n", after, d.Limit)
	}
	d, _ := b.Take(ctx, limiter.Request{Key: "newco", Limit: big})
	fmt.Println("newco:", d.Limit)
	// Output:
	// acme 0s: 10/1s burst 10
	// acme 5s: 60/1s burst 60
	// acme 10s: 110/1s burst 110
	// newco: 110/1s burst 110
}

func ExampleLocal_Take_upTo() {
	b, _ := limiter.NewLocal(limiter.PerSecond(1, 5), limiter.Config{})
	d, _ := b.Take(context.Background(), limiter.Request{Key: "wave", N: 8, UpTo: true})
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
