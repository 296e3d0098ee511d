package limiter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/bucketkey"
)

// Redis is a fleet-wide Budget: every decision is one Lua script on Redis
// (EVALSHA, with EVAL when the script is not cached), so every node sharing
// the Redis and the name (WithName) shares each key's bucket exactly.
//
// Time comes from Redis TIME, so node clocks do not matter, unless a clock is
// injected (WithClock) or the explicit-time methods are used: then that time
// is passed to the script. Each key's bucket is one 16-byte Redis string
// whose key is hash-tagged (prefix:name:{k:key}), so it lives in one cluster
// slot; it expires when its bucket would be full again, so idle keys cost
// nothing.
//
// Concurrent decisions share round trips: while a few calls are under way
// (4), further decisions queue and go out together as one pipeline, each
// still its own atomic script. A lone caller never waits for a batch; under
// load this multiplies throughput, since the kernel and network work of a
// round trip is paid once per batch instead of once per decision.
//
// Each call has a time budget (WithTimeout, default 20 ms) and passes through
// a circuit breaker (WithBreaker). A call that fails or times out, and every
// call while the breaker is open (which then reaches no Redis at all), is
// answered by the failure policy (WithFailure): by default from a local
// bucket holding this node's share of the limit. Such decisions say
// SourceFallback. After the breaker's open period one probe call is let
// through, and the budget returns to Redis by itself once it succeeds.
//
// The client must have ContextTimeoutEnabled set, or the time budget could
// not be enforced; NewRedis checks it for *redis.Client, *redis.ClusterClient
// and *redis.Ring. A Redis is safe for concurrent use; Close it to stop its
// heartbeat and batch workers (which run only once decisions have had to
// queue).
type Redis struct {
	r        *remote
	batch    *batcher
	limit    limitState
	clock    Clock
	injected bool
}

// NewRedis returns a budget enforcing l per key on Redis. It starts the
// live-node heartbeat (see FailLocal); call Close when done.
func NewRedis(c redis.UniversalClient, l Limit, opts ...Option) (*Redis, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	r, err := newRemote(c, kindRedis, opts)
	if err != nil {
		return nil, err
	}
	b := &Redis{r: r, batch: newBatcher(r.guard, r.o.timeout), clock: r.o.clock, injected: r.o.clockSet}
	b.limit.init(l, r.o.ramp)
	if r.o.failure == FailLocal {
		r.startHeartbeat()
	}
	return b, nil
}

// AllowN takes n tokens for key if all n are available. See Budget.
func (b *Redis) AllowN(ctx context.Context, key string, n int) (Decision, error) {
	return b.decide(ctx, key, b.clock.Now(), b.injected, n, false)
}

// AllowNAt is AllowN at time t, which is passed to Redis instead of TIME.
func (b *Redis) AllowNAt(ctx context.Context, key string, t time.Time, n int) (Decision, error) {
	return b.decide(ctx, key, t, true, n, false)
}

// TakeUpTo takes as many of n tokens as are available, at least one.
func (b *Redis) TakeUpTo(ctx context.Context, key string, n int) (Decision, error) {
	return b.decide(ctx, key, b.clock.Now(), b.injected, n, true)
}

// TakeUpToAt is TakeUpTo at time t.
func (b *Redis) TakeUpToAt(ctx context.Context, key string, t time.Time, n int) (Decision, error) {
	return b.decide(ctx, key, t, true, n, true)
}

// Limit returns the limit in force now.
func (b *Redis) Limit() Limit {
	l, _ := b.limit.at(b.clock.Now())
	return l
}

// SetLimit ramps this node's limit to l over the WithRamp window. The limit
// travels with each call, so nodes that should agree must be set alike.
func (b *Redis) SetLimit(l Limit) error { return b.SetLimitAt(b.clock.Now(), l) }

// SetLimitAt is SetLimit with the ramp starting at t.
func (b *Redis) SetLimitAt(t time.Time, l Limit) error { return b.limit.set(t, l) }

// LiveNodes returns the number of nodes last seen in the heartbeat set (1
// until a heartbeat has succeeded, and always 1 unless the policy is
// FailLocal).
func (b *Redis) LiveNodes() int { return int(b.r.live.Load()) }

// Close stops the heartbeat and removes the node from the live set.
func (b *Redis) Close() error {
	b.batch.close()
	b.r.close()
	return nil
}

func (b *Redis) decide(ctx context.Context, key string, t time.Time, passTime bool, n int, upTo bool) (Decision, error) {
	if b.r.closed() {
		return Decision{Source: SourceRedis}, ErrClosed
	}
	if err := checkArgs(key, n); err != nil {
		return Decision{Source: SourceRedis}, err
	}
	lim, rp := b.limit.at(t)
	if n > lim.Burst && !upTo {
		return Decision{Limit: lim, Source: SourceRedis}, errOverBurst(n, lim)
	}
	mode := 0
	if upTo {
		mode = 1
	}
	v, err := b.batch.eval(ctx, bucketScript, []string{bucketkey.Redis(b.r.o.prefix, b.r.o.name, key)},
		lim.PerSecond()/1e6, lim.Burst, n, mode, nowArg(t, passTime))
	if errors.Is(err, ErrClosed) {
		return Decision{Limit: lim, Source: SourceRedis}, ErrClosed
	}
	if err != nil {
		d, err, _ := b.r.failed(ctx, err, key, t, n, upTo, lim, rp.gen, rp.active(t))
		return d, err
	}
	return parseBucketReply(v, lim, SourceRedis)
}

// nowArg is the script's time argument: t in µs, or "" for Redis TIME.
func nowArg(t time.Time, pass bool) string {
	if !pass {
		return ""
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

// parseBucketReply turns bucketScript's reply into a Decision.
func parseBucketReply(v any, lim Limit, src Source) (Decision, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 5 {
		return Decision{Limit: lim, Source: src}, fmt.Errorf("%w: want 5 integers, got %T %v", ErrUnexpectedReply, v, v)
	}
	var x [5]int64
	for i, e := range a {
		if x[i], ok = e.(int64); !ok || x[i] < 0 {
			return Decision{Limit: lim, Source: src}, fmt.Errorf("%w: element %d is %T %v", ErrUnexpectedReply, i, e, e)
		}
	}
	return Decision{
		Allowed:    x[0] == 1,
		Taken:      int(x[1]),
		Remaining:  int(x[2]),
		RetryAfter: time.Duration(x[3]) * time.Microsecond,
		ResetAfter: time.Duration(x[4]) * time.Microsecond,
		Limit:      lim,
		Source:     src,
	}, nil
}
