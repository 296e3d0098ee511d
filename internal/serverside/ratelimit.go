package serverside

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// MaxPolicyName bounds a policy's name, which HTTP sends on every response.
const MaxPolicyName = 64

// DefaultPolicyName is the name of a policy whose Name is "".
const DefaultPolicyName = "default"

// Policy is one rate limit on a request: a transport's Policy with its
// functions adapted to R.
type Policy[R any] struct {
	Name   string                         // "": DefaultPolicyName
	Budget limiter.Budget                 // required
	Key    func(R) (string, error)        // nil: RateLimitConfig.DefaultKey
	Limit  func(R) (limiter.Limit, error) // nil: the budget's own limit
	Cost   func(R) int                    // nil: 1
	Shadow bool                           // decide and report, never refuse
}

// RateLimitConfig configures NewRateLimiter.
type RateLimitConfig[R any] struct {
	Common[R]
	// Policies are the limits every request passes, at least one.
	Policies []Policy[R]
	// DefaultKey keys the policies without a Key (the client's address).
	DefaultKey func(R) (string, error)
	// UnavailableRetryAfter is the wait told when a budget fails without
	// one; 0: DefaultUnavailableRetryAfter.
	UnavailableRetryAfter time.Duration
	// Path names the transport's config struct in errors about its fields
	// ("RateLimitConfig"); policies are named "Policy[i]".
	Path string
	// Observe receives shadow refusals (observe.Shadow); nil: none.
	Observe *observe.Hooks
}

// RateLimiter decides a request over several policies. For each policy it
// finds the key, the per-request limit and the cost, and checks them: a
// non-zero limit must be valid (limiter.Limit.Validate), a cost must be
// >= 0 and at most the burst (of the per-request limit, else of the
// budget's own when the budget reports it through a Limit() limiter.Limit
// method, as limiter.Local, fleet.Strict and fleet.Leased do). If any
// non-shadow policy's function fails or its answer fails the check, the
// request is answered Gone, BadRequest or Internal before any budget is
// asked (a shadow policy's is logged as the server bug it is, and the
// policy is left out). Otherwise every policy's budget is asked,
// each taking its own tokens whatever the others answer (as Envoy's rate
// limit filter does: the policies are independent quotas, and a request
// refused by one still spends from the others). Then, of the non-shadow
// policies:
//
//   - a budget that rejected the request all the same
//     (limiter.ErrInvalidRequest or ErrInvalidLimit: its limit changed
//     since the check, or it is stricter than the check) makes it
//     Internal;
//   - else a budget error that is the request's context ending makes it
//     Gone;
//   - else any other budget error makes it Unavailable, told to come back
//     after the longest RetryAfter of the failed budgets (or
//     UnavailableRetryAfter), not Exact: a failed budget's wait is not a
//     turn of its own (a breaker's open period is the same for every
//     caller), so the transport sends it as a coarse hint that clients
//     jitter;
//   - else a refusal makes it Deny, decided by the most restrictive
//     refusing policy: the one with the longest RetryAfter, Exact (the
//     budget's turn for the caller, spread by its denial tail);
//   - else it passes.
//
// A shadow policy is asked like the others and reported in the states,
// but its failures and refusals are only logged: it never changes the
// verdict. A RateLimiter is safe for concurrent use.
type RateLimiter[R any] struct {
	policies []Policy[R]
	own      []func() limiter.Limit // each budget's own limit, if it tells; else nil
	skip     func(R) bool
	keys     Keys
	unavail  time.Duration
	log      *logger[R]
	onShadow func(observe.Decision) // RateLimitConfig.Observe.Decision; nil: none
}

// State is what one policy's budget answered for a request: its Decision,
// when OK. A policy whose function failed (shadow only: a non-shadow
// failure ends the request) or whose budget failed is not OK.
type State struct {
	Decision limiter.Decision
	OK       bool

	req  limiter.Request
	skip bool  // not asked (a shadow policy's function failed), or failed
	err  error // a non-shadow budget's error
}

// Outcome is a RateLimiter's answer.
type Outcome struct {
	Verdict Verdict
	// RetryAfter is the wait for Deny, Unavailable and Gone: the deciding
	// decision's, not rounded, or for a failed budget without one,
	// UnavailableRetryAfter.
	RetryAfter time.Duration
	// Exact reports that RetryAfter is a spread turn (Deny): the
	// transport sends it to the millisecond, for clients to come back at
	// it (Herdcap-Retry-After-Ms, the gRPC pushback). Otherwise it is a
	// coarse hint that many callers may be told alike, sent only as
	// such (Retry-After in whole seconds, gRPC RetryInfo), so that
	// clients add their own jitter.
	Exact bool
	// Policy is the index of the policy the verdict came from (the
	// refusing, failing or misconfigured one); -1 for Pass.
	Policy int
	// Err is the cause of BadRequest, Internal, Unavailable and Gone.
	Err error
	// KeyErr reports that Err came from a key function (the transport may
	// answer a key function's own status).
	KeyErr bool
}

// NewRateLimiter returns the RateLimiter of cfg. An error names the bad
// field as "Policy[i].<field>" or "<Path>.UnavailableRetryAfter"; the
// transport prefixes its package.
func NewRateLimiter[R any](cfg RateLimitConfig[R]) (*RateLimiter[R], error) {
	if len(cfg.Policies) == 0 {
		return nil, errors.New("no Policy given")
	}
	unavail, err := UnavailableWait(cfg.Path, cfg.UnavailableRetryAfter)
	if err != nil {
		return nil, err
	}
	l := &RateLimiter[R]{skip: cfg.Skip, keys: cfg.Keys, unavail: unavail, log: newLogger(cfg.Common)}
	if cfg.Observe != nil {
		l.onShadow = cfg.Observe.Decision
	}
	seen := make(map[string]int, len(cfg.Policies))
	for i, p := range cfg.Policies {
		if p.Name == "" {
			p.Name = DefaultPolicyName
		}
		if err := CheckPolicyName(p.Name); err != nil {
			return nil, fmt.Errorf("Policy[%d].Name: %w", i, err)
		}
		if j, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("Policy[%d].Name %q is Policy[%d]'s too; names must be unique", i, p.Name, j)
		}
		seen[p.Name] = i
		if IsNil(p.Budget) {
			return nil, fmt.Errorf("Policy[%d].Budget is nil", i)
		}
		if p.Key == nil {
			if cfg.DefaultKey == nil {
				return nil, fmt.Errorf("Policy[%d].Key is nil and there is no default", i)
			}
			p.Key = cfg.DefaultKey
		}
		l.policies = append(l.policies, p)
		if lb, ok := p.Budget.(interface{ Limit() limiter.Limit }); ok {
			l.own = append(l.own, lb.Limit)
		} else {
			l.own = append(l.own, nil)
		}
	}
	return l, nil
}

// UnavailableWait applies UnavailableRetryAfter's default to d and checks
// it; an error names the field after path ("RateLimitConfig").
func UnavailableWait(path string, d time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("%s.UnavailableRetryAfter must be >= 0 (0 means %v), got %v", path, DefaultUnavailableRetryAfter, d)
	case d == 0:
		return DefaultUnavailableRetryAfter, nil
	}
	return d, nil
}

// CheckPolicyName checks a policy name: 1 to MaxPolicyName bytes of
// printable ASCII, which an HTTP structured-field String can carry.
func CheckPolicyName(name string) error {
	if name == "" || len(name) > MaxPolicyName {
		return fmt.Errorf("must be 1 to %d bytes, got %d", MaxPolicyName, len(name))
	}
	for i := 0; i < len(name); i++ {
		if ch := name[i]; ch < 0x20 || ch > 0x7e {
			return fmt.Errorf("%q: byte %d (%#x) is not printable ASCII, which a structured field String requires", name, i, ch)
		}
	}
	return nil
}

// Len returns the number of policies.
func (l *RateLimiter[R]) Len() int { return len(l.policies) }

// Name returns policy i's name.
func (l *RateLimiter[R]) Name(i int) string { return l.policies[i].Name }

// Shadow reports whether policy i is a shadow policy.
func (l *RateLimiter[R]) Shadow(i int) bool { return l.policies[i].Shadow }

// inline is the number of policies whose states Decide keeps on the stack
// when the caller gives it no room.
const inline = 4

// Decide decides r. states, if it has room for every policy, receives
// what each policy's budget answered (for the RateLimit header fields);
// it must be zero (a fresh array on the transport's stack will do). With
// no room, Decide keeps the states itself, on its stack up to four.
func (l *RateLimiter[R]) Decide(ctx context.Context, r R, states []State) Outcome {
	// Each array is zeroed only when its branch runs: zeroing four states
	// when one is needed costs as much as the rest of the fast path.
	switch n := len(l.policies); {
	case len(states) >= n:
		return l.decide(ctx, r, states[:n])
	case n == 1:
		var one [1]State
		return l.decide(ctx, r, one[:])
	case n <= inline:
		var some [inline]State
		return l.decide(ctx, r, some[:n])
	default:
		return l.decide(ctx, r, make([]State, n))
	}
}

// decide is Decide with zero states, one per policy.
func (l *RateLimiter[R]) decide(ctx context.Context, r R, states []State) Outcome {
	if skip, err := l.log.skipped(ctx, r, l.skip); err != nil {
		return Outcome{Verdict: Internal, Policy: -1, Err: err}
	} else if skip {
		return Outcome{Verdict: Pass, Policy: -1}
	}
	for i := range l.policies {
		p := &l.policies[i]
		st := &states[i]
		stage, err := prepare(p, l.own[i], r, &st.req)
		if err == nil {
			continue
		}
		if stage == "key" {
			v, err := l.log.keyFailure(ctx, r, l.keys, err, "rate-limit key", p.Shadow, slog.String("policy", p.Name))
			if p.Shadow {
				st.skip = true // never changes the verdict
				continue
			}
			o := Outcome{Verdict: v, Policy: i, Err: err, KeyErr: true}
			if v == Gone {
				o.RetryAfter = l.unavail
			}
			return o
		}
		// A server bug, even in a shadow policy: logged as such, but a
		// shadow policy's never changes the verdict.
		if p.Shadow {
			st.skip = true
			l.log.at(ctx, r, &l.log.misconfig, slog.LevelError, "shadow policy's "+stage+" function failed",
				append([]slog.Attr{slog.String("policy", p.Name)}, panicAttrs(err)...)...)
			continue
		}
		l.log.at(ctx, r, &l.log.misconfig, slog.LevelError, stage+" function failed; answering "+l.log.names.Internal,
			append([]slog.Attr{slog.String("policy", p.Name)}, panicAttrs(err)...)...)
		return Outcome{Verdict: Internal, Policy: i, Err: err}
	}
	allowed := true // every budget answered and allowed: the common case
	for i := range l.policies {
		st := &states[i]
		if st.skip {
			allowed = false
			continue
		}
		var err error
		st.Decision, err = l.policies[i].Budget.Take(ctx, st.req)
		if err != nil {
			st.skip = true
			allowed = false
			l.failed(ctx, r, i, st, err)
			continue
		}
		st.OK = true
		allowed = allowed && st.Decision.Allowed
	}
	if allowed {
		return Outcome{Verdict: Pass, Policy: -1}
	}
	return l.combine(ctx, r, states)
}

// prepare finds policy p's request for r under recover, into req: its
// key, limit and cost, checked (see RateLimiter); own, if set, tells the
// budget's own limit. stage names the function that failed: "key",
// "limit" (an error, a panic or an invalid limit) or "cost" (a panic, or
// a cost that can never be granted).
func prepare[R any](p *Policy[R], own func() limiter.Limit, r R, req *limiter.Request) (stage string, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = recovered(stage, v)
		}
	}()
	stage = "key"
	if req.Key, err = p.Key(r); err != nil {
		return stage, err
	}
	if req.Key == "" {
		return stage, errEmptyKey
	}
	if p.Limit != nil {
		stage = "limit"
		if req.Limit, err = p.Limit(r); err != nil {
			return stage, err
		}
		if req.Limit != (limiter.Limit{}) {
			if err = req.Limit.Validate(); err != nil {
				return stage, fmt.Errorf("returned %v: %w", req.Limit, err)
			}
		}
	}
	req.N = 1
	if p.Cost != nil {
		stage = "cost"
		req.N = p.Cost(r)
		if err = checkCost(req, own); err != nil {
			return stage, err
		}
	}
	return "", nil
}

// checkCost checks req.N against the burst of req.Limit, else of the
// budget's own limit when own tells it.
func checkCost(req *limiter.Request, own func() limiter.Limit) error {
	if req.N < 0 {
		return fmt.Errorf("%w: cost %d is negative", limiter.ErrInvalidRequest, req.N)
	}
	burst := req.Limit.Burst
	if req.Limit == (limiter.Limit{}) {
		if req.N <= 1 || own == nil {
			return nil // 0 and 1 fit every limit
		}
		burst = own().Burst
	}
	if req.N > burst {
		return fmt.Errorf("%w: cost %d exceeds the burst of %d, so it could never be granted", limiter.ErrInvalidRequest, req.N, burst)
	}
	return nil
}

// failed keeps a budget's error in st for combine; a shadow policy's is
// only logged.
func (l *RateLimiter[R]) failed(ctx context.Context, r R, i int, st *State, err error) {
	p := &l.policies[i]
	if p.Shadow {
		if !gone(ctx, err) {
			l.log.at(ctx, r, &l.log.failed, slog.LevelWarn, "shadow policy's budget failed",
				slog.String("policy", p.Name), slog.Any("error", err))
		}
		return
	}
	st.err = err
}

// combine turns the policies' answers into the outcome; see RateLimiter.
func (l *RateLimiter[R]) combine(ctx context.Context, r R, states []State) Outcome {
	o := Outcome{Verdict: Pass, Policy: -1}
	rank := func(v Verdict) int {
		switch v {
		case Internal:
			return 4
		case Gone:
			return 3
		case Unavailable:
			return 2
		case Deny:
			return 1
		}
		return 0
	}
	for i := range states {
		st := &states[i]
		p := &l.policies[i]
		var v Verdict
		switch {
		case st.err != nil && (errors.Is(st.err, limiter.ErrInvalidRequest) || errors.Is(st.err, limiter.ErrInvalidLimit)):
			v = Internal
		case st.err != nil && gone(ctx, st.err):
			v = Gone
		case st.err != nil:
			v = Unavailable
		case st.OK && !st.Decision.Allowed && p.Shadow:
			if l.log.enabled(ctx, slog.LevelInfo) {
				l.log.at(ctx, r, &l.log.shadow, slog.LevelInfo, "shadow policy would refuse",
					slog.String("policy", p.Name), slog.Int("cost", st.req.N),
					slog.Duration("retry_after", st.Decision.RetryAfter))
			}
			if l.onShadow != nil {
				l.onShadow(observe.Decision{Policy: p.Name, Outcome: observe.Shadow, Source: observe.Source(st.Decision.Via), Tokens: st.req.N})
			}
			continue
		case st.OK && !st.Decision.Allowed:
			v = Deny
		default:
			continue
		}
		switch r, cur := rank(v), rank(o.Verdict); {
		case r > cur:
			o = Outcome{Verdict: v, RetryAfter: st.Decision.RetryAfter, Policy: i, Err: st.err}
		case r == cur && st.Decision.RetryAfter > o.RetryAfter:
			o.RetryAfter, o.Policy, o.Err = st.Decision.RetryAfter, i, st.err
		}
	}
	switch o.Verdict {
	case Internal:
		p := &l.policies[o.Policy]
		l.log.at(ctx, r, &l.log.misconfig, slog.LevelError, "the budget rejected the request's cost, key or limit; answering "+l.log.names.Internal,
			slog.String("policy", p.Name), slog.Int("cost", states[o.Policy].req.N), slog.Any("error", o.Err))
		o.RetryAfter = 0
	case Gone:
		if o.RetryAfter <= 0 {
			o.RetryAfter = l.unavail
		}
		l.log.at(ctx, r, &l.log.input, slog.LevelDebug, "request canceled while rate limiting", slog.Any("error", o.Err))
	case Unavailable:
		// Not Exact: see RateLimiter.
		if o.RetryAfter <= 0 {
			o.RetryAfter = l.unavail
		}
		d := states[o.Policy].Decision
		l.log.at(ctx, r, &l.log.failed, slog.LevelError, "rate limiter failed; answering "+l.log.names.Unavailable,
			slog.String("policy", l.policies[o.Policy].Name), slog.String("via", d.Via.String()),
			slog.Bool("unavailable", errors.Is(o.Err, limiter.ErrUnavailable)),
			slog.Duration("retry_after", o.RetryAfter), slog.Any("error", o.Err))
	case Deny:
		o.Exact = true
		if l.log.enabled(ctx, slog.LevelDebug) { // the denial path builds no record when off
			st := &states[o.Policy]
			l.log.at(ctx, r, &l.log.denied, slog.LevelDebug, "rate limit exceeded",
				slog.String("policy", l.policies[o.Policy].Name), slog.String("key", st.req.Key),
				slog.Int("cost", st.req.N), slog.Duration("retry_after", o.RetryAfter), slog.String("via", st.Decision.Via.String()))
		}
	}
	return o
}
