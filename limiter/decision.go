package limiter

import (
	"context"
	"time"
)

// Source says which part of herdcap made a Decision.
type Source uint8

const (
	// SourceLocal: an in-process token bucket (the Local backend).
	SourceLocal Source = iota + 1
	// SourceRedis: a Lua script on Redis decided, in one round trip.
	SourceRedis
	// SourceLease: tokens leased from Redis earlier and spent locally.
	SourceLease
	// SourceFallback: Redis was unreachable or its breaker open, and the
	// configured FailurePolicy answered.
	SourceFallback
)

// String returns "local", "redis", "lease" or "fallback".
func (s Source) String() string {
	switch s {
	case SourceLocal:
		return "local"
	case SourceRedis:
		return "redis"
	case SourceLease:
		return "lease"
	case SourceFallback:
		return "fallback"
	}
	return "unknown"
}

// Decision is the answer to one request for tokens. It is returned by value:
// it is small, and a value keeps the hot path free of allocations.
type Decision struct {
	// Allowed reports whether the request may proceed. For AllowN it means
	// all n tokens were taken; for TakeUpTo, that at least one was (or that
	// n was 0).
	Allowed bool
	// Taken is the number of tokens taken: n when AllowN allows, between 1
	// and n when TakeUpTo allows, and 0 when denied or peeking (n = 0).
	Taken int
	// Remaining is the number of whole tokens left in the bucket after this
	// decision. Under concurrency it is a snapshot, not a promise. On
	// Leased it is the node's view: its unspent lease plus what the shared
	// bucket held at the node's last exchange with Redis (see Leased).
	Remaining int
	// RetryAfter is 0 when allowed; otherwise the wait until the requested
	// tokens (one token, for TakeUpTo) could be had, if nobody else takes
	// them first.
	RetryAfter time.Duration
	// ResetAfter is the wait until the bucket is full again.
	ResetAfter time.Duration
	// Limit is the limit that was applied: during a ramp (see SetLimit), the
	// interpolated limit at the time of the decision.
	Limit Limit
	// Source says which part of herdcap decided.
	Source Source
}

// Budget is a keyed token bucket: the one question every herdcap transport
// and storm asks of a limit. Every backend in this package implements it, and
// implementations are safe for concurrent use.
//
// AllowN takes n tokens for key if all n are available, and reports the
// outcome. n = 0 peeks at the bucket without taking anything. An error means
// no decision could be made from the limit itself (bad arguments, or the
// store failed and the failure policy says fail closed); the Decision that
// comes with it still carries a RetryAfter hint.
type Budget interface {
	AllowN(ctx context.Context, key string, n int) (Decision, error)
}

// Backend is the full contract of the backends in this package (Local, Redis
// and Leased); the conformance suite holds each of them to it.
type Backend interface {
	Budget
	// AllowNAt is AllowN at an explicit time t instead of the backend's
	// clock: the form tests and simulations use.
	AllowNAt(ctx context.Context, key string, t time.Time, n int) (Decision, error)
	// TakeUpTo takes as many of n tokens as are available, at least one,
	// and reports how many in Decision.Taken.
	TakeUpTo(ctx context.Context, key string, n int) (Decision, error)
	// TakeUpToAt is TakeUpTo at an explicit time t.
	TakeUpToAt(ctx context.Context, key string, t time.Time, n int) (Decision, error)
	// Limit returns the limit in force at the backend's clock's now.
	Limit() Limit
	// SetLimit moves the backend to a new limit, ramping over the
	// configured window (WithRamp, default DefaultRamp: 10 s) rather than
	// jumping.
	SetLimit(l Limit) error
	// Close releases background resources. Decisions after Close fail
	// with ErrClosed.
	Close() error
}

// Clock tells the time. Every backend takes its time from a Clock (by
// default the system clock), so that tests and the storm simulator can drive
// it in virtual time.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock is the wall clock, the default Clock.
var SystemClock Clock = systemClock{}
