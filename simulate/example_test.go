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
