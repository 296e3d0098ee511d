package grpcmw

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/limiter"
)

// gate is the decision shared by the interceptors and the Limiter adapter.
type gate struct {
	budget limiter.Budget
	config
}

func newGate(b limiter.Budget, opts []Option) (*gate, error) {
	c, err := buildConfig(b, opts)
	if err != nil {
		return nil, err
	}
	return &gate{budget: b, config: c}, nil
}

// check returns nil when the call may proceed. Otherwise it returns either
// an *Error (denied, or the budget failed), unwrapped, whose trailer the
// caller must set, or a status error from the key function.
func (g *gate) check(ctx context.Context, fullMethod string) error {
	if g.skip != nil && g.skip(fullMethod) {
		return nil
	}
	key, err := g.key(ctx, fullMethod)
	if err == nil && key == "" {
		err = errors.New("key function returned an empty key")
	}
	if err != nil {
		return g.keyError(ctx, fullMethod, err)
	}
	n := 1
	if g.cost != nil {
		n = g.cost(ctx, fullMethod)
	}
	d, err := g.budget.Take(ctx, limiter.Request{Key: key, N: n})
	switch {
	case errors.Is(err, limiter.ErrInvalidRequest):
		// The cost or key is one the budget can never grant: a server
		// bug, not a reason for the client to retry.
		g.logThrottled(ctx, &g.logs.misconfig, slog.LevelError, "grpcmw: the budget rejected the call's cost or key; answering Internal",
			slog.String("method", fullMethod), slog.Int("cost", n), slog.Any("error", err))
		return status.Error(codes.Internal, "rate limiter misconfigured")
	case err != nil:
		e := &Error{Code: codes.Unavailable, RetryAfter: d.RetryAfter, cause: err}
		if e.RetryAfter <= 0 {
			e.RetryAfter = g.unavailableRetry
		}
		g.logThrottled(ctx, &g.logs.failed, slog.LevelError, "grpcmw: rate limiter failed; answering Unavailable",
			slog.String("method", fullMethod), slog.Any("error", err), slog.Duration("retry_after", e.RetryAfter))
		return e
	case !d.Allowed:
		if g.logger.Enabled(ctx, slog.LevelDebug) { // the denial path builds no record when off
			g.logThrottled(ctx, &g.logs.denied, slog.LevelDebug, "grpcmw: rate limit exceeded",
				slog.String("method", fullMethod), slog.String("key", key), slog.Int("cost", n),
				slog.Duration("retry_after", d.RetryAfter), slog.String("source", d.Via.String()))
		}
		return &Error{Code: codes.ResourceExhausted, RetryAfter: d.RetryAfter}
	}
	return nil
}

func (c *config) keyError(ctx context.Context, fullMethod string, err error) error {
	if st, ok := status.FromError(err); ok {
		c.logThrottled(ctx, &c.logs.input, slog.LevelDebug, "grpcmw: key function rejected the call",
			slog.String("method", fullMethod), slog.Any("error", err))
		return st.Err()
	}
	c.logThrottled(ctx, &c.logs.key, slog.LevelWarn, "grpcmw: key function failed; answering InvalidArgument",
		slog.String("method", fullMethod), slog.Any("error", err))
	return status.Error(codes.InvalidArgument, "cannot identify the caller for rate limiting")
}

// UnaryServerRateLimit returns a unary server interceptor that takes tokens
// from b for every call before calling the handler. The key comes from the
// key function (default PeerIP), the number of tokens from the cost function
// (default 1).
//
// A call over the limit ends with codes.ResourceExhausted; a call the budget
// could not decide (it returned an error) ends with codes.Unavailable. The
// interceptor returns these as an *Error, whose GRPCStatus adds an
// errdetails.RetryInfo detail, and sets the grpc-retry-pushback-ms trailer,
// sent Trailers-Only so that grpc-go retry policies wait for it; see the
// package documentation. Key function errors end the call as described on
// KeyFunc.
//
// The constructor fails, naming the problem, on a nil budget (ErrNilBudget)
// or a bad option (ErrInvalidOption). The interceptor is safe for concurrent
// use; on the allowed path it allocates nothing beyond what the key function
// and budget do.
func UnaryServerRateLimit(b limiter.Budget, opts ...Option) (grpc.UnaryServerInterceptor, error) {
	g, err := newGate(b, opts)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := g.check(ctx, info.FullMethod); err != nil {
			if e, ok := err.(*Error); ok {
				// No header has been sent: the status goes out
				// Trailers-Only, with the pushback in it. Outside a
				// grpc-go server there is no stream to set it on,
				// which is not an error worth failing the call for.
				_ = grpc.SetTrailer(ctx, e.trailer())
			}
			return nil, err
		}
		return handler(ctx, req)
	}, nil
}

// StreamServerRateLimit returns a stream server interceptor that takes
// tokens from b once, when a stream opens, before calling the handler; what
// flows on an open stream is not limited. Keys, costs, status codes, details
// and the pushback trailer are as for UnaryServerRateLimit; the trailer is
// set with ServerStream.SetTrailer before any header is sent.
//
// The constructor fails on a nil budget or a bad option. The interceptor is
// safe for concurrent use.
func StreamServerRateLimit(b limiter.Budget, opts ...Option) (grpc.StreamServerInterceptor, error) {
	g, err := newGate(b, opts)
	if err != nil {
		return nil, err
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := g.check(ss.Context(), info.FullMethod); err != nil {
			if e, ok := err.(*Error); ok {
				ss.SetTrailer(e.trailer())
			}
			return err
		}
		return handler(srv, ss)
	}, nil
}
