package limiter_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/limiter"
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
// ContextTimeoutEnabled, so that the time budget (WithTimeout) holds.
func exampleClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DisableIdentity:       true,
	})
}

func ExampleNewRedis() {
	addr, stop := hangUpServer()
	defer stop()
	c := exampleClient(addr)
	defer c.Close()

	// A limit that cannot work is refused at construction, naming the field.
	_, err := limiter.NewRedis(c, limiter.Limit{Rate: 0, Burst: 3})
	fmt.Println(err)

	// 10 tokens per second, at most 3 at once, per key, shared by every
	// node on the Redis. This Redis hangs up: the failure policy answers
	// (FailLocal, the default: this node's share of the limit, here all of
	// it, since no other node is known to be live).
	b, err := limiter.NewRedis(c, limiter.PerSecond(10, 3))
	if err != nil {
		panic(err)
	}
	defer b.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 4 {
		d, err := b.AllowNAt(context.Background(), "client-42", t0, 1)
		fmt.Println(d.Allowed, d.Remaining, d.RetryAfter, d.Source, err)
	}
	// Output:
	// limiter: invalid limit: Limit.Rate must be > 0, got 0
	// true 2 0s fallback <nil>
	// true 1 0s fallback <nil>
	// true 0 0s fallback <nil>
	// false 0 100ms fallback <nil>
}

func ExampleNewLeased() {
	addr, stop := hangUpServer()
	defer stop()
	c := exampleClient(addr)
	defer c.Close()

	// A lease may not exceed the burst: the error names the option.
	_, err := limiter.NewLeased(c, limiter.PerSecond(100, 10), limiter.WithLease(time.Second, 20))
	fmt.Println(err)

	// Leases of up to 5 tokens, about 50 ms of demand; while Redis cannot
	// be reached, fail open.
	b, err := limiter.NewLeased(c, limiter.PerSecond(100, 10),
		limiter.WithLease(50*time.Millisecond, 5), limiter.WithFailure(limiter.FailOpen))
	if err != nil {
		panic(err)
	}
	defer b.Close()
	for range 2 {
		d, err := b.AllowN(context.Background(), "client-42", 1)
		fmt.Println(d.Allowed, d.Source, err)
	}
	// Output:
	// limiter: invalid option: WithLease: maxSize 20 exceeds the burst 10
	// true fallback <nil>
	// true fallback <nil>
}
