package slowstart_test

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

// A node starts cold: it admits 10% of its clients, then a growing share,
// and all of them after the one-minute window.
func Example() {
	clock := fakeclock.New(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	g, err := slowstart.New(slowstart.Config{Window: time.Minute, Clock: clock})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, at := range []time.Duration{0, 30 * time.Second, 30 * time.Second} {
		clock.Add(at)
		admitted := 0
		for i := range 1000 {
			if d, _ := g.Admit(ctx, fmt.Sprint("client-", i)); d.Admitted {
				admitted++
			}
		}
		fmt.Printf("share %.2f: about %d00 of 1000 clients admitted\n", g.Share(), (admitted+50)/100)
	}
	// Output:
	// share 0.10: about 100 of 1000 clients admitted
	// share 0.50: about 500 of 1000 clients admitted
	// share 1.00: about 1000 of 1000 clients admitted
}
