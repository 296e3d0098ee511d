package fleet

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/limiter"
)

// Redis is the one way every Redis-backed constructor in herdcap is told how
// to reach and share the fleet's Redis: the budgets of this package, the
// shared admission gate, the invalidation store. Zero values are defaults;
// the constructors validate it and name a bad field as Redis.Field.
//
// Components on different nodes share state when they share the Redis, the
// Prefix and the Name; components of one node that should not share state
// use different Names. Timeout, the breaker and the FailurePolicy of the
// component's config decide what happens while Redis cannot answer: a call
// that fails or overruns Timeout counts against the breaker, and while the
// breaker is open no call reaches Redis at all.
type Redis struct {
	// Client is the Redis client: a *redis.Client, a *redis.ClusterClient
	// (every key a component uses lives in one cluster slot), a
	// *redis.Ring, a Sentinel-backed failover client. Required. It must be
	// created with ContextTimeoutEnabled, or Timeout could not hold; the
	// constructors check that for the types they know.
	Client redis.UniversalClient
	// Name namespaces the component's keys, so that several components
	// can share one Redis without sharing state; the nodes of one
	// component use the same Name. If Name is "", "default" (an admission
	// gate: "admission"). 1 to 64 bytes, with no braces, colons, spaces or
	// control characters.
	Name string
	// Prefix is the first component of every key. If Prefix is "",
	// "herdcap". The same rules as Name.
	Prefix string
	// Node is this node's name in the live-node set that FailLocal
	// divides a limit by, unique in the fleet. If Node is "", a random
	// name. At most 256 bytes. Only a component that runs the heartbeat
	// uses it (a budget or shared gate under FailLocal); the others
	// (FailOpen, FailClosed, invalidate.NewRedisStore) reject a Node that
	// is set, rather than ignore it.
	Node string
	// Timeout is the most one Redis call may take, measured on the real
	// clock (whatever Config.Clock is: it bounds a wait on the network); a
	// call that takes longer is abandoned, counted as a failure by the
	// breaker, and answered by the failure policy. If Timeout is 0, 20 ms
	// (the invalidation store: 50 ms); it must not be negative.
	Timeout time.Duration
	// BreakerFailures is how many consecutive failed calls open the
	// breaker. If BreakerFailures is 0, 3; it must not be negative.
	BreakerFailures int
	// BreakerOpen is how long the breaker stays open before it lets one
	// probe call through (and closes again once a probe succeeds). If
	// BreakerOpen is 0, 1 s; it must not be negative.
	BreakerOpen time.Duration
	// Heartbeat is the interval at which a node announces itself in the
	// live-node set that FailLocal divides a limit by; a node counts as
	// live for three intervals after its last heartbeat. Its timer runs on
	// Config.Clock, and an injected clock's time is the heartbeat's, as
	// it is the scripts'. If Heartbeat is 0, 1 s; otherwise at least
	// 10 ms. Like Node, it is rejected when set for a component that runs
	// no heartbeat (FailOpen, FailClosed, invalidate.NewRedisStore).
	Heartbeat time.Duration
}

// FailurePolicy says what a Redis-backed component answers while Redis
// cannot: when a call fails or exceeds its Timeout, and for as long as the
// breaker stays open (during which Redis is not called at all).
type FailurePolicy uint8

const (
	// FailLocal (the zero value) answers from an in-process bucket holding
	// this node's share of the limit: the limit divided by the number of
	// live nodes last seen in the heartbeat set. The fleet as a whole stays
	// near the limit while Redis is away. A request for more than the
	// share's burst is refused (without an error), told to come back as
	// FailClosed's refusals are.
	FailLocal FailurePolicy = iota
	// FailOpen allows every request.
	FailOpen
	// FailClosed refuses every request with limiter.ErrUnavailable, and a
	// RetryAfter no sooner than the breaker lets a probe through
	// (Redis.BreakerOpen), spread so that callers refused together do not
	// come back together: successive refusals of one key are told
	// successive times, as a bucket's refusals are (a denial tail at the
	// limit's rate, this node's), and different keys are spread over one
	// more breaker period.
	FailClosed
)

// String returns "local", "open" or "closed".
func (p FailurePolicy) String() string {
	switch p {
	case FailLocal:
		return "local"
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("FailurePolicy(%d)", uint8(p))
}

// Config configures NewStrict: limiter.Config's fields (Clock, Ramp,
// MaxKeys for the fallback buckets), the failure policy and the logger.
// The zero value is the default configuration.
type Config struct {
	limiter.Config
	// Failure is what the budget answers while Redis cannot. The zero
	// value is FailLocal.
	Failure FailurePolicy
	// Logger receives the breaker's transitions (Warn when it opens, Info for
	// its other changes), failed heartbeats (Debug) and, for a Leased budget,
	// tokens it could not give back (Warn). If Logger is nil, nothing is
	// logged.
	Logger *slog.Logger
}

// LeasedConfig configures NewLeased: Config's fields (MaxKeys bounds the
// leases held) and the sizing of leases. The zero value is the default
// configuration.
type LeasedConfig struct {
	Config
	// LeaseAhead is how much of this node's observed demand for a key its
	// lease holds. If LeaseAhead is 0, 100 ms; otherwise between 1 ms and
	// 1 min.
	LeaseAhead time.Duration
	// MaxLease is the most tokens one lease holds: the L of Leased's
	// overshoot bound. If MaxLease is 0, a LeaseAhead of the limit (a
	// tenth of a second of it by default), capped at the burst; it must
	// not be negative nor exceed the burst.
	MaxLease int
}

// ErrUnexpectedReply: Redis answered something the script cannot produce
// (a foreign value under the key, a proxy in the way, ...). It is not a
// store failure: the breaker does not count it.
var ErrUnexpectedReply = errors.New("limiter: unexpected reply from redis")

// checkFailure validates p, naming the field as path.Failure.
func checkFailure(path string, p FailurePolicy) error {
	if p > FailClosed {
		return fmt.Errorf("%w: %s.Failure is unknown: %v", limiter.ErrInvalidConfig, path, p)
	}
	return nil
}
