package observe_test

import (
	"context"
	"fmt"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// A budget reports every decision to the Decision hook, named by the
// budget's Config.Name, never by its key.
func Example() {
	denied := map[string]int{}
	hooks := &observe.Hooks{Decision: func(e observe.Decision) {
		if e.Outcome == observe.Denied {
			denied[e.Policy]++
		}
	}}
	b, _ := limiter.NewLocal(limiter.PerMinute(10, 2), limiter.Config{Name: "login", Observe: hooks})
	for range 5 {
		_, _ = b.AllowN(context.Background(), "user:42", 1)
	}
	fmt.Println(denied)
	// Output: map[login:3]
}

// Join feeds several observers from one component: metrics and a log
// line, say. A kind of event no observer wants stays nil, so it stays
// free.
func ExampleJoin() {
	count := 0
	metrics := &observe.Hooks{Decision: func(observe.Decision) { count++ }}
	audit := &observe.Hooks{Rollout: func(e observe.Rollout) { fmt.Println(e.ID, e.Kind, e.Reason) }}
	h := observe.Join(metrics, audit, nil)
	h.Decision(observe.Decision{Policy: "api", Outcome: observe.Allowed})
	h.Rollout(observe.Rollout{Kind: observe.RolloutPaused, ID: "deploy-7", Reason: "orders dipped"})
	fmt.Println(count, h.Breaker == nil)
	// Output:
	// deploy-7 paused orders dipped
	// 1 true
}
