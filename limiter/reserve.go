package limiter

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcap/herdcap/internal/bucketkey"
)

// Reserver is implemented by every backend in this package: it books tokens
// ahead instead of refusing them, the primitive behind admission slots.
//
// ReserveN takes n tokens for key now if they are available; otherwise, if
// they will be available within maxWait, it takes them anyway, leaving the
// bucket in debt, and reports in Decision.RetryAfter how long the caller
// must wait before acting. Later callers queue behind the debt, so the
// reservations of a key are spaced exactly at the limit's rate. If the wait
// would exceed maxWait, nothing is taken and Allowed is false, with the wait
// in RetryAfter.
type Reserver interface {
	ReserveN(ctx context.Context, key string, n int, maxWait time.Duration) (Decision, error)
	ReserveNAt(ctx context.Context, key string, t time.Time, n int, maxWait time.Duration) (Decision, error)
}

var (
	_ Reserver = (*Local)(nil)
	_ Reserver = (*Redis)(nil)
	_ Reserver = (*Leased)(nil)
)

func checkReserve(key string, n int, maxWait time.Duration, lim Limit) error {
	if err := checkArgs(key, n); err != nil {
		return err
	}
	if maxWait < 0 {
		return fmt.Errorf("%w: maxWait must be >= 0, got %v", ErrInvalidN, maxWait)
	}
	if n > lim.Burst {
		return errOverBurst(n, lim)
	}
	return nil
}

// ReserveN books n tokens for key, now or within maxWait. See Reserver.
func (lb *Local) ReserveN(_ context.Context, key string, n int, maxWait time.Duration) (Decision, error) {
	return lb.reserve(key, lb.now(), n, maxWait)
}

// ReserveNAt is ReserveN at time t.
func (lb *Local) ReserveNAt(_ context.Context, key string, t time.Time, n int, maxWait time.Duration) (Decision, error) {
	return lb.reserve(key, t, n, maxWait)
}

func (lb *Local) reserve(key string, t time.Time, n int, maxWait time.Duration) (Decision, error) {
	lim, r := lb.limit.at(t)
	d := Decision{Limit: lim, Source: SourceLocal}
	if lb.closed.Load() {
		return d, ErrClosed
	}
	if err := checkReserve(key, n, maxWait, lim); err != nil {
		return d, err
	}
	e := lb.bucket(key, t, lim, r.gen, r.active(t))
	// Look before booking rather than book and cancel: a cancellation
	// moves the bucket's last update to t, which a later limit change
	// would then refill from at the wrong rate (see bucket).
	tokens := e.lim.TokensAt(t)
	wait := durationFromTokens(float64(n)-tokens, lim.PerSecond())
	if wait > maxWait {
		d.RetryAfter = wait
	} else {
		res := e.lim.ReserveN(t, n)
		d.Allowed, d.Taken, d.RetryAfter = true, n, res.DelayFrom(t)
		e.last.Store(t.UnixNano())
		tokens = e.lim.TokensAt(t)
	}
	d.ResetAfter = durationFromTokens(float64(lim.Burst)-tokens, lim.PerSecond())
	if tokens >= 1 {
		d.Remaining = int(tokens)
	}
	return d, nil
}

// ReserveN books n tokens for key, now or within maxWait, in one round trip.
// See Reserver. When Redis cannot answer, the failure policy decides as for
// AllowN (a fallback reservation is an AllowN: it never waits).
func (b *Redis) ReserveN(ctx context.Context, key string, n int, maxWait time.Duration) (Decision, error) {
	return reserveRemote(ctx, b.r, &b.limit, key, b.clock.Now(), b.injected, n, maxWait)
}

// ReserveNAt is ReserveN at time t.
func (b *Redis) ReserveNAt(ctx context.Context, key string, t time.Time, n int, maxWait time.Duration) (Decision, error) {
	return reserveRemote(ctx, b.r, &b.limit, key, t, true, n, maxWait)
}

// ReserveN books n tokens for key, now or within maxWait. Reservations bypass
// the lease: they go to the shared bucket in one round trip, so that every
// node queues behind the same debt.
func (b *Leased) ReserveN(ctx context.Context, key string, n int, maxWait time.Duration) (Decision, error) {
	return reserveRemote(ctx, b.r, &b.limit, key, b.clock.Now(), b.injected, n, maxWait)
}

// ReserveNAt is ReserveN at time t.
func (b *Leased) ReserveNAt(ctx context.Context, key string, t time.Time, n int, maxWait time.Duration) (Decision, error) {
	return reserveRemote(ctx, b.r, &b.limit, key, t, true, n, maxWait)
}

func reserveRemote(ctx context.Context, r *remote, ls *limitState, key string, t time.Time, passTime bool, n int, maxWait time.Duration) (Decision, error) {
	lim, rp := ls.at(t)
	if r.closed() {
		return Decision{Limit: lim, Source: SourceRedis}, ErrClosed
	}
	if err := checkReserve(key, n, maxWait, lim); err != nil {
		return Decision{Limit: lim, Source: SourceRedis}, err
	}
	v, err := r.eval(ctx, bucketScript, []string{bucketkey.Redis(r.o.prefix, r.o.name, key)},
		lim.PerSecond()/1e6, lim.Burst, n, 3, nowArg(t, passTime), maxWait.Microseconds())
	if err != nil {
		d, err, _ := r.failed(ctx, err, key, t, n, false, lim, rp.gen, rp.active(t))
		return d, err
	}
	return parseBucketReply(v, lim, SourceRedis)
}
