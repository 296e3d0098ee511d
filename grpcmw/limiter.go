package grpcmw

import (
	"context"

	"google.golang.org/grpc"

	"github.com/herdcap/herdcap/limiter"
)

// Limiter adapts a limiter.Budget to the Limiter interface of
// go-grpc-middleware v2's interceptors/ratelimit package,
//
//	interface{ Limit(ctx context.Context) error }
//
// which it satisfies structurally, so that herdcap does not depend on that
// module. Use it where a go-grpc-middleware chain is already in place;
// otherwise prefer UnaryServerRateLimit and StreamServerRateLimit, which
// keep the status code and details intact.
//
// go-grpc-middleware's interceptors turn any error from Limit into
// codes.ResourceExhausted with the error's text in the message, dropping its
// code and details. So that clients still learn when to come back, Limit sets
// the grpc-retry-pushback-ms trailer itself (through grpc.SetTrailer on ctx)
// before returning; the middleware sends no header before failing the call,
// so the status still goes out Trailers-Only and grpc-go retry policies
// honour the pushback. The returned *Error also states the delay in its
// message and carries it in RetryAfter.
//
// A Limiter is safe for concurrent use.
type Limiter struct {
	g *gate
}

// NewLimiter returns a Limiter taking tokens from b, configured by the same
// options as UnaryServerRateLimit. The method name passed to the key, cost
// and skip functions comes from grpc.Method(ctx) ("" outside a grpc-go
// server). It fails on a nil budget (ErrNilBudget) or a bad option
// (ErrInvalidOption).
func NewLimiter(b limiter.Budget, opts ...Option) (*Limiter, error) {
	g, err := newGate(b, opts)
	if err != nil {
		return nil, err
	}
	return &Limiter{g: g}, nil
}

// Limit takes tokens for the call in ctx. It returns nil when the call may
// proceed; an *Error when the quota is spent (Code codes.ResourceExhausted)
// or the budget failed (codes.Unavailable), after setting the pushback
// trailer on the server stream in ctx, if any; or the key function's error
// as a status error.
func (l *Limiter) Limit(ctx context.Context) error {
	method, _ := grpc.Method(ctx)
	err := l.g.check(ctx, method)
	if e, ok := err.(*Error); ok {
		_ = grpc.SetTrailer(ctx, e.trailer()) // no stream outside a server: nothing to set
	}
	return err
}
