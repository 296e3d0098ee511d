package serverside

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// FlightEnd is how a coalesced flight ended for its waiters.
type FlightEnd uint8

const (
	// Shared: the leader's response is in the flight; replay it.
	Shared FlightEnd = iota + 1
	// Declined: the leader's response cannot be shared (too large, or
	// private to the leader's client); each waiter runs the handler itself.
	Declined
	// Panicked: the leader's handler panicked; each waiter answers with an
	// internal error.
	Panicked
)

// CoalesceBounds are the bounds both transports' Coalesce share. Zero
// fields are the defaults.
type CoalesceBounds struct {
	// Timeout bounds the leader's handler, which runs detached from its
	// own caller's cancellation. 0: 10 s.
	Timeout time.Duration
	// MaxKeys is the most keys in flight at once. 0: 10,000.
	MaxKeys int
	// MaxWaiters is the most waiters per key. 0: 1,000.
	MaxWaiters int
}

// Defaults of CoalesceBounds' zero fields.
const (
	defaultCoalesceTimeout    = 10 * time.Second
	defaultCoalesceMaxKeys    = 10000
	defaultCoalesceMaxWaiters = 1000
)

// Resolve validates b, naming a bad field after path (e.g.
// "httpmw.CoalesceConfig"), and returns it with its defaults filled in.
// The error names the field; a transport wraps it in its own
// ErrInvalidConfig.
func (b CoalesceBounds) Resolve(path string) (CoalesceBounds, error) {
	switch {
	case b.Timeout < 0:
		return b, fmt.Errorf("%s.Timeout must be >= 0, got %v", path, b.Timeout)
	case b.MaxKeys < 0:
		return b, fmt.Errorf("%s.MaxKeys must be >= 0, got %d", path, b.MaxKeys)
	case b.MaxWaiters < 0:
		return b, fmt.Errorf("%s.MaxWaiters must be >= 0, got %d", path, b.MaxWaiters)
	}
	if b.Timeout == 0 {
		b.Timeout = defaultCoalesceTimeout
	}
	if b.MaxKeys == 0 {
		b.MaxKeys = defaultCoalesceMaxKeys
	}
	if b.MaxWaiters == 0 {
		b.MaxWaiters = defaultCoalesceMaxWaiters
	}
	return b, nil
}

// Coalescer is the one server-side decision of request coalescing: which
// request of those with one key leads (runs the handler), which wait for
// its response, and which run on their own because a bound is reached.
//
// It does not run anything itself: the leader runs the handler on its own
// goroutine (so a panic propagates as the transport expects, and a
// response too large to share can still stream to the leader's client),
// detached from its caller's cancellation by Detach, and ends the flight
// with Finish. warmup/fill's Group, by contrast, runs a fill on a
// goroutine of its own, caches its value and fails past its bound; a
// request past a bound here is simply served uncoalesced.
//
// A Coalescer is safe for concurrent use; no user code runs under its
// lock.
type Coalescer[T any] struct {
	b CoalesceBounds

	mu      sync.Mutex // guards flights and each flight's waiters and ended
	flights map[string]*Flight[T]
}

// Flight is one key's request in flight. Its result is written before done
// is closed and read only after.
type Flight[T any] struct {
	key     string
	done    chan struct{}
	waiters int
	ended   bool
	result  T
	outcome FlightEnd
}

// NewCoalescer returns a Coalescer within the resolved bounds b.
func NewCoalescer[T any](b CoalesceBounds) *Coalescer[T] {
	return &Coalescer[T]{b: b, flights: make(map[string]*Flight[T])}
}

// Timeout is the leader's bound (CoalesceBounds.Timeout).
func (c *Coalescer[T]) Timeout() time.Duration { return c.b.Timeout }

// Join returns key's flight and whether the caller leads it (and must end
// it with Finish, whatever happens). A nil flight means a bound is
// reached: serve the request uncoalesced. The caller may reuse key's
// storage once Join returns; joining a flight allocates nothing.
func (c *Coalescer[T]) Join(key []byte) (f *Flight[T], leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[string(key)]; ok {
		if f.waiters >= c.b.MaxWaiters {
			return nil, false
		}
		f.waiters++
		return f, false
	}
	if len(c.flights) >= c.b.MaxKeys {
		return nil, false
	}
	f = &Flight[T]{key: string(key), done: make(chan struct{})}
	c.flights[f.key] = f
	return f, true
}

// Finish ends the flight f with the leader's result and wakes its
// waiters; a later request of its key starts a new flight. Only the first
// call for a flight counts.
func (c *Coalescer[T]) Finish(f *Flight[T], result T, o FlightEnd) {
	c.mu.Lock()
	if f.ended {
		c.mu.Unlock()
		return
	}
	f.ended = true
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	c.mu.Unlock()
	f.result, f.outcome = result, o
	close(f.done)
}

// InFlight returns the number of keys in flight and of the requests
// waiting on their leaders.
func (c *Coalescer[T]) InFlight() (keys, waiters int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.flights {
		waiters += f.waiters
	}
	return len(c.flights), waiters
}

// Wait waits for the flight to end and returns the leader's result, or
// ctx's error if it ends first (the flight goes on for the others).
func (f *Flight[T]) Wait(ctx context.Context) (T, FlightEnd, error) {
	select {
	case <-f.done:
		return f.result, f.outcome, nil
	case <-ctx.Done():
		var zero T
		return zero, 0, ctx.Err()
	}
}

// Detach returns the context a leader runs the handler on: ctx's values
// without its cancellation, bounded by timeout, so that the leader's
// caller going away does not fail the waiters.
func Detach(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}
