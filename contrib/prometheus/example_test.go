package prometheus_test

import (
	"context"
	"fmt"

	prom "github.com/prometheus/client_golang/prometheus"

	herdprom "github.com/herdcap/herdcap/contrib/prometheus"
	"github.com/herdcap/herdcap/limiter"
)

// New registers the metrics on a registry of the caller's; each component
// then takes the returned hooks in its Config.Observe.
func ExampleNew() {
	reg := prom.NewRegistry()
	hooks, err := herdprom.New(reg)
	if err != nil {
		panic(err)
	}
	b, _ := limiter.NewLocal(limiter.PerMinute(10, 1), limiter.Config{Name: "login", Observe: hooks})
	for range 3 {
		_, _ = b.AllowN(context.Background(), "user:42", 1)
	}
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() != herdprom.Decisions {
			continue
		}
		for _, m := range f.GetMetric() {
			fmt.Print(f.GetName(), "{")
			for i, l := range m.GetLabel() {
				if i > 0 {
					fmt.Print(",")
				}
				fmt.Printf("%s=%q", l.GetName(), l.GetValue())
			}
			fmt.Println("}", m.GetCounter().GetValue())
		}
	}
	// Output:
	// herdcap_decisions_total{outcome="allowed",policy="login",source="local"} 1
	// herdcap_decisions_total{outcome="denied",policy="login",source="local"} 2
}
