package simulate_test

import (
	"context"
	"fmt"

	"github.com/herdcap/herdcap/simulate"
)

// A scenario file replayed both ways: the rogue node's "invalidate
// everything" fails most of the unprotected fleet's requests; the
// protected fleet rolls it out within its budgets.
func Example() {
	sc, err := simulate.ParseScenario([]byte(`{
		"name": "rogue",
		"clients": 5000,
		"origin": { "capacity": 5 },
		"protection": { "origin_budget": 4, "rollout_rate": 10 },
		"trigger": { "kind": "rogue-invalidate", "at": "2m" },
		"bounds": [
			{ "run": "protected", "metric": "peak_over_budget", "max": 1.1 },
			{ "run": "protected", "metric": "storm_failed_share", "max": 0.01 },
			{ "run": "unprotected", "metric": "storm_failed_share", "min": 0.2 }
		]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := simulate.Compare(context.Background(), sc, simulate.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("unprotected: %.0f%% of requests failed during the storm\n", 100*c.Unprotected.StormFailedShare)
	fmt.Println("protected collapsed:", c.Protected.Collapsed, "converged:", c.Protected.Converged)
	fmt.Println("bounds hold:", c.Pass)
	// Output:
	// unprotected: 83% of requests failed during the storm
	// protected collapsed: false converged: true
	// bounds hold: true
}

// Bad input names the field.
func ExampleParseScenario() {
	_, err := simulate.ParseScenario([]byte(`{"name":"x","clients":10,"origin":{"capacity":1},
		"trigger":{"kind":"reconnect-storm","share":1.5}}`))
	fmt.Println(err)
	// Output:
	// simulate: invalid scenario: scenario.trigger.share: must be in (0,1], got 1.5
}

// A protection paced by the origin's headroom needs no knowledge of the
// origin's capacity: its defaults come from the budget an operator would
// have set, which then only caps (here 3 × the capacity).
func ExampleHeadroomSpec() {
	sc, err := simulate.ParseScenario([]byte(`{
		"name": "paced",
		"clients": 5000,
		"origin": { "capacity": 5 },
		"client": { "reconnect_on_invalidate": true },
		"protection": { "origin_budget": 15, "headroom": {} },
		"trigger": { "kind": "incident" }
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sc.Protection.Headroom
	fmt.Printf("floor %g, ceiling %g, initial %g, interval %v, tolerance %g\n", h.Floor, h.Ceiling, h.Initial, h.Interval.D(), h.Tolerance)
	fmt.Println("calls per told client:", sc.Protection.CallsPerClient)
	// Output:
	// floor 0.3, ceiling 30, initial 15, interval 1s, tolerance 0.5
	// calls per told client: 2
}
