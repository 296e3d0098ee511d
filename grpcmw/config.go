package grpcmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// ErrNoKey is what a key function returns (wrapped with %w) when the call
// carries nothing to key it by, such as a missing API key: the call ends
// with codes.InvalidArgument, logged at Debug as the client's fault. A key
// function may also return an error with a gRPC status of its own, which
// ends the call as it is, logged at Debug or Error as its code is the
// client's fault or the server's (package doc, "Status mapping"). Any
// other key-function error is the server's fault: codes.Internal, logged
// at Error.
var ErrNoKey = errors.New("grpcmw: call has no usable key")

// Interceptors are the unary and stream server interceptors of one
// herdcap feature (RateLimit, Admit or Invalidate). Install both:
//
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(rl.Unary), grpc.ChainStreamInterceptor(rl.Stream))
//
// A stream is decided once, when it opens, before the handler runs; what
// flows on an open stream is not limited.
type Interceptors struct {
	Unary  grpc.UnaryServerInterceptor
	Stream grpc.StreamServerInterceptor
}

// Policy is one rate limit RateLimit applies to every call: a budget, and
// how a call is keyed, limited and costed against it, from its context
// and full method name ("/package.Service/Method").
//
// The functions are called concurrently, once per call, under recover: an
// error or a panic ends the call (see RateLimit) and is logged naming the
// policy; it never crashes the server. The zero Policy is invalid: Budget
// is required.
type Policy struct {
	// Name names the policy in log records and errors: 1 to 64 bytes of
	// printable ASCII, unique within a RateLimit. If Name is "",
	// "default".
	Name string
	// Budget is the token bucket the policy draws from. Required.
	Budget limiter.Budget
	// Key names the bucket a call draws from. If Key is nil, PeerIP (by
	// RateLimitConfig's prefixes). An error wrapping ErrNoKey ends the
	// call with codes.InvalidArgument, an error carrying a gRPC status
	// with that status (ErrNoKey says whose fault each code is); any other
	// error, a panic or an empty key with codes.Internal. No policy's
	// budget is asked then.
	Key func(ctx context.Context, fullMethod string) (string, error)
	// Limit, if set, returns the call's own limit (per plan, per key, per
	// method), which the key's bucket then refills at, ramping on change
	// (see limiter.Request.Limit). If Limit is nil, or returns the zero
	// Limit, the budget's own. An error, a panic or an invalid limit
	// (limiter.Limit.Validate) ends the call with codes.Internal, before
	// any policy's budget is asked.
	Limit func(ctx context.Context, fullMethod string) (limiter.Limit, error)
	// Cost is the number of tokens a call takes. If Cost is nil, 1 (a
	// stream: 1 when it opens). A cost of 0 only reads the bucket; a
	// negative one, or one above the burst, can never be granted: a server
	// bug, answered codes.Internal without pushback before any policy's
	// budget is asked. The burst is the per-call limit's, else the
	// budget's own when it reports it through a Limit() limiter.Limit
	// method (as limiter.Local, fleet.Strict and fleet.Leased do); a
	// budget that does not is left to reject the cost itself, after the
	// other policies took theirs.
	Cost func(ctx context.Context, fullMethod string) int
	// Shadow makes the policy decide and log without ever refusing or
	// failing a call: to try a limit out before enforcing it. Its
	// functions' failures are logged as the server bugs they are (Error),
	// and the policy is then left out of the call.
	Shadow bool
}

// RateLimitConfig configures RateLimit and NewLimiter. The zero value
// limits every call but health checking and reflection, and tells clients
// to come back in a second when a budget fails without saying when.
type RateLimitConfig struct {
	// Skip, if set, exempts the methods for which it returns true: their
	// calls go straight to the handler, and nothing is asked. It is called
	// concurrently.
	Skip func(fullMethod string) bool
	// LimitHealth limits health checking (/grpc.health.v1.Health/) and
	// reflection (/grpc.reflection.v1.ServerReflection/ and v1alpha) too.
	// By default they are skipped, so that a client whose quota is spent
	// still passes a grpc-go channel's health check (healthCheckConfig).
	LimitHealth bool
	// UnavailableRetryAfter is the wait told with codes.Unavailable (in
	// RetryInfo) when a budget fails without one. If UnavailableRetryAfter
	// is 0, 1 s; it must not be negative.
	UnavailableRetryAfter time.Duration
	// IPv4Prefix is the prefix length by which PeerIP keys an IPv4 client,
	// for the policies without a Key: all clients in one such prefix
	// share a bucket. If IPv4Prefix is 0, 32 (the address); otherwise 1
	// to 32. It must be 0 when every policy has a Key.
	IPv4Prefix int
	// IPv6Prefix is the same for IPv6 clients. If IPv6Prefix is 0, 64: a
	// single host usually owns a whole /64, and could otherwise take a new
	// key for every call. Otherwise 1 to 128; it too must be 0 when every
	// policy has a Key.
	IPv6Prefix int
	// Logger receives budget failures and server bugs, shadow policies'
	// too (Error; a shadow policy's failed budget: Warn), shadow refusals
	// (Info), and refusals and client faults (Debug), each with the call's
	// method and throttled to about one record a second per kind with a
	// count of those suppressed. If Logger is nil, nothing is logged.
	Logger *slog.Logger
	// Observe receives a shadow policy's refusals as observe.Decision
	// events of Outcome observe.Shadow, named by the policy (its budget,
	// if observed, reports its own decision too). Read once at
	// construction; nil: none.
	Observe *observe.Hooks
}

// AdmitConfig configures Admit. The zero value gates every call but
// health checking and reflection, and identifies a client by its
// herdcap-client ID, else PeerIP.
type AdmitConfig struct {
	// Key, if set, returns a call's client ID (at most
	// admission.MaxClientIDLen, 256 bytes, as herdcap-client), in
	// place of herdcap-client and PeerIP: to key by an authenticated
	// identity, since herdcap-client is the client's own claim. Its errors
	// end the call as a Policy's Key's do.
	Key func(ctx context.Context, fullMethod string) (string, error)
	// Skip, if set, exempts the methods for which it returns true: their
	// calls open no session. Exempt every method but the ones that open a
	// session (a login, a connect) if the others should not be gated. It
	// is called concurrently.
	Skip func(fullMethod string) bool
	// LimitHealth gates health checking and reflection too (see
	// RateLimitConfig.LimitHealth); by default they pass.
	LimitHealth bool
	// UnavailableRetryAfter is the wait told (in RetryInfo) when the gate
	// fails without one. If UnavailableRetryAfter is 0, 1 s; it must not
	// be negative.
	UnavailableRetryAfter time.Duration
	// IPv4Prefix and IPv6Prefix are the prefix lengths by which PeerIP
	// keys a client that sends no herdcap-client, as
	// RateLimitConfig.IPv4Prefix and IPv6Prefix (defaults 32 and 64).
	// They must be 0 when Key is set.
	IPv4Prefix, IPv6Prefix int
	// Logger receives gate failures and server bugs (Error, throttled),
	// and refusals and malformed metadata (Debug). If Logger is nil,
	// nothing is logged.
	Logger *slog.Logger
}

// InvalidateConfig configures Invalidate. The zero value identifies a
// client by its herdcap-client ID, else PeerIP, sends at most 16 notices a
// call, and tells health checking and reflection nothing.
type InvalidateConfig struct {
	// Key, if set, returns a call's client ID, as AdmitConfig.Key.
	Key func(ctx context.Context, fullMethod string) (string, error)
	// MaxNotices is the most notices sent with one call; the client gets
	// the rest on its next. Notices are also added only while the
	// herdcap-invalidate value stays within 4 KiB, but always at least
	// one. If MaxNotices is 0, 16; it must not be negative.
	MaxNotices int
	// Skip, if set, exempts the methods for which it returns true: they
	// are told nothing. It is called concurrently.
	Skip func(fullMethod string) bool
	// NotifyHealth tells health checking and reflection calls their
	// notices too; by default they are told nothing.
	NotifyHealth bool
	// IPv4Prefix and IPv6Prefix are the prefix lengths by which PeerIP
	// keys a client that sends no herdcap-client, as
	// RateLimitConfig.IPv4Prefix and IPv6Prefix (defaults 32 and 64).
	// They must be 0 when Key is set.
	IPv4Prefix, IPv6Prefix int
	// Logger receives coordinator failures and server bugs (Error,
	// throttled), and malformed metadata (Debug). If Logger is nil,
	// nothing is logged.
	Logger *slog.Logger
}

// call is what the core's functions are given: the call's context and
// full method name.
type call struct {
	ctx    context.Context
	method string
}

// infrastructure reports whether method is health checking or reflection.
func infrastructure(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/")
}

// keys tells the key functions' errors apart (see ErrNoKey).
var keys = serverside.Keys{
	NoKey: ErrNoKey,
	ClientFault: func(err error) bool {
		st, ok := status.FromError(err)
		if !ok {
			return false
		}
		switch st.Code() {
		case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange,
			codes.Unauthenticated, codes.PermissionDenied, codes.NotFound:
			return true
		}
		return false
	},
	Gone: func(err error) bool {
		st, ok := status.FromError(err)
		return ok && (st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded)
	},
	Answer: func(err error) string {
		if st, ok := status.FromError(err); ok {
			return st.Code().String()
		}
		return ""
	},
}

// common is the core configuration of one interceptor kind: skip (plus
// health checking and reflection unless limitHealth), the key errors, the
// logger and the words of its records.
func common(component string, skip func(string) bool, limitHealth bool, log *slog.Logger) serverside.Common[call] {
	c := serverside.Common[call]{
		Keys:   keys,
		Logger: log,
		Names:  serverside.Names{Component: component, BadRequest: "InvalidArgument", Unavailable: "Unavailable", Internal: "Internal"},
		Attr:   func(c call) slog.Attr { return slog.String("method", c.method) },
	}
	switch {
	case skip != nil && !limitHealth:
		c.Skip = func(c call) bool { return infrastructure(c.method) || skip(c.method) }
	case skip != nil:
		c.Skip = func(c call) bool { return skip(c.method) }
	case !limitHealth:
		c.Skip = func(c call) bool { return infrastructure(c.method) }
	}
	return c
}

// keyFunc adapts a transport key function to the core.
func keyFunc(f func(context.Context, string) (string, error)) func(call) (string, error) {
	if f == nil {
		return nil
	}
	return func(c call) (string, error) { return f(c.ctx, c.method) }
}

// sessionKey returns the client-ID function of Admit and Invalidate (path
// names their config): key, if set, or by default the herdcap-client
// metadata when the call carries it, else PeerIP by the prefixes v4 and
// v6. A malformed herdcap-client is codes.InvalidArgument.
func sessionKey(path string, key func(context.Context, string) (string, error), v4, v6 int) (func(call) (string, error), error) {
	if key != nil {
		if v4 != 0 || v6 != 0 {
			return nil, fmt.Errorf("%[1]s.IPv4Prefix and IPv6Prefix configure the default key, which %[1]s.Key replaces; set one or the other", path)
		}
		return keyFunc(key), nil
	}
	peerKey, err := peerKeyFunc(path, v4, v6)
	if err != nil {
		return nil, err
	}
	return func(c call) (string, error) {
		if vals := metadata.ValueFromIncomingContext(c.ctx, metadataClient); vals != nil {
			id, err := wire.ParseClientID(vals)
			if err != nil {
				return "", status.Error(codes.InvalidArgument, "malformed "+metadataClient+" metadata")
			}
			return id, nil
		}
		return peerKey(c)
	}, nil
}

// peerKeyFunc returns PeerIP by the prefixes v4 and v6 (0: the defaults),
// or an error naming them after path.
func peerKeyFunc(path string, v4, v6 int) (func(call) (string, error), error) {
	p, err := serverside.CheckPrefixes(v4, v6)
	if err != nil {
		return nil, fmt.Errorf("%s.%w", path, err)
	}
	return func(c call) (string, error) { return peerIP(c.ctx, p) }, nil
}

// configError wraps a core configuration error as ErrInvalidConfig, after
// path.
func configError(path string, err error) error {
	return fmt.Errorf("%w: %s%w", ErrInvalidConfig, path, err)
}
