package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/cohorthash"
	"github.com/herdcap/herdcap/internal/keymap"
	"github.com/herdcap/herdcap/internal/ramp"
	"github.com/herdcap/herdcap/internal/redisguard"
	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/internal/tail"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// shared is what Strict and Leased share: the link to Redis, the budget's
// own limit and its ramp, the clock, and the failure policy with its
// fallback bucket and the denial tails of its refusals.
type shared struct {
	link     *remote.Link
	limit    ramp.State
	window   time.Duration // the ramp window; 0: at once
	clock    limiter.Clock
	injected bool // a clock was injected: its time is passed to the scripts
	failure  FailurePolicy
	fallback *limiter.Local
	// refusals holds, per key, the denial tail of the failure policy's
	// refusals (FailClosed's, and FailLocal's of requests over this node's
	// share); nil under FailOpen, which refuses nothing.
	refusals *keymap.Map[refusal]

	// What the budget reports (Config.Observe), named name; nil funcs:
	// nothing. onFallback is told when inFallback changes.
	name       string
	onDecision func(observe.Decision)
	onFallback func(observe.Fallback)
	onLease    func(observe.Lease)
	inFallback atomic.Bool
}

// refusal is one key's denial tail for the failure policy's refusals.
type refusal struct {
	mu   sync.Mutex
	tail tail.Tail
}

func newShared(r Redis, l limiter.Limit, cfg Config, path string) (*shared, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	window, ok := ramp.Window(cfg.Ramp)
	if !ok {
		return nil, fmt.Errorf("%w: %s.Ramp must be >= 0 or NoRamp, got %v", limiter.ErrInvalidConfig, path, cfg.Ramp)
	}
	if cfg.MaxKeys < 0 {
		// Checked here, so that the error names the caller's field rather
		// than the fallback's limiter.Config.
		return nil, fmt.Errorf("%w: %s.MaxKeys must be >= 0, got %d", limiter.ErrInvalidConfig, path, cfg.MaxKeys)
	}
	if err := checkFailure(path, cfg.Failure); err != nil {
		return nil, err
	}
	// The fallback's limit is each request's share (see failed): a change
	// of share applies at once.
	fb, err := limiter.NewLocal(limiter.Limit{Rate: 1, Burst: 1},
		limiter.Config{Clock: cfg.Clock, Ramp: limiter.NoRamp, MaxKeys: cfg.MaxKeys})
	if err != nil {
		return nil, err
	}
	clock := sysclock.Or(cfg.Clock)
	var hooks observe.Hooks
	if cfg.Observe != nil {
		hooks = *cfg.Observe
	}
	link, err := remote.Open(remote.Config(r), remote.Use{DefaultName: "default",
		NoHeartbeat: remote.NoHeartbeatUnder(path+".Failure", cfg.Failure.String()),
		Breaker:     hooks.Breaker, Policy: cfg.Name},
		cfg.Clock, cfg.Logger, cfg.Failure.String())
	if err != nil {
		return nil, err
	}
	s := &shared{link: link, window: window, clock: clock, injected: cfg.Clock != nil, failure: cfg.Failure, fallback: fb,
		name: cfg.Name, onDecision: hooks.Decision, onFallback: hooks.Fallback, onLease: hooks.Lease}
	if s.name == "" {
		s.name = link.Name
	}
	if cfg.Failure != FailOpen {
		maxKeys := cfg.MaxKeys
		if maxKeys == 0 {
			maxKeys = keymap.DefaultMax
		}
		s.refusals = keymap.New(maxKeys, refusalIdle, nil)
	}
	s.limit.Init(ramp.Limit(l), window)
	if cfg.Failure == FailLocal {
		link.StartHeartbeat()
	}
	return s, nil
}

// observed reports d, a decision for n tokens that ended in err, to the
// Decision and Fallback hooks. The caller holds no lock. A decision that
// failed for another reason than the failure policy reports nothing.
func (s *shared) observed(d limiter.Decision, err error, n int) {
	if err != nil && !errors.Is(err, limiter.ErrUnavailable) {
		return
	}
	if d.Via == limiter.ViaFallback {
		s.fellBack()
	}
	if s.onDecision == nil {
		return
	}
	e := observe.Decision{Policy: s.name, Outcome: observe.Denied, Source: observe.Source(d.Via), Tokens: n}
	if d.Allowed {
		e.Outcome, e.Tokens = observe.Allowed, d.Taken
	}
	s.onDecision(e)
}

// fellBack notes that the failure policy answered. The caller holds no
// lock.
func (s *shared) fellBack() {
	if s.onFallback != nil && !s.inFallback.Load() && s.inFallback.CompareAndSwap(false, true) {
		s.onFallback(observe.Fallback{Policy: s.name, Entered: true})
	}
}

// answered notes that Redis answered a call. The caller holds no lock.
func (s *shared) answered() {
	if s.onFallback != nil && s.inFallback.Load() && s.inFallback.CompareAndSwap(true, false) {
		s.onFallback(observe.Fallback{Policy: s.name})
	}
}

// close stops the heartbeat, leaves the live-node set and closes the
// fallback.
func (s *shared) close() {
	s.link.Close()
	_ = s.fallback.Close()
}

// own returns the budget's own limit at t and its ramp.
func (s *shared) own(t time.Time) (limiter.Limit, *ramp.Ramp) {
	l, r := s.limit.At(t)
	return limiter.Limit(l), r
}

// setLimit validates l and ramps the budget's own limit to it from now.
func (s *shared) setLimit(l limiter.Limit) error {
	if err := l.Validate(); err != nil {
		return err
	}
	s.limit.Set(s.clock.Now(), ramp.Limit(l))
	return nil
}

// redisKey returns key's bucket key in Redis.
func (s *shared) redisKey(key string) string { return bucketkey.Redis(s.link.Prefix, s.link.Name, key) }

// errOverBurst is the error of a request for more than the burst.
func errOverBurst(n int, l limiter.Limit) error {
	return fmt.Errorf("%w: Request.N = %d exceeds the burst of %d, so it could never be granted", limiter.ErrInvalidRequest, n, l.Burst)
}

func isTimeout(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

// refusalIdle reports whether dropping v loses nothing: its tail lies in
// the past.
func refusalIdle(v *refusal, t time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tail.Idle(t.UnixNano())
}

// refuse returns the RetryAfter of a refusal by the failure policy, at t,
// of a request of key waiting for need tokens under lim. Redis is not
// asked again before the breaker lets a probe through, BreakerOpen from
// now, so no refusal is told less; but callers must not come back
// together at that moment either. So each key's refusals are spread as a
// bucket's are (see limiter.Decision.RetryAfter), by a denial tail of
// their own: successive refusals of one key are told successive times,
// need tokens of lim apart, within the tail's horizon, and past it spread
// over it. And the keys themselves are spread over one breaker period, by
// a well-mixed hash (cohorthash): the first refusals of many keys at one
// moment come back over [BreakerOpen, 2×BreakerOpen), as the shared
// admission gate's clients do. The tails are this node's: N nodes send
// refused callers of a key back at up to N × lim's rate.
func (s *shared) refuse(key string, t time.Time, need int, lim limiter.Limit) time.Duration {
	lkey := bucketkey.Local(key)
	v := &s.refusals.Get(lkey, t, func(*refusal) {}).V
	v.mu.Lock()
	turn := v.tail.Refuse(t.UnixNano(), 0, need, lim.PerSecond(), lim.Burst, lkey)
	v.mu.Unlock()
	open := s.link.BreakerOpen
	frac := float64(cohorthash.Sum("herdcap failure policy", lkey)>>11) / (1 << 53)
	return open + time.Duration(frac*float64(open)) + turn
}

// failed turns a failed call for r at t, under lim, into the failure
// policy's answer: the caller's cancellation and a bad reply as errors, a
// store failure by the policy. A fallback decision never waits: a
// reservation (Request.Wait) is decided as a request without Wait.
func (s *shared) failed(ctx context.Context, err error, r *limiter.Request, lim limiter.Limit, t time.Time) (limiter.Decision, error) {
	if ctx.Err() != nil && !isTimeout(err) {
		return limiter.Decision{Limit: lim}, ctx.Err()
	}
	if errors.Is(err, ErrUnexpectedReply) {
		return limiter.Decision{Limit: lim, Via: limiter.ViaRedis}, err
	}
	if !redisguard.IsStoreFailure(err) {
		return limiter.Decision{Limit: lim}, fmt.Errorf("%w: %w", ErrUnexpectedReply, err)
	}
	switch s.failure {
	case FailOpen:
		return limiter.Decision{Allowed: true, Taken: r.N, Limit: lim, Via: limiter.ViaFallback}, nil
	case FailClosed:
		need := max(r.N, 1) // a peek too comes back
		if r.UpTo {
			need = 1
		}
		return limiter.Decision{Limit: lim, RetryAfter: s.refuse(r.Key, t, need, lim), Via: limiter.ViaFallback},
			fmt.Errorf("%w: %w", limiter.ErrUnavailable, err)
	}
	live := max(1, s.link.Live())
	share := limiter.Limit{
		Rate:   lim.Rate / float64(live),
		Period: lim.Period,
		Burst:  int(math.Ceil(float64(lim.Burst) / float64(live))),
	}
	if r.N > share.Burst && !r.UpTo {
		// This node's share can never grant it: not before Redis answers
		// again.
		return limiter.Decision{Limit: share, RetryAfter: s.refuse(r.Key, t, r.N, share), Via: limiter.ViaFallback}, nil
	}
	d, ferr := s.fallback.Take(ctx, limiter.Request{Key: r.Key, N: r.N, UpTo: r.UpTo, Limit: share})
	d.Via = limiter.ViaFallback
	return d, ferr
}
