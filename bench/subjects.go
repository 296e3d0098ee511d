package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// op asks for one token for key and reports whether it was granted.
type op func(ctx context.Context, key string) (allowed bool, err error)

// subject is one contender, built for one row.
type subject struct {
	backend string
	// worker returns worker i's op; a multi-node subject spreads workers
	// over its nodes here.
	worker func(i int) op
	close  func()
}

// limitSpec is a per-second token bucket, expressed for every contender.
type limitSpec struct {
	perSec float64
	burst  int
}

func (l limitSpec) herdcap() limiter.Limit { return limiter.PerSecond(l.perSec, l.burst) }

// Backend names, as printed in the table and the JSON.
const (
	bBare     = "x/time/rate"
	bRedis    = "redis_rate v10"
	bLocal    = "herdcap local"
	bStrict   = "herdcap strict"
	bLeased   = "herdcap leased"
	bLeased4  = "herdcap leased ×4"
	hotKey    = "hot"
	keyPrefix = "k"
)

// env is what subjects are built from.
type env struct {
	srv      *redisServer // nil: no Redis-backed subjects
	poolSize int
	timeout  time.Duration // herdcap's per-call timeout (fleet.Redis.Timeout)
}

// maker builds a subject for one row; tag is unique to the row and
// namespaces its Redis keys.
type maker func(e *env, l limitSpec, keys int, tag string) (*subject, error)

func bareMaker(_ *env, l limitSpec, keys int, _ string) (*subject, error) {
	if keys == 1 {
		// The hot key: one limiter, no lookup, as a single-key user has.
		lim := rate.NewLimiter(rate.Limit(l.perSec), l.burst)
		f := func(context.Context, string) (bool, error) { return lim.Allow(), nil }
		return &subject{backend: bBare, worker: func(int) op { return f }, close: func() {}}, nil
	}
	m := &bareMap{m: make(map[string]*rate.Limiter, keys), l: l}
	return &subject{backend: bBare, worker: func(int) op { return m.allow }, close: func() {}}, nil
}

// bareMap is the textbook keyed x/time/rate: a map of limiters behind a
// mutex, each limiter asked outside the lock.
type bareMap struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
	l  limitSpec
}

func (b *bareMap) allow(_ context.Context, key string) (bool, error) {
	b.mu.Lock()
	lim := b.m[key]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(b.l.perSec), b.l.burst)
		b.m[key] = lim
	}
	b.mu.Unlock()
	return lim.Allow(), nil
}

func localMaker(_ *env, l limitSpec, _ int, _ string) (*subject, error) {
	b, err := limiter.NewLocal(l.herdcap(), limiter.Config{})
	if err != nil {
		return nil, err
	}
	return budgetSubject(bLocal, b, func() { _ = b.Close() }), nil
}

// herdcapRedis is the Redis of the strict and leased rows: the row's own
// name, and a per-call Timeout long enough that a loaded machine does not
// trip it.
func herdcapRedis(e *env, c redis.UniversalClient, name string) fleet.Redis {
	return fleet.Redis{Client: c, Name: name, Timeout: e.timeout}
}

// herdcapConfig is the config of the strict and leased rows: FailClosed,
// so that a Redis call that fails or overruns shows up as an error instead
// of a fast local fallback decision (which would flatter herdcap).
var herdcapConfig = fleet.Config{Failure: fleet.FailClosed}

func strictMaker(e *env, l limitSpec, _ int, tag string) (*subject, error) {
	c := redis.NewClient(e.srv.options(e.poolSize))
	b, err := fleet.NewStrict(herdcapRedis(e, c, tag), l.herdcap(), herdcapConfig)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return budgetSubject(bStrict, b, func() { _ = b.Close(); _ = c.Close() }), nil
}

func leasedMaker(e *env, l limitSpec, _ int, tag string) (*subject, error) {
	c := redis.NewClient(e.srv.options(e.poolSize))
	b, err := fleet.NewLeased(herdcapRedis(e, c, tag), l.herdcap(), fleet.LeasedConfig{Config: herdcapConfig})
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return budgetSubject(bLeased, b, func() { _ = b.Close(); _ = c.Close() }), nil
}

// leasedNodes is the multi-node leased subject: nodes NewLeased instances,
// each with its own client (its own connection pool, as separate processes
// would have), sharing the Redis and the name, hence every bucket.
func leasedNodes(nodes int) maker {
	return func(e *env, l limitSpec, _ int, tag string) (*subject, error) {
		var (
			ops    []op
			closes []func()
		)
		closeAll := func() {
			for _, f := range closes {
				f()
			}
		}
		for range nodes {
			c := redis.NewClient(e.srv.options(e.poolSize))
			b, err := fleet.NewLeased(herdcapRedis(e, c, tag), l.herdcap(), fleet.LeasedConfig{Config: herdcapConfig})
			if err != nil {
				_ = c.Close()
				closeAll()
				return nil, err
			}
			closes = append(closes, func() { _ = b.Close(); _ = c.Close() })
			ops = append(ops, budgetOp(b))
		}
		return &subject{
			backend: fmt.Sprintf("herdcap leased ×%d", nodes),
			worker:  func(i int) op { return ops[i%nodes] },
			close:   closeAll,
		}, nil
	}
}

func budgetOp(b limiter.Budget) op {
	return func(ctx context.Context, key string) (bool, error) {
		d, err := b.Take(ctx, limiter.Request{Key: key, N: 1})
		return d.Allowed, err
	}
}

func budgetSubject(name string, b limiter.Budget, closeFn func()) *subject {
	f := budgetOp(b)
	return &subject{backend: name, worker: func(int) op { return f }, close: closeFn}
}

func redisRateMaker(e *env, l limitSpec, _ int, tag string) (*subject, error) {
	if l.perSec != math.Trunc(l.perSec) || l.perSec > math.MaxInt32 {
		return nil, errors.New("redis_rate takes a whole number of tokens per second")
	}
	c := redis.NewClient(e.srv.options(e.poolSize))
	rl := redis_rate.NewLimiter(c)
	lim := redis_rate.Limit{Rate: int(l.perSec), Burst: l.burst, Period: time.Second}
	prefix := tag + ":"
	f := func(ctx context.Context, key string) (bool, error) {
		// The key concatenation mirrors the namespacing herdcap does
		// internally (prefix:name:{k:key}); redis_rate adds its "rate:".
		r, err := rl.Allow(ctx, prefix+key, lim)
		if err != nil {
			return false, err
		}
		return r.Allowed > 0, nil
	}
	return &subject{backend: bRedis, worker: func(int) op { return f }, close: func() { _ = c.Close() }}, nil
}
