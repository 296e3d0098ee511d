package limiter_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// Example_fleetBudget is the README's budget on a shared Redis. It is
// compiled, not run: it needs a Redis at the address it names.
func Example_fleetBudget() {
	// 100 requests per second per key, bursts of 200, exact across the fleet.
	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", ContextTimeoutEnabled: true})
	b, err := fleet.NewStrict(fleet.Redis{
		Client:  rdb,
		Name:    "api",                 // buckets shared by every node using this name
		Timeout: 20 * time.Millisecond, // the most a decision may wait on Redis (default)
	}, limiter.PerSecond(100, 200), fleet.Config{
		Config:  limiter.Config{Ramp: time.Minute}, // SetLimit moves over a minute (default 10 s), never in one jump
		Failure: fleet.FailLocal,                   // Redis down: this node's share of the limit (default)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	d, err := b.AllowN(context.Background(), "client-42", 1)
	if err != nil {
		log.Fatal(err) // ErrUnavailable under FailClosed, a canceled context, ...
	}
	fmt.Println(d.Allowed, d.Remaining, d.RetryAfter, d.ResetAfter, d.Limit, d.Via) // Via: local, redis, lease or fallback
}

// Example_admissionGate is the README's reconnect admission on a shared
// Redis. It is compiled, not run: it needs a Redis at the address it names.
func Example_admissionGate() {
	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", ContextTimeoutEnabled: true})
	key := make([]byte, 32) // the same secret on every node, e.g. from your secret store
	_, _ = rand.Read(key)
	// 500 new sessions per second across the fleet, 50 at once.
	gate, err := admission.NewShared(fleet.Redis{Client: rdb}, limiter.PerSecond(500, 50),
		admission.SharedConfig{Config: admission.Config{TicketKeys: [][]byte{key}, TicketTTL: 10 * time.Minute}})
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	a, err := gate.Admit(context.Background(), "client-42", "" /* the ticket the client sent, if any */)
	if err != nil {
		log.Fatal(err)
	}
	if a.Admitted {
		fmt.Println("in; next time send", a.Ticket)
	} else {
		fmt.Println("come back in", a.RetryAfter) // a booked slot, not a guess
	}
	fmt.Println("cohort", limiter.Cohort("incident-7", "client-42", 10)) // sticky, salted per event
}
