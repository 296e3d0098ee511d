package fleet_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// hangUpServer listens on a loopback port and hangs up on every connection:
// every command sent there fails at once, as with a Redis that has just
// died. stop closes it.
func hangUpServer() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), func() { _ = ln.Close(); <-done }
}

// exampleClient returns a go-redis client as herdcap needs it: with
// ContextTimeoutEnabled, so that Redis.Timeout holds.
func exampleClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DisableIdentity:       true,
	})
}

// fixed is a clock that stands still, for examples whose output must not
// depend on how long the machine takes; its timers run in real time.
type fixed struct{ t time.Time }

func (c fixed) Now() time.Time                                  { return c.t }
func (fixed) AfterFunc(d time.Duration, f func()) limiter.Timer { return time.AfterFunc(d, f) }

func ExampleNewStrict() {
	addr, stop := hangUpServer()
	defer stop()
	c := exampleClient(addr)
	defer c.Close()

	// A limit that cannot work is refused at construction, naming the field.
	_, err := fleet.NewStrict(fleet.Redis{Client: c}, limiter.Limit{Rate: 0, Burst: 3}, fleet.Config{})
	fmt.Println(err)

	// 10 tokens per second, at most 3 at once, per key, shared by every
	// node on the Redis. This Redis hangs up: the failure policy answers
	// (FailLocal, the default: this node's share of the limit, here all of
	// it, since no other node is known to be live).
	// The two refused are told successive times, so that they do not
	// come back together. (The clock stands still here, for a fixed
	// output; leave Clock out in production.)
	clk := fixed{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, err := fleet.NewStrict(fleet.Redis{Client: c, Name: "api"}, limiter.PerSecond(10, 3),
		fleet.Config{Config: limiter.Config{Clock: clk}})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	for range 5 {
		d, err := b.AllowN(context.Background(), "client-42", 1)
		fmt.Println(d.Allowed, d.Remaining, d.RetryAfter, d.Via, err)
	}
	// Output:
	// limiter: invalid limit: Limit.Rate must be > 0, got 0
	// true 2 0s fallback <nil>
	// true 1 0s fallback <nil>
	// true 0 0s fallback <nil>
	// false 0 100ms fallback <nil>
	// false 0 200ms fallback <nil>
}

func ExampleStrict_Take() {
	addr, stop := hangUpServer()
	defer stop()
	c := exampleClient(addr)
	defer c.Close()

	// A limit per plan: each request carries its key's. Redis is away
	// here, so this node's share (all of it: no other node is live)
	// answers, under the plan's limit.
	b, err := fleet.NewStrict(fleet.Redis{Client: c}, limiter.PerSecond(1, 1), fleet.Config{})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	pro := limiter.PerMinute(600, 20)
	d, err := b.Take(context.Background(), limiter.Request{Key: "acme", N: 15, Limit: pro})
	fmt.Println(d.Allowed, d.Taken, d.Limit, d.Via, err)
	// Output:
	// true 15 600/1m0s burst 20 fallback <nil>
}

func ExampleNewLeased() {
	addr, stop := hangUpServer()
	defer stop()
	c := exampleClient(addr)
	defer c.Close()

	// A lease may not exceed the burst: the error names the field.
	_, err := fleet.NewLeased(fleet.Redis{Client: c}, limiter.PerSecond(100, 10), fleet.LeasedConfig{MaxLease: 20})
	fmt.Println(err)

	// Leases of up to 5 tokens, about 50 ms of demand; while Redis cannot
	// be reached, fail open.
	b, err := fleet.NewLeased(fleet.Redis{Client: c}, limiter.PerSecond(100, 10), fleet.LeasedConfig{
		Config:     fleet.Config{Failure: fleet.FailOpen},
		LeaseAhead: 50 * time.Millisecond,
		MaxLease:   5,
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	for range 2 {
		d, err := b.AllowN(context.Background(), "client-42", 1)
		fmt.Println(d.Allowed, d.Via, err)
	}
	// Output:
	// limiter: invalid config: LeasedConfig.MaxLease 20 exceeds the burst 10
	// true fallback <nil>
	// true fallback <nil>
}
