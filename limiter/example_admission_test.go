package limiter_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

func ExampleBackoff() {
	// Seeded, so the example's output is fixed; leave the source out in
	// production.
	b, _ := limiter.NewBackoff(100*time.Millisecond, 2*time.Second,
		limiter.WithBackoffRand(rand.New(rand.NewPCG(1, 2))))
	for attempt := range 6 {
		fmt.Printf("attempt %d: window %v, sleep %v\n", attempt, b.Window(attempt), b.Delay(attempt).Round(time.Millisecond))
	}
	// The server said Retry-After: 3 (or pushback 3000 ms): never sooner.
	fmt.Println("hinted:", b.DelayHint(6, 3*time.Second).Round(time.Millisecond))
	// Output:
	// attempt 0: window 100ms, sleep 68ms
	// attempt 1: window 200ms, sleep 92ms
	// attempt 2: window 400ms, sleep 203ms
	// attempt 3: window 800ms, sleep 344ms
	// attempt 4: window 1.6s, sleep 1.276s
	// attempt 5: window 2s, sleep 777ms
	// hinted: 3.246s
}

func ExampleBackoff_DelaySlot() {
	b, _ := limiter.NewBackoff(100*time.Millisecond, 2*time.Second,
		limiter.WithBackoffRand(rand.New(rand.NewPCG(1, 2))))
	// An admission booked the client a slot 19.4 s away (gRPC pushback, or
	// httpmw's Herdcap-Retry-After-Ms): the slots are already spread at the
	// gate's rate, so the client comes back at its slot, less than 5 ms
	// late. A coarse hint of the same size gets up to a second more.
	slot := 19400 * time.Millisecond
	for range 3 {
		fmt.Printf("slot: %v, coarse hint: %v\n",
			b.DelaySlot(0, slot).Round(100*time.Microsecond), b.DelayHint(0, slot).Round(time.Millisecond))
	}
	// Output:
	// slot: 19.4034s, coarse hint: 19.861s
	// slot: 19.4025s, coarse hint: 19.83s
	// slot: 19.404s, coarse hint: 19.788s
}

func ExampleRetryBudget() {
	// gRPC's retryThrottling defaults in a service config: 10 tokens, 0.1
	// back per success.
	rb, _ := limiter.NewRetryBudget(10, 0.1)
	retries := 0
	for range 1000 { // an outage: every attempt fails
		if rb.RecordFailure() {
			retries++
		}
	}
	fmt.Println("retries during the outage:", retries, "tokens:", rb.Tokens())
	for range 51 { // recovery
		rb.RecordSuccess()
	}
	fmt.Println("retry allowed again:", rb.AllowRetry())
	// Output:
	// retries during the outage: 4 tokens: 0
	// retry allowed again: true
}
