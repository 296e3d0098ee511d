package retry_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/herdcap/herdcap/limiter/retry"
)

func ExampleBackoff() {
	// A seeded Rand makes the delays deterministic (a simulation, a test).
	b := retry.Backoff{Base: 100 * time.Millisecond, Cap: time.Second, Rand: rand.New(rand.NewPCG(1, 2)).Float64}
	for attempt := range 5 {
		fmt.Printf("retry %d: window %v, wait %v\n", attempt, b.Window(attempt), b.Delay(attempt).Round(time.Millisecond))
	}
	// An exact slot 864 ms away: at most 5 ms late. A coarse Retry-After
	// of 2 s: up to 10% late.
	fmt.Println("slot:", b.DelaySlot(0, 864*time.Millisecond).Round(time.Millisecond))
	fmt.Println("hint:", b.DelayHint(0, 2*time.Second).Round(time.Millisecond))
	// Output:
	// retry 0: window 100ms, wait 68ms
	// retry 1: window 200ms, wait 92ms
	// retry 2: window 400ms, wait 203ms
	// retry 3: window 800ms, wait 344ms
	// retry 4: window 1s, wait 798ms
	// slot: 866ms
	// hint: 2.164s
}

func ExampleBudget() {
	// gRPC's retryThrottling values: 10 tokens, 0.1 back per success.
	b, err := retry.NewBudget(10, 0.1)
	if err != nil {
		fmt.Println(err)
		return
	}
	// An outage: every attempt fails. Retries stop once half the tokens
	// are gone.
	for i := 1; i <= 6; i++ {
		fmt.Printf("failure %d: retry %v, %.1f tokens left\n", i, b.RecordFailure(), b.Tokens())
	}
	// Recovery: 51 successes bring back more than half.
	for range 51 {
		b.RecordSuccess()
	}
	fmt.Printf("after 51 successes: retry %v, %.1f tokens\n", b.Allow(), b.Tokens())
	// Output:
	// failure 1: retry true, 9.0 tokens left
	// failure 2: retry true, 8.0 tokens left
	// failure 3: retry true, 7.0 tokens left
	// failure 4: retry true, 6.0 tokens left
	// failure 5: retry false, 5.0 tokens left
	// failure 6: retry false, 4.0 tokens left
	// after 51 successes: retry true, 9.1 tokens
}

func ExamplePolicy() {
	// At most 3 attempts and 5 s of waiting per call, windows from 50 ms;
	// every other field takes its default (a retry budget per client).
	p := retry.Policy{MaxAttempts: 3, MaxWait: 5 * time.Second, Backoff: retry.Backoff{Base: 50 * time.Millisecond}}
	fmt.Println(p.Validate())

	p.Backoff.Cap = time.Millisecond
	fmt.Println(p.Validate())
	// Output:
	// <nil>
	// retry: invalid config: Policy.Backoff.Cap (1ms) must be >= Policy.Backoff.Base (50ms)
}
