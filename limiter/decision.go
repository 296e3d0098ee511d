package limiter

import (
	"context"
	"fmt"
	"time"
)

// Via says which part of herdcap made a Decision.
type Via uint8

const (
	// ViaLocal: an in-process token bucket (Local, or the admission
	// gate's memory store).
	ViaLocal Via = iota + 1
	// ViaRedis: a Lua script on Redis decided, in one round trip.
	ViaRedis
	// ViaLease: tokens leased from Redis earlier and spent in process.
	ViaLease
	// ViaFallback: Redis was unreachable or its breaker open, and the
	// configured failure policy answered.
	ViaFallback
)

// String returns "local", "redis", "lease" or "fallback".
func (v Via) String() string {
	switch v {
	case ViaLocal:
		return "local"
	case ViaRedis:
		return "redis"
	case ViaLease:
		return "lease"
	case ViaFallback:
		return "fallback"
	}
	return "unknown"
}

// Request asks a Budget for tokens. Zero fields take their defaults, so
// Request{Key: k, N: 1} is the common call.
type Request struct {
	// Key names the bucket: one per client, user, route... Required. Any
	// bytes; keys longer than 128 bytes are stored as their SHA-256, so a
	// flood of long keys costs bounded memory.
	Key string
	// N is the number of tokens wanted, from 0 to the limit's burst (more,
	// with UpTo). 0 peeks: the decision reports the bucket and takes
	// nothing.
	N int
	// Limit is this request's limit (per plan, per key, per route), which
	// the key's bucket then refills at. The zero Limit means the budget's
	// own (see SetLimit). When the limit a key's requests carry changes,
	// the key ramps from the old limit to the new one over the budget's
	// Config.Ramp; a key seen for the first time, or idle (its bucket
	// full), starts at its limit, full. A non-zero Limit must be valid
	// (ErrInvalidLimit).
	Limit Limit
	// UpTo takes as many of N tokens as are available, at least one:
	// Decision.Taken says how many. N may then exceed the burst.
	UpTo bool
	// Wait, when > 0, books the tokens ahead if they will be available
	// within Wait: the bucket goes into debt, the decision is Allowed, and
	// its RetryAfter is how long the caller must wait before acting. Later
	// callers queue behind the debt, so reservations of a key are spaced
	// exactly at the limit's rate. Past Wait nothing is taken. Wait cannot
	// be combined with UpTo. On a Leased budget a reservation goes to the
	// shared bucket in one round trip; when Redis cannot answer, the
	// failure policy answers as for a request without Wait.
	Wait time.Duration
}

// Validate reports whether r is a request a budget could decide: a Key, N
// and Wait >= 0, not both UpTo and Wait, and a valid Limit if not zero.
// Whether N fits the limit's burst is for the budget to tell. The error
// wraps ErrInvalidRequest or ErrInvalidLimit and names the field.
func (r Request) Validate() error {
	switch {
	case r.Key == "":
		return fmt.Errorf("%w: Request.Key is empty", ErrInvalidRequest)
	case r.N < 0:
		return fmt.Errorf("%w: Request.N must be >= 0, got %d", ErrInvalidRequest, r.N)
	case r.Wait < 0:
		return fmt.Errorf("%w: Request.Wait must be >= 0, got %v", ErrInvalidRequest, r.Wait)
	case r.Wait > 0 && r.UpTo:
		return fmt.Errorf("%w: Request.UpTo cannot be combined with Request.Wait", ErrInvalidRequest)
	case r.Limit != (Limit{}):
		return r.Limit.check("Request.Limit")
	}
	return nil
}

// Decision is the answer to one Request. It is returned by value: it is
// small, and a value keeps the hot path free of allocations.
type Decision struct {
	// Allowed reports whether the request may proceed: all N tokens were
	// taken (or booked, with Wait), or at least one with UpTo, or N was 0.
	Allowed bool
	// Taken is the number of tokens taken: N when allowed, between 1 and N
	// with UpTo, and 0 when refused or peeking.
	Taken int
	// Remaining is the number of whole tokens left in the bucket after this
	// decision. Under concurrency it is a snapshot, not a promise. On a
	// Leased budget it is the node's view: its unspent lease plus what the
	// shared bucket held at the node's last exchange with Redis.
	Remaining int
	// RetryAfter is 0 when allowed without Wait. With Wait it is how long
	// the caller must wait before acting on its booked tokens. When
	// refused, it is when to come back, spread so that callers refused
	// together do not come back together: each key keeps a denial tail,
	// and a refusal is told max(its own wait for its tokens, the tail),
	// after which the tail moves on by the tokens it waits for. Refused
	// callers so come back one after another at the bucket's refill rate.
	// The tail runs at most a horizon ahead, max(Burst ÷ rate, 1 min);
	// refusals beyond it are spread evenly over the horizon (by a hash of
	// the key and a count), so a caller that ignores RetryAfter cannot push
	// everyone's waits out without bound. On Strict the tail is the
	// fleet's, in Redis; on Leased each node keeps its own, so N nodes
	// send their refused callers back at up to N × the rate.
	RetryAfter time.Duration
	// ResetAfter is the wait until the bucket is full again.
	ResetAfter time.Duration
	// Limit is the limit that was applied: the request's, or the budget's
	// own; during a ramp, the interpolated limit at the decision's time;
	// under the FailLocal failure policy, this node's share.
	Limit Limit
	// Via says which part of herdcap decided.
	Via Via
}

// Budget is a keyed token bucket: the one question every herdcap transport
// and storm asks of a limit. Every backend (Local; fleet.Strict and
// fleet.Leased) implements it, and implementations are safe for concurrent
// use.
//
// Take decides r (see Request and Decision). An error means no decision
// could be made from the limit itself: a bad Request (ErrInvalidRequest,
// ErrInvalidLimit), a closed budget (ErrClosed), the caller's context, or
// a store that failed under a fail-closed policy (ErrUnavailable, whose
// Decision still carries a RetryAfter).
type Budget interface {
	Take(ctx context.Context, r Request) (Decision, error)
}

// Clock is the one source of time of herdcap's components: now, and every
// timer they set (a Leased budget's refills, the live-node heartbeat, a
// coordinator's loop, a client's retry sleeps). Inject one (Config.Clock)
// to drive a component in virtual time, as tests and the storm simulator
// do; nil is the system clock. A Clock must be safe for concurrent use.
//
// Where a timer's f runs depends on the clock, and callers must allow for
// every case:
//   - the system clock runs f on a goroutine of its own, as time.AfterFunc
//     does;
//   - a virtual clock runs f on the goroutine that moves the clock past
//     f's time (a test's, the simulator's), synchronously, before that
//     move returns, with Now reading f's time.
//
// So f may run before AfterFunc has returned (with d <= 0 on the system
// clock, or when another goroutine moves a virtual clock meanwhile), and
// f must not wait for the goroutine that set it. Whoever moves a virtual
// clock must hold no lock that a timer's f takes, or f deadlocks; herdcap's
// components call AfterFunc and Stop with none of their own locks held, so
// a test or a simulator moving a clock from outside them is safe.
//
// A time limit on a Redis call (fleet.Redis.Timeout) is not taken from the
// Clock: it bounds a wait on the network, which virtual time does not see.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc arranges for f to be called once d has passed on the
	// clock (at once, or at the clock's next move, if d <= 0), and returns
	// a Timer that cancels the call, as time.AfterFunc does. See Clock for
	// the goroutine f runs on.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a call scheduled by Clock.AfterFunc. *time.Timer satisfies it.
type Timer interface {
	// Stop cancels the call, if it has not been made, and reports whether
	// it did: false when the call has already been made or cancelled, or
	// is under way. It does not wait for a call under way. A clock whose
	// timers only wake a sleeping caller may be unable to cancel one: its
	// Stop reports false and the call is still made, so a caller that
	// stops a timer must tolerate a late call (as it must with the system
	// clock, for a call already under way).
	Stop() bool
}
