package admission_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// clock is a Clock that moves only when told to. A memory gate sets no
// timers.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time                                { return c.t }
func (c *clock) AfterFunc(time.Duration, func()) limiter.Timer { panic("no timers here") }

func ExampleNew() {
	// A gate of 2 new sessions per second, 1 at once. Four clients
	// reconnect at the same instant.
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	gate, err := admission.New(limiter.PerSecond(2, 1), admission.Config{Config: limiter.Config{Clock: clk}})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	ctx := context.Background()
	t0 := clk.t
	retryAt := map[string]time.Time{}
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		d, _ := gate.Admit(ctx, id, "")
		fmt.Printf("%s: admitted=%v booked=%v retry-after=%v\n", id, d.Admitted, d.Booked, d.RetryAfter)
		retryAt[id] = d.RetryAt
	}
	// Slots are 500 ms apart (the limit's interval); each client is told
	// its slot plus a jitter inside the interval. Each comes back when
	// told, and is let in: a booked slot is a promise.
	for _, id := range []string{"bob", "carol", "dave"} {
		clk.t = retryAt[id]
		d, _ := gate.Admit(ctx, id, "")
		fmt.Printf("%s at +%v: admitted=%v\n", id, retryAt[id].Sub(t0), d.Admitted)
	}
	// Output:
	// alice: admitted=true booked=false retry-after=0s
	// bob: admitted=false booked=true retry-after=864ms
	// carol: admitted=false booked=true retry-after=1.23s
	// dave: admitted=false booked=true retry-after=1.572s
	// bob at +864ms: admitted=true
	// carol at +1.23s: admitted=true
	// dave at +1.572s: admitted=true
}

func ExampleConfig_tickets() {
	// The same key on every node, e.g. 32 bytes from crypto/rand kept in
	// your secret store. To rotate, put a new key first and keep the old
	// one until its tickets have expired.
	key := []byte("a 32-byte key from your secrets!")
	gate, _ := admission.New(limiter.PerSecond(1, 1), admission.Config{TicketKeys: [][]byte{key}, TicketTTL: 10 * time.Minute})
	ctx := context.Background()
	d, _ := gate.Admit(ctx, "10.1.2.3", "")
	fmt.Println("first:", d.Admitted, d.Rejoined, len(d.Ticket))
	// The connection drops; the client reconnects at once with its ticket.
	// The budget is spent, but a rejoining session does not need it.
	d, _ = gate.Admit(ctx, "10.1.2.3", d.Ticket)
	fmt.Println("rejoined:", d.Admitted, d.Rejoined)
	// A ticket is bound to its client.
	d, _ = gate.Admit(ctx, "10.9.9.9", d.Ticket)
	fmt.Println("stolen:", d.Admitted, d.Rejoined, d.Booked)
	// Output:
	// first: true false 34
	// rejoined: true true
	// stolen: false false true
}

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

func ExampleNewShared() {
	addr, stop := hangUpServer()
	defer stop()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()

	// 500 new sessions per second across the fleet, 50 at once. This
	// Redis hangs up: under FailClosed the gate refuses with
	// ErrUnavailable, and tells the client to come back once the breaker
	// lets a probe through (here after 1 s; spread over 1 to 2 s).
	gate, err := admission.NewShared(fleet.Redis{Client: c}, limiter.PerSecond(500, 50),
		admission.SharedConfig{Failure: fleet.FailClosed})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	d, err := gate.Admit(context.Background(), "client-42", "")
	fmt.Println(d.Admitted, d.Via, d.RetryAfter >= time.Second && d.RetryAfter <= 2*time.Second, err != nil)
	// Output:
	// false fallback true true
}

// spareCalls is a limiter.Headroom for the example: in production,
// headroom.Origin reports the origin calls per second its foreground
// traffic leaves unused.
type spareCalls float64

func (s *spareCalls) Spare() float64 { return float64(*s) }

func ExampleConfig_headroom() {
	// A gate of 1,000 sessions per second, on an origin that has 400 spare
	// calls per second; a new session makes 4 origin calls.
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	spare := spareCalls(400)
	gate, err := admission.New(limiter.PerSecond(1000, 10), admission.Config{Config: limiter.Config{Clock: clk},
		Headroom: &spare, CallsPerSession: 4})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	ctx := context.Background()
	d, _ := gate.Admit(ctx, "alice", "")
	fmt.Println("limit applied:", d.Limit, "configured:", gate.Limit())

	// The spare rises far above the gate's limit; a reading is at most
	// 100 ms old, and the gate never goes above its own limit.
	spare = 1e9
	clk.t = clk.t.Add(100 * time.Millisecond)
	d, _ = gate.Admit(ctx, "bob", "")
	fmt.Println("limit applied:", d.Limit)
	// Output:
	// limit applied: 100/1s burst 1 configured: 1000/1s burst 10
	// limit applied: 1000/1s burst 10
}
