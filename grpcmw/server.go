package grpcmw

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// RateLimit returns the interceptors that pass every call through the
// policies before the handler, or an error wrapping ErrInvalidConfig that
// names the bad field. A stream is decided once, when it opens.
//
// Every policy's budget is asked for every call (each takes its own
// tokens, whatever the others answer), and the most restrictive answer
// decides (package doc, "Several policies"):
//
//   - allowed by every non-shadow policy: the handler is called;
//   - refused: codes.ResourceExhausted, told the refusing policy's wait,
//     spread by the budget so that callers refused together come back one
//     after another: an errdetails.RetryInfo and the
//     grpc-retry-pushback-ms trailer (the wait in milliseconds, rounded
//     up), sent Trailers-Only, so that a grpc-go client with a retry
//     policy comes back at its own turn (package doc, "Pushback");
//   - a budget failed (limiter.ErrUnavailable, say): codes.Unavailable,
//     told the budget's wait (or UnavailableRetryAfter) in RetryInfo only,
//     without pushback: that wait is the same for every caller (a
//     breaker's open period), so clients jitter it (herdcap's Client, or
//     a retry policy's own backoff) instead of coming back together as the
//     breaker half-opens; the message is generic, the error is logged;
//   - the call's context ended meanwhile: its own status (Canceled,
//     DeadlineExceeded);
//   - a key function failed: codes.InvalidArgument for ErrNoKey, its own
//     status if its error carries one, else codes.Internal; a limit or
//     cost function failed or panicked, or returned a limit or cost no
//     budget can grant: codes.Internal without pushback, since no retry
//     can succeed, and no policy's budget is asked.
//
// A handler's error that wraps an *origin.RefusedError (its call to the
// origin was refused by an origin.Guard: origin.ErrRefused) becomes
// codes.Unavailable, told the guard's wait, a turn the guard spread, in
// RetryInfo and as the pushback trailer, as httpmw.WriteRefusal answers it
// over HTTP; Admit's and Invalidate's interceptors do the same, and a chain
// of them maps it once.
//
// Both refusals are an *Error, whose status carries the RetryInfo.
// Health checking and reflection are skipped unless
// RateLimitConfig.LimitHealth. The interceptors are safe for concurrent
// use; on the allowed path they allocate nothing beyond what the key
// function and budget do.
func RateLimit(cfg RateLimitConfig, policies ...Policy) (Interceptors, error) {
	rl, err := newRateLimit(cfg, policies)
	if err != nil {
		return Interceptors{}, err
	}
	return interceptors(func(ctx context.Context, method string) (metadata.MD, error) {
		return nil, rl.check(ctx, method)
	}), nil
}

// rateLimit is the decision of RateLimit and Limiter.
type rateLimit struct {
	core *serverside.RateLimiter[call]
}

func newRateLimit(cfg RateLimitConfig, policies []Policy) (*rateLimit, error) {
	if len(policies) == 0 {
		return nil, configError("", errors.New("no Policy given"))
	}
	sc := serverside.RateLimitConfig[call]{
		Common:                common("grpcmw: RateLimit", cfg.Skip, cfg.LimitHealth, cfg.Logger),
		UnavailableRetryAfter: cfg.UnavailableRetryAfter,
		Path:                  "RateLimitConfig",
		Observe:               cfg.Observe,
	}
	keyed := 0
	for _, p := range policies {
		if p.Key != nil {
			keyed++
		}
		sp := serverside.Policy[call]{Name: p.Name, Budget: p.Budget, Key: keyFunc(p.Key), Shadow: p.Shadow}
		if f := p.Limit; f != nil {
			sp.Limit = func(c call) (limiter.Limit, error) { return f(c.ctx, c.method) }
		}
		if f := p.Cost; f != nil {
			sp.Cost = func(c call) int { return f(c.ctx, c.method) }
		}
		sc.Policies = append(sc.Policies, sp)
	}
	if keyed == len(policies) && (cfg.IPv4Prefix != 0 || cfg.IPv6Prefix != 0) {
		return nil, configError("", errors.New("RateLimitConfig.IPv4Prefix or IPv6Prefix is set, but every Policy has its own Key"))
	}
	var err error
	if sc.DefaultKey, err = peerKeyFunc("RateLimitConfig", cfg.IPv4Prefix, cfg.IPv6Prefix); err != nil {
		return nil, configError("", err)
	}
	core, err := serverside.NewRateLimiter(sc)
	if err != nil {
		return nil, configError("", err)
	}
	return &rateLimit{core: core}, nil
}

// check decides the call in ctx: nil when it may proceed, an *Error for a
// refusal or a failed budget (whose trailer the caller sets), or a status
// error.
func (rl *rateLimit) check(ctx context.Context, method string) error {
	o := rl.core.Decide(ctx, call{ctx, method}, nil)
	switch o.Verdict {
	case serverside.Pass:
		return nil
	case serverside.Deny:
		return &Error{Code: codes.ResourceExhausted, RetryAfter: o.RetryAfter, exact: o.Exact}
	case serverside.Unavailable:
		return &Error{Code: codes.Unavailable, RetryAfter: o.RetryAfter, cause: o.Err, exact: o.Exact}
	}
	return statusOf(o.Verdict, o.Err, o.KeyErr, "cannot identify the caller for rate limiting", "rate limiter misconfigured")
}

// statusOf maps the verdicts every interceptor answers alike onto a status
// error. A key function's error that carries a status of its own ends the
// call with it, whatever the verdict (see ErrNoKey); otherwise Gone is the
// context's status, BadRequest InvalidArgument (with noKey for a key
// function), Internal Internal (noKey for a key function, else
// misconfigured).
func statusOf(v serverside.Verdict, err error, keyErr bool, noKey, misconfigured string) error {
	if st, ok := status.FromError(err); ok && keyErr && err != nil {
		return st.Err()
	}
	switch v {
	case serverside.Gone:
		return status.FromContextError(err).Err()
	case serverside.BadRequest:
		if keyErr {
			return status.Error(codes.InvalidArgument, noKey)
		}
		return status.Error(codes.InvalidArgument, err.Error())
	case serverside.Internal:
		if keyErr {
			return status.Error(codes.Internal, noKey)
		}
		return status.Error(codes.Internal, misconfigured)
	}
	return status.Error(codes.Internal, misconfigured)
}

// interceptors returns the unary and stream interceptors of a decision
// made before the handler: decide returns the metadata to send with the
// response (nil for none) or the error that ends the call, an *Error's
// pushback trailer set first. No header has been sent then, so the status
// goes out Trailers-Only, with the pushback in it.
func interceptors(decide func(ctx context.Context, method string) (metadata.MD, error)) Interceptors {
	return Interceptors{
		Unary: func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			md, err := decide(ctx, info.FullMethod)
			if err != nil {
				if e, ok := err.(*Error); ok && e.exact {
					// Outside a grpc-go server there is no stream to set
					// it on, which is not worth failing the call for.
					_ = grpc.SetTrailer(ctx, e.trailer())
				}
				return nil, err
			}
			resp, err := handler(ctx, req)
			if e := originRefusal(err); e != nil {
				_ = grpc.SetTrailer(ctx, e.trailer())
				err = e
			}
			if md != nil {
				setResponseMD(ctx, md, err != nil)
			}
			return resp, err
		},
		Stream: func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			md, err := decide(ss.Context(), info.FullMethod)
			if err != nil {
				if e, ok := err.(*Error); ok && e.exact {
					ss.SetTrailer(e.trailer())
				}
				return err
			}
			if md == nil {
				err = handler(srv, ss)
			} else {
				ws := &mdStream{ServerStream: ss, md: md}
				err = handler(srv, ws)
				ws.finish()
			}
			if e := originRefusal(err); e != nil {
				ss.SetTrailer(e.trailer())
				return e
			}
			return err
		},
	}
}

// originRefusal returns the *Error that a handler's err becomes when it
// wraps an *origin.RefusedError (the origin guard refused the handler's
// call): codes.Unavailable, told the guard's wait, a turn it spread, in
// RetryInfo and as the pushback. Else, or when err is already an *Error
// (an interceptor further in mapped it), nil.
func originRefusal(err error) *Error {
	var re *origin.RefusedError
	if err == nil || !errors.As(err, &re) {
		return nil
	}
	if _, ok := err.(*Error); ok {
		return nil
	}
	return &Error{Code: codes.Unavailable, RetryAfter: re.RetryAfter, cause: err, origin: true, exact: true}
}
