package limiter_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/limiter"
)

// Example_fleetBudget is the README's budget on a shared Redis. It is
// compiled, not run: it needs a Redis at the address it names.
func Example_fleetBudget() {
	// 100 requests per second per key, bursts of 200, exact across the fleet.
	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", ContextTimeoutEnabled: true})
	b, err := limiter.NewRedis(rdb, limiter.PerSecond(100, 200),
		limiter.WithName("api"),                  // buckets shared by every node using this name
		limiter.WithTimeout(20*time.Millisecond), // the most a decision may wait on Redis (default)
		limiter.WithFailure(limiter.FailLocal),   // Redis down: this node's share of the limit (default)
		limiter.WithRamp(time.Minute))            // SetLimit moves over a minute (default 10 s), never in one jump
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	d, err := b.AllowN(context.Background(), "client-42", 1)
	if err != nil {
		log.Fatal(err) // ErrUnavailable under FailClosed, a canceled context, ...
	}
	fmt.Println(d.Allowed, d.Remaining, d.RetryAfter, d.ResetAfter, d.Limit, d.Source) // Source: local, redis, lease or fallback
}

// Example_admissionGate is the README's reconnect admission on a shared
// Redis. It is compiled, not run: it needs a Redis at the address it names.
func Example_admissionGate() {
	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", ContextTimeoutEnabled: true})
	key := make([]byte, 32) // the same secret on every node, e.g. from your secret store
	_, _ = rand.Read(key)
	signer, err := limiter.NewResumeSigner(key)
	if err != nil {
		log.Fatal(err)
	}
	// 500 new sessions per second across the fleet, 50 at once.
	gate, err := limiter.NewRedisAdmission(rdb, limiter.PerSecond(500, 50),
		limiter.WithResume(signer, 10*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	a, err := gate.Admit(context.Background(), "client-42", "" /* the resume token the client sent, if any */)
	if err != nil {
		log.Fatal(err)
	}
	if a.Admitted {
		fmt.Println("in; next time send", a.ResumeToken)
	} else {
		fmt.Println("come back in", a.RetryAfter) // a booked slot, not a guess
	}
	fmt.Println("cohort", limiter.Cohort("incident-7", "client-42", 10)) // sticky, salted per event
}
