package grpcmw

import (
	"context"

	"google.golang.org/grpc"
)

// Limiter adapts RateLimit's decision to the Limiter interface of
// go-grpc-middleware v2's interceptors/ratelimit package,
//
//	interface{ Limit(ctx context.Context) error }
//
// which it satisfies structurally, so that herdcap does not depend on that
// module. Use it where a go-grpc-middleware chain is already in place;
// otherwise prefer RateLimit, which keeps the status code and details
// intact.
//
// go-grpc-middleware's interceptors turn any error from Limit into
// codes.ResourceExhausted with the error's text in the message, dropping
// its code and details. So that clients still learn when to come back
// from a refusal, Limit sets the grpc-retry-pushback-ms trailer itself
// (through grpc.SetTrailer on ctx) before returning, as RateLimit does:
// for a refusal's turn, not for a failed budget's wait; the middleware
// sends no header before failing the call, so the status still goes out
// Trailers-Only and grpc-go retry policies honour the pushback. The
// returned *Error also states the wait in its message and carries it in
// RetryAfter.
//
// A Limiter is safe for concurrent use.
type Limiter struct {
	rl *rateLimit
}

// NewLimiter returns a Limiter deciding as RateLimit(cfg, policies...)
// does: the same policies, skips (health checking and reflection unless
// cfg.LimitHealth) and errors. The method name given to the policies'
// functions comes from grpc.Method(ctx) ("" outside a grpc-go server).
func NewLimiter(cfg RateLimitConfig, policies ...Policy) (*Limiter, error) {
	rl, err := newRateLimit(cfg, policies)
	if err != nil {
		return nil, err
	}
	return &Limiter{rl: rl}, nil
}

// Limit decides the call in ctx. It returns nil when the call may proceed;
// an *Error when a quota is spent (Code codes.ResourceExhausted, after
// setting the pushback trailer on the server stream in ctx, if any) or a
// budget failed (codes.Unavailable, without pushback); or a status error,
// as RateLimit's.
func (l *Limiter) Limit(ctx context.Context) error {
	method, _ := grpc.Method(ctx)
	err := l.rl.check(ctx, method)
	if e, ok := err.(*Error); ok && e.exact {
		_ = grpc.SetTrailer(ctx, e.trailer()) // no stream outside a server: nothing to set
	}
	return err
}
