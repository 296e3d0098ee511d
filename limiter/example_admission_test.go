package limiter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

func ExampleNewAdmission() {
	// A gate of 2 new sessions per second, 1 at once. Four clients
	// reconnect at the same instant.
	gate, err := limiter.NewAdmission(limiter.PerSecond(2, 1))
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	retryAt := map[string]time.Time{}
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		d, _ := gate.AdmitAt(ctx, id, t0, "")
		fmt.Printf("%s: admitted=%v booked=%v retry-after=%v (header %ds)\n", id, d.Admitted, d.Booked, d.RetryAfter, d.RetryAfterSeconds())
		retryAt[id] = d.RetryAt
	}
	// Slots are 500 ms apart (the limit's interval); each client is told
	// its slot plus a jitter inside the interval. Each comes back when
	// told, and is let in: a booked slot is a promise.
	for _, id := range []string{"bob", "carol", "dave"} {
		d, _ := gate.AdmitAt(ctx, id, retryAt[id], "")
		fmt.Printf("%s at +%v: admitted=%v\n", id, retryAt[id].Sub(t0), d.Admitted)
	}
	// Output:
	// alice: admitted=true booked=false retry-after=0s (header 0s)
	// bob: admitted=false booked=true retry-after=864ms (header 1s)
	// carol: admitted=false booked=true retry-after=1.23s (header 2s)
	// dave: admitted=false booked=true retry-after=1.572s (header 2s)
	// bob at +864ms: admitted=true
	// carol at +1.23s: admitted=true
	// dave at +1.572s: admitted=true
}

func ExampleWithResume() {
	key := []byte("a 32-byte key from your secrets!") // e.g. 32 bytes from crypto/rand
	signer, err := limiter.NewResumeSigner(key)
	if err != nil {
		panic(err)
	}
	gate, _ := limiter.NewAdmission(limiter.PerSecond(1, 1), limiter.WithResume(signer, 10*time.Minute))
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d, _ := gate.AdmitAt(ctx, "10.1.2.3", t0, "")
	fmt.Println("first:", d.Admitted, d.Resumed, len(d.ResumeToken))
	// The connection drops; the client reconnects at once with its token.
	// The budget is spent, but a resumed session does not need it.
	d, _ = gate.AdmitAt(ctx, "10.1.2.3", t0.Add(time.Millisecond), d.ResumeToken)
	fmt.Println("resumed:", d.Admitted, d.Resumed)
	// A token is bound to its client.
	d, _ = gate.AdmitAt(ctx, "10.9.9.9", t0.Add(time.Millisecond), d.ResumeToken)
	fmt.Println("stolen:", d.Admitted, d.Resumed, d.Booked)
	// Output:
	// first: true false 34
	// resumed: true true
	// stolen: false false true
}

func ExampleResumeSigner() {
	// Rotation: the new key signs, the old one is still accepted.
	oldKey := []byte("the old key, at least 16 bytes")
	newKey := []byte("the new key, at least 16 bytes")
	before, _ := limiter.NewResumeSigner(oldKey)
	during, _ := limiter.NewResumeSigner(newKey, oldKey)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok, _ := before.IssueAt("session-42", t0, time.Hour)
	fmt.Println(len(tok), during.VerifyAt("session-42", tok, t0.Add(time.Minute)))
	fmt.Println(during.VerifyAt("session-43", tok, t0))
	fmt.Println(during.VerifyAt("session-42", tok, t0.Add(2*time.Hour)))
	// Output:
	// 34 <nil>
	// limiter: invalid resume token: bad signature, or issued to another client
	// limiter: invalid resume token: expired
}

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
