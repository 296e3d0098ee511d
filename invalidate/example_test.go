package invalidate_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// clock is a clock that moves only when told: examples run in virtual time.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ExampleCoordinator() {
	ctx := context.Background()
	clk := &clock{t: start}
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.WithClock(clk))
	if err != nil {
		panic(err)
	}
	// Tell 1,000 clients to drop the catalog, 100 per second, in 10 waves.
	st, err := c.Start(ctx, invalidate.Rollout{
		ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 10, Rate: 100,
		Clients: 1000, Coverage: 0.2, Source: "deployer",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Phase, "one cohort every", st.CohortInterval)

	for s := 1; s <= 3; s++ { // what Run does every second
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.AdvanceAt(ctx, clk.t)
	}
	st, _ = c.Status(ctx, "catalog-v2")
	fmt.Println("released", st.Released, "of", st.Rollout.Cohorts)

	// Cohorts 0, 1 and 2 are told; the others wait for their wave.
	for _, client := range []string{"alice", "erin", "grace"} {
		notices, _ := c.Due(ctx, client, 0)
		fmt.Printf("%s (cohort %d): %d notice(s)\n", client, limiter.Cohort("catalog-v2", client, 10), len(notices))
	}
	// Output:
	// running one cohort every 1s
	// released 3 of 10
	// alice (cohort 6): 0 notice(s)
	// erin (cohort 2): 1 notice(s)
	// grace (cohort 1): 1 notice(s)
}

func ExampleCoordinator_AppendDue() {
	ctx := context.Background()
	clk := &clock{t: start}
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.WithClock(clk))
	r := invalidate.Rollout{ID: "prices", Scope: "prefix:/prices/", Cohorts: 4, Rate: 1000, Clients: 100, Coverage: 0.1, Source: "pricing"}
	_, _ = c.Start(ctx, r)
	for s := 1; s <= 4; s++ {
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.AdvanceAt(ctx, clk.t)
	}

	// A request handler: one cheap call per request, reusing a buffer.
	var applied uint64 // what the client said it has applied (e.g. a header)
	buf := make([]invalidate.Notice, 0, 4)
	for range 2 {
		notices, err := c.AppendDue(ctx, buf[:0], "client-7", applied)
		if err != nil {
			panic(err)
		}
		for _, n := range notices {
			fmt.Printf("drop %s (rollout %s)\n", n.Scope, n.RolloutID)
			applied = n.Epoch // the client records the highest epoch applied
		}
		fmt.Println(len(notices), "notices")
	}
	// Output:
	// drop prefix:/prices/ (rollout prices)
	// 1 notices
	// 0 notices
}

func ExampleGuard() {
	ctx := context.Background()
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.WithClock(&clock{t: start}))
	// A server asks every client to drop everything, as fast as possible.
	rogue := invalidate.Rollout{ID: "oops-1", Scope: invalidate.ScopeAll, Cohorts: 10, Rate: 1e9, Source: "app-17"}
	st, _ := c.Start(ctx, rogue)
	fmt.Println("guarded:", st.Guarded, "at least", st.MinDuration)

	for i := 2; ; i++ {
		rogue.ID = fmt.Sprintf("oops-%d", i)
		if _, err := c.Start(ctx, rogue); err != nil {
			var refused *invalidate.StartRefusedError
			fmt.Println(errors.As(err, &refused), refused.Source, refused.RetryAfter)
			break
		}
	}
	// Output:
	// guarded: true at least 10m0s
	// true app-17 3m20s
}

func ExampleCoordinator_Abort() {
	ctx := context.Background()
	clk := &clock{t: start}
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.WithClock(clk))
	_, _ = c.Start(ctx, invalidate.Rollout{ID: "bad-file", Scope: "page:home", Cohorts: 100, Rate: 10,
		Clients: 10000, Coverage: 0.3, Source: "cms"})
	for s := 1; s <= 30; s++ {
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.AdvanceAt(ctx, clk.t)
	}
	_ = c.Abort(ctx, "bad-file") // fleet-wide, effective at once in the store
	for s := 31; s <= 60; s++ {
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.AdvanceAt(ctx, clk.t)
	}
	st, _ := c.Status(ctx, "bad-file")
	fmt.Println(st.Phase, st.Released, "of", st.Rollout.Cohorts, "cohorts were told")
	// Output:
	// aborted 3 of 100 cohorts were told
}
