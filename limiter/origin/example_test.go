package origin_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// A guard in front of a database: 100 calls a second, each held up to
// 200 ms for its token, and refused with when to come back beyond that.
func Example() {
	budget, err := limiter.NewLocal(limiter.PerSecond(100, 1), limiter.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer budget.Close()
	g, err := origin.New(origin.Config{Budget: budget, Name: "orders-db", MaxWait: 200 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var served, refused int
	for range 30 {
		err := g.Do(ctx, origin.Foreground, func(ctx context.Context) error {
			return nil // the query, with ctx
		})
		var re *origin.RefusedError
		switch {
		case err == nil:
			served++
		case errors.As(err, &re):
			refused++ // answer 503 with Retry-After: re.RetryAfter
		}
	}
	fmt.Println("served:", served, "refused:", refused)
	// Output:
	// served: 30 refused: 0
}

// Background work (a warm-up) goes only while the budget keeps half its
// burst, so a burst of user calls behind it still finds its tokens at once.
// (A token every 10 s here, so that the run's own time adds none.)
func ExampleLane() {
	budget, err := limiter.NewLocal(limiter.PerSecond(0.1, 10), limiter.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer budget.Close()
	g, err := origin.New(origin.Config{Budget: budget, Name: "orders-db"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	warmed := 0
	for range 100 {
		if g.Do(ctx, origin.Background, func(context.Context) error { return nil }) != nil {
			break // refused: come back after its RetryAfter
		}
		warmed++
	}
	served := 0
	for range 5 {
		h, err := g.Reserve(ctx, time.Time{}, origin.Foreground)
		if err == nil && h.Allowed && h.Wait == 0 {
			served++
		}
		h.Record(nil, time.Millisecond)
	}
	fmt.Println("warmed:", warmed, "served at once:", served)
	// Output:
	// warmed: 5 served at once: 5
}
