package fleet

import (
	"context"
	"errors"
	"strconv"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/bucketlua"
	"github.com/herdcap/herdcap/internal/tail"
	"github.com/herdcap/herdcap/limiter"
)

// Strict is a fleet-wide limiter.Budget: every decision is one Lua script on
// Redis, so every node sharing the Redis, Prefix and Name shares each key's
// bucket exactly, its denial tail included (see limiter.Decision), and the
// ramp of the limit its requests carry.
//
// Time comes from Redis TIME, so node clocks do not matter, unless a clock
// is injected (Config.Clock): then its time is passed to the script. Each
// key's bucket is one Redis string under a hash-tagged key, so it lives in
// one cluster slot; it expires when its bucket would be full again (and no
// tail or ramp is under way), so idle keys cost nothing. Concurrent
// decisions share round trips (see the package doc), each still its own
// atomic script.
//
// Every call is bounded by Redis.Timeout and passes through the breaker;
// a call that fails or overruns, and every call while the breaker is open,
// is answered by Config.Failure (Decision.Via is then ViaFallback). The
// budget's own limit (SetLimit) is this node's and travels with each call:
// nodes that should agree must be set alike.
//
// A Strict is safe for concurrent use. Close it to stop its heartbeat and
// batch workers; decisions after Close fail with limiter.ErrClosed.
type Strict struct {
	s     *shared
	batch *batcher
}

// NewStrict returns a budget enforcing l per key on Redis. Under FailLocal
// it starts the live-node heartbeat: call Close when done. Bad
// configuration is an error wrapping limiter.ErrInvalidLimit or
// limiter.ErrInvalidConfig that names the field.
func NewStrict(r Redis, l limiter.Limit, cfg Config) (*Strict, error) {
	s, err := newShared(r, l, cfg, "Config")
	if err != nil {
		return nil, err
	}
	return &Strict{s: s, batch: newBatcher(s.link.Guard(), s.link.Timeout)}, nil
}

// AllowN takes n tokens for key if all n are available: Take of
// limiter.Request{Key: key, N: n}.
func (b *Strict) AllowN(ctx context.Context, key string, n int) (limiter.Decision, error) {
	r := limiter.Request{Key: key, N: n}
	d, err := b.decide(ctx, &r)
	b.s.observed(d, err, n)
	return d, err
}

// Take decides r in one round trip. See limiter.Budget and
// limiter.Request.
func (b *Strict) Take(ctx context.Context, r limiter.Request) (limiter.Decision, error) {
	d, err := b.decide(ctx, &r)
	b.s.observed(d, err, r.N)
	return d, err
}

// Limit returns the budget's own limit in force now.
func (b *Strict) Limit() limiter.Limit {
	l, _ := b.s.own(b.s.clock.Now())
	return l
}

// SetLimit moves the budget's own limit to l, ramping over Config.Ramp
// from now.
func (b *Strict) SetLimit(l limiter.Limit) error { return b.s.setLimit(l) }

// LiveNodes returns the number of nodes last seen in the heartbeat set (1
// until a heartbeat has succeeded, and always 1 unless the policy is
// FailLocal).
func (b *Strict) LiveNodes() int { return int(b.s.link.Live()) }

// Close stops the batch workers and the heartbeat and removes the node
// from the live-node set. It is idempotent.
func (b *Strict) Close() error {
	b.batch.close()
	b.s.close()
	return nil
}

func (b *Strict) decide(ctx context.Context, r *limiter.Request) (limiter.Decision, error) {
	t := b.s.clock.Now()
	keyed := r.Limit != (limiter.Limit{})
	lim := r.Limit
	if !keyed {
		lim, _ = b.s.own(t)
	}
	if b.s.link.Closed() {
		return limiter.Decision{Limit: lim, Via: limiter.ViaRedis}, limiter.ErrClosed
	}
	if err := r.Validate(); err != nil {
		return limiter.Decision{Limit: lim, Via: limiter.ViaRedis}, err
	}
	if r.N > lim.Burst && !r.UpTo {
		return limiter.Decision{Limit: lim, Via: limiter.ViaRedis}, errOverBurst(r.N, lim)
	}
	mode, frac := 0, ""
	switch {
	case r.Wait > 0:
		mode = 3
	case r.UpTo:
		mode = 1
	}
	if mode != 3 {
		frac = strconv.FormatFloat(tail.KeyFraction(bucketkey.Local(r.Key)), 'g', -1, 64)
	}
	window := ""
	if keyed {
		window = strconv.FormatInt(b.s.window.Microseconds(), 10)
	}
	keys := []string{b.s.redisKey(r.Key)}
	args := []any{lim.PerSecond() / 1e6, lim.Burst, r.N, mode, bucketlua.NowArg(t, b.s.injected),
		r.Wait.Microseconds(), window, frac}
	var (
		v   any
		err error
	)
	if mode == 3 {
		// Reservations are rare (admission slots, origin calls): one
		// round trip of their own.
		v, err = b.s.link.Eval(ctx, bucketScript, keys, args...)
	} else {
		v, err = b.batch.eval(ctx, bucketScript, keys, args...)
	}
	if errors.Is(err, limiter.ErrClosed) {
		return limiter.Decision{Limit: lim, Via: limiter.ViaRedis}, limiter.ErrClosed
	}
	if err != nil {
		return b.s.failed(ctx, err, r, lim, t)
	}
	b.s.answered()
	return parseBucketReply(v, lim, limiter.ViaRedis)
}

var _ limiter.Budget = (*Strict)(nil)
