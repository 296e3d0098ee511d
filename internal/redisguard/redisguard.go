// Package redisguard runs Redis scripts within a timeout and behind a
// circuit breaker: the one way herdcap's packages talk to Redis.
package redisguard

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/herdcap/herdcap/observe"
)

// ErrNoContextTimeout is returned by CheckClient for a client that would
// ignore a context deadline.
var ErrNoContextTimeout = errors.New("the redis client must be created with ContextTimeoutEnabled: true, or a stalled Redis could block callers for its ReadTimeout instead of the timeout")

// CheckClient reports whether c honours context deadlines, which the time
// budget depends on. It can tell for *redis.Client, *redis.ClusterClient and
// *redis.Ring, and accepts any other implementation.
func CheckClient(c redis.UniversalClient) error {
	ok := true
	switch cc := c.(type) {
	case *redis.Client:
		ok = cc.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		ok = cc.Options().ContextTimeoutEnabled
	case *redis.Ring:
		ok = cc.Options().ContextTimeoutEnabled
	}
	if !ok {
		return ErrNoContextTimeout
	}
	return nil
}

// Settings configures a Guard. Every field must be set.
type Settings struct {
	// Name names the breaker in logs.
	Name string
	// Timeout is the timeout of one call.
	Timeout time.Duration
	// Failures is how many consecutive failed calls open the breaker.
	Failures int
	// OpenFor is how long the breaker stays open before one probe.
	OpenFor time.Duration
	// Logger receives breaker state changes.
	Logger *slog.Logger
}

// Guard wraps a client. It is safe for concurrent use.
type Guard struct {
	c  redis.UniversalClient
	s  Settings
	br *gobreaker.CircuitBreaker[any]
	// transition holds a breaker state change not yet logged, as
	// from<<8 | to | 1<<16: gobreaker reports changes under its lock, and
	// the logger (user code) is called after the call instead.
	transition atomic.Int32
	// obs is the observer Attach gave: at construction (remote.Open), or
	// later for a guard made before its observer (a store, then its
	// users).
	obs atomic.Pointer[observer]
}

// observer is an observer Attach gave: f, with the events named
// policy.
type observer struct {
	policy string
	f      func(observe.Breaker)
}

// Attach makes f receive the guard's state changes as observe.Breaker
// events named policy, after the call that made each, outside the
// breaker's lock, unless an observer was attached before (it reports
// whether f was). It is safe at any time, concurrently with calls.
func (g *Guard) Attach(policy string, f func(observe.Breaker)) bool {
	if f == nil {
		return false
	}
	return g.obs.CompareAndSwap(nil, &observer{policy: policy, f: f})
}

// New returns a Guard for c.
func New(c redis.UniversalClient, s Settings) *Guard {
	g := &Guard{c: c, s: s}
	g.br = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        s.Name,
		MaxRequests: 1,
		Timeout:     s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(s.Failures)
		},
		IsSuccessful: func(err error) bool { return !IsStoreFailure(err) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			g.transition.Store(int32(from)<<8 | int32(to) | 1<<16)
		},
	})
	return g
}

// Open reports whether the breaker is open: calls would not reach Redis.
func (g *Guard) Open() bool { return g.br.State() == gobreaker.StateOpen }

// Eval runs script through the breaker, within the timeout, and returns
// Redis's reply. The caller's own cancellation is returned as is (and is not
// held against Redis); use IsStoreFailure to tell a Redis that could not
// answer from one that answered with an error.
func (g *Guard) Eval(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := g.br.Execute(func() (any, error) {
		cctx, cancel := context.WithTimeout(ctx, g.s.Timeout)
		defer cancel()
		return s.Run(cctx, g.c, keys, args...).Result()
	})
	g.logTransition(ctx, err)
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, ctx.Err()
	}
	return v, err
}

// Call is one script call of a batch: Script on Keys with Args, answered in
// Val or Err.
type Call struct {
	Script *redis.Script
	Keys   []string
	Args   []any
	// Val and Err are the call's reply, set by EvalBatch.
	Val any
	Err error
}

// EvalBatch runs calls in one pipeline, so that they share one round trip
// (and a second one for the calls whose script Redis had not cached, sent
// with EVAL), as one request of the breaker, within the timeout from
// now. Each call gets its own reply. The batch serves several callers, so no
// caller's context applies: each caller keeps its own deadline.
func (g *Guard) EvalBatch(calls []*Call) {
	_, err := g.br.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), g.s.Timeout)
		defer cancel()
		return nil, g.pipeline(ctx, calls)
	})
	g.logTransition(context.Background(), err)
	if err != nil {
		for _, c := range calls {
			if c.Err == nil && c.Val == nil {
				c.Err = err
			}
		}
	}
}

// pipeline sends calls as EVALSHA in one pipeline, then those that met
// NOSCRIPT as EVAL in a second. It returns the first store failure (which
// the breaker counts), not the scripts' own errors.
func (g *Guard) pipeline(ctx context.Context, calls []*Call) error {
	send := func(eval bool, idx []int) ([]*redis.Cmd, error) {
		pipe := g.c.Pipeline()
		cmds := make([]*redis.Cmd, len(idx))
		for j, i := range idx {
			c := calls[i]
			if eval {
				cmds[j] = c.Script.Eval(ctx, pipe, c.Keys, c.Args...)
			} else {
				cmds[j] = c.Script.EvalSha(ctx, pipe, c.Keys, c.Args...)
			}
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	idx := make([]int, len(calls))
	for i := range idx {
		idx[i] = i
	}
	var failure error
	for _, eval := range []bool{false, true} {
		cmds, _ := send(eval, idx)
		var again []int
		for j, cmd := range cmds {
			v, err := cmd.Result()
			if !eval && err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				again = append(again, idx[j])
				continue
			}
			c := calls[idx[j]]
			c.Val, c.Err = v, err
			if failure == nil && IsStoreFailure(err) {
				failure = err
			}
		}
		if len(again) == 0 {
			break
		}
		idx = again
	}
	return failure
}

// logTransition logs a breaker state change that happened during the last
// call, outside the breaker's lock.
func (g *Guard) logTransition(ctx context.Context, err error) {
	if tr := g.transition.Swap(0); tr != 0 {
		from, to := gobreaker.State(tr>>8&0xff), gobreaker.State(tr&0xff)
		lvl := slog.LevelInfo
		if to == gobreaker.StateOpen {
			lvl = slog.LevelWarn
		}
		g.s.Logger.Log(ctx, lvl, "herdcap: redis breaker changed state",
			"breaker", g.s.Name, "from", from.String(), "to", to.String(), "err", err)
		if lo := g.obs.Load(); lo != nil {
			lo.f(observe.Breaker{Policy: lo.policy, From: breakerState(from), To: breakerState(to)})
		}
	}
}

// IsStoreFailure reports whether err means Redis could not be used (down,
// slow, overloaded, failing over, or the breaker open) rather than that it
// answered.
func IsStoreFailure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return redis.IsLoadingError(err) || redis.IsClusterDownError(err) ||
			redis.IsTryAgainError(err) || redis.IsMasterDownError(err) ||
			redis.IsReadOnlyError(err) || redis.IsMaxClientsError(err) ||
			redis.HasErrorPrefix(err, "BUSY")
	}
	return true // network errors, timeouts, pool exhaustion, open breaker
}

// breakerState maps gobreaker's states to observe's.
func breakerState(s gobreaker.State) observe.BreakerState {
	switch s {
	case gobreaker.StateClosed:
		return observe.BreakerClosed
	case gobreaker.StateHalfOpen:
		return observe.BreakerHalfOpen
	}
	return observe.BreakerOpen
}
