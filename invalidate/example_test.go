package invalidate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// clock is a clock that moves only when told: examples run in virtual time,
// advancing the coordinator as Run would every second.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// AfterFunc makes clock a limiter.Clock; these examples set no timers (they
// call Advance instead of Run).
func (c *clock) AfterFunc(time.Duration, func()) limiter.Timer { panic("no timers here") }

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ExampleCoordinator() {
	ctx := context.Background()
	clk := &clock{t: start}
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk})
	if err != nil {
		panic(err)
	}
	// Tell 1,000 clients to drop the catalog, 100 per second, in 10 waves.
	st, err := c.Start(ctx, invalidate.Rollout{
		ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 10, Rate: 100,
		Clients: 1000, Coverage: 0.2, By: "deployer",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Phase, "one cohort every", st.CohortInterval)

	for s := 1; s <= 3; s++ { // what Run does every second
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.Advance(ctx)
	}
	st, _ = c.Status(ctx, "catalog-v2")
	fmt.Println("released", st.Released, "of", st.Rollout.Cohorts)

	// Cohorts 0, 1 and 2 are told; the others wait for their wave.
	for _, client := range []string{"alice", "erin", "grace"} {
		notices, _ := c.AppendDue(ctx, nil, client, 0)
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
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk})
	r := invalidate.Rollout{ID: "prices", Scope: "prefix:/prices/", Cohorts: 4, Rate: 1000, Clients: 100, Coverage: 0.1, By: "pricing"}
	_, _ = c.Start(ctx, r)
	for s := 1; s <= 4; s++ {
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.Advance(ctx)
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
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: &clock{t: start}})
	// A server asks every client to drop everything, as fast as possible.
	rogue := invalidate.Rollout{ID: "oops-1", Scope: invalidate.ScopeAll, Cohorts: 10, Rate: 1e9, By: "app-17"}
	st, _ := c.Start(ctx, rogue)
	fmt.Println("guarded:", st.Guarded, "at least", st.MinDuration)

	for i := 2; ; i++ {
		rogue.ID = fmt.Sprintf("oops-%d", i)
		if _, err := c.Start(ctx, rogue); err != nil {
			var refused *invalidate.StartRefusedError
			fmt.Println(errors.As(err, &refused), refused.By, refused.RetryAfter)
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
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk})
	_, _ = c.Start(ctx, invalidate.Rollout{ID: "bad-file", Scope: "page:home", Cohorts: 100, Rate: 10,
		Clients: 10000, Coverage: 0.3, By: "cms"})
	for s := 1; s <= 30; s++ {
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.Advance(ctx)
	}
	_ = c.Abort(ctx, "bad-file", invalidate.By{}) // fleet-wide, effective at once in the store
	for s := 31; s <= 60; s++ {
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.Advance(ctx)
	}
	st, _ := c.Status(ctx, "bad-file")
	fmt.Println(st.Phase, st.Released, "of", st.Rollout.Cohorts, "cohorts were told")
	// Output:
	// aborted 3 of 100 cohorts were told
}

func ExampleHealth() {
	ctx := context.Background()
	clk := &clock{t: start}
	originOK := true // e.g. the origin's error rate and latency are within bounds
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk,
		Health: invalidate.HealthFunc(func(context.Context) bool { return originOK })})
	_, _ = c.Start(ctx, invalidate.Rollout{ID: "catalog-v3", Scope: "tag:catalog", Cohorts: 10, Rate: 100,
		Clients: 1000, Coverage: 0.2, By: "deployer"}) // one cohort a second
	for s := 1; s <= 9; s++ {
		originOK = s < 4 || s > 6 // the refetches hurt the origin at 4 s to 6 s
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.Advance(ctx) // what Run does every second
		st, _ := c.Status(ctx, "catalog-v3")
		fmt.Printf("%ds origin ok=%-5v released %d\n", s, originOK, st.Released)
	}
	// A hold lasts one advance interval past the last bad report, and held
	// time is not progress: the rollout picks up where it stopped.

	// Output:
	// 1s origin ok=true  released 1
	// 2s origin ok=true  released 2
	// 3s origin ok=true  released 3
	// 4s origin ok=false released 3
	// 5s origin ok=false released 3
	// 6s origin ok=false released 3
	// 7s origin ok=true  released 3
	// 8s origin ok=true  released 4
	// 9s origin ok=true  released 5
}

func ExampleCoordinator_Pause() {
	ctx := context.Background()
	clk := &clock{t: start}
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk})
	oncall := invalidate.By{Who: "oncall:alice", Reason: "origin p99 up"} // logged with the action
	_, _ = c.Start(ctx, invalidate.Rollout{ID: "menu", Scope: "page:menu", Cohorts: 10, Rate: 10,
		Clients: 100, Coverage: 0.1, By: "cms"}) // one cohort a second
	tick := func(s int) {
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.Advance(ctx)
	}
	for s := 1; s <= 2; s++ {
		tick(s)
	}
	_ = c.Pause(ctx, "menu", oncall) // fleet-wide: no node releases a cohort until Resume
	for s := 3; s <= 60; s++ {
		tick(s)
	}
	st, _ := c.Status(ctx, "menu")
	fmt.Println(st.Phase, st.Released)
	_ = c.Resume(ctx, "menu", invalidate.By{Who: "oncall:alice"}) // progress counts from now: the pause is not made up for
	tick(61)
	st, _ = c.Status(ctx, "menu")
	fmt.Println(st.Phase, st.Released)
	// Output:
	// paused 2
	// running 3
}

func ExampleBy() {
	ctx := context.Background()
	clk := &clock{t: start}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the example's output stable
			}
			return a
		}}))
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk, Node: "node-1", Logger: log})
	_, _ = c.Start(ctx, invalidate.Rollout{ID: "bad-file", Scope: "page:home", Cohorts: 100, Rate: 100,
		Clients: 10000, Coverage: 0.3, By: "cms"})
	clk.t = start.Add(3 * time.Second)
	_ = c.Advance(ctx)
	// Who asked, and why, goes to the log with the action (the zero By
	// logs this node as who asked).
	if err := c.Abort(ctx, "bad-file", invalidate.By{Who: "oncall:alice", Reason: "wrong page-data file"}); err != nil {
		fmt.Println(err)
	}
	// Output:
	// level=INFO msg="herdcap: invalidation started" id=bad-file scope=page:home epoch=1767225600000 by=cms node=node-1 guarded=false cohorts=100 rate=100 min_duration=0s population=10000 store=memory
	// level=INFO msg="herdcap: invalidation abort" id=bad-file by=oncall:alice node=node-1 reason="wrong page-data file" changed=true phase=aborted released=2 cohorts=100 epoch=1767225600000
}

func ExampleConfig_populationWarmup() {
	ctx := context.Background()
	clk := &clock{t: start}
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk,
		PopulationWarmup: 5 * time.Second,
		Guard:            invalidate.Guard{MinDuration: time.Second}}) // the rate alone paces it
	// The caller does not know how many clients there are (Clients 0).
	st, _ := c.Start(ctx, invalidate.Rollout{ID: "prices", Scope: "prefix:/prices/", Cohorts: 20, Rate: 50,
		Coverage: 0.1, By: "pricing"})
	fmt.Println("guarded:", st.Guarded, "warm-up until", st.HoldUntil.Sub(start))

	for s := 1; s <= 5; s++ {
		clk.t = start.Add(time.Duration(s) * time.Second)
		if s == 1 { // 2,000 clients poll during the warm-up: Due counts them
			for i := range 2000 {
				_, _ = c.AppendDue(ctx, nil, fmt.Sprintf("client-%d", i), 0)
			}
		}
		_ = c.Advance(ctx)
	}
	st, _ = c.Status(ctx, "prices")
	fmt.Println("released during the warm-up:", st.Released)
	fmt.Println("population about", (st.Population+50)/100*100, "so one cohort every", st.CohortInterval.Round(100*time.Millisecond))
	// Output:
	// guarded: true warm-up until 5s
	// released during the warm-up: 0
	// population about 2000 so one cohort every 2s
}

func ExampleRollout_Validate() {
	r := invalidate.Rollout{ID: "x", Scope: "tag:x", Cohorts: 10, Rate: -5, By: "me"}
	fmt.Println(r.Validate())
	// Output:
	// invalidate: invalid rollout: Rollout.Rate must be > 0 clients per second, got -5
}

func ExampleConfig() {
	// Zero fields are defaults; a field out of range is named.
	_, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Retention: time.Millisecond})
	fmt.Println(err)
	fmt.Println(errors.Is(err, invalidate.ErrInvalidConfig))
	// Output:
	// invalidate: invalid config: Config.Retention must be 0 (24h) or at least 1s, got 1ms
	// true
}

// spareCalls is a limiter.Headroom for the examples: in production,
// headroom.Origin reports the origin calls per second its foreground
// traffic leaves unused.
type spareCalls float64

func (s *spareCalls) Spare() float64 { return float64(*s) }

func ExampleConfig_headroom() {
	ctx := context.Background()
	clk := &clock{t: start}
	spare := spareCalls(100) // spare origin calls per second
	c, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk,
		Headroom: &spare, CallsPerClient: 2}) // a told client refetches twice
	_, _ = c.Start(ctx, invalidate.Rollout{ID: "catalog-v4", Scope: "tag:catalog", Cohorts: 10, Rate: 100,
		Clients: 1000, Coverage: 0.2, By: "deployer"}) // one cohort a second at its own rate
	for s := 1; s <= 8; s++ {
		if s == 5 {
			spare = 1e6 // the foreground quietens: the rollout's own rate binds again
		}
		clk.t = start.Add(time.Duration(s) * time.Second)
		_ = c.Advance(ctx) // what Run does every second
		st, _ := c.Status(ctx, "catalog-v4")
		fmt.Printf("%ds spare %-7v released %d\n", s, float64(spare), st.Released)
	}
	// 100 spare calls at 2 calls a client: 50 clients/s, half the rate, a
	// cohort every 2 s; never faster than Rate, however much is spare.

	// Output:
	// 1s spare 100     released 0
	// 2s spare 100     released 1
	// 3s spare 100     released 1
	// 4s spare 100     released 2
	// 5s spare 1e+06   released 3
	// 6s spare 1e+06   released 4
	// 7s spare 1e+06   released 5
	// 8s spare 1e+06   released 6
}
