package grpcmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

// ErrSlowStartShed is wrapped by an *Error whose Code is
// codes.Unavailable from SlowStart: the cold node shed the call, and
// RetryAfter is when the client's place will be admitted.
var ErrSlowStartShed = errors.New("grpcmw: shed by slow start")

// SlowStartConfig configures SlowStart. The zero value decides every call
// but health checking and reflection, and identifies a client by its
// herdcap-client ID, else PeerIP.
type SlowStartConfig struct {
	// Key, if set, returns a call's client key in place of
	// herdcap-client and PeerIP. Its errors wrapping ErrNoKey, or
	// carrying a client-class status, make the call key-less (see
	// SlowStart); others end the call as a Policy's Key's do.
	Key func(ctx context.Context, fullMethod string) (string, error)
	// Skip, if set, exempts the methods for which it returns true. It is
	// called concurrently.
	Skip func(fullMethod string) bool
	// LimitHealth decides health checking and reflection too (see
	// RateLimitConfig.LimitHealth); by default they pass.
	LimitHealth bool
	// IPv4Prefix and IPv6Prefix are the prefix lengths by which PeerIP
	// keys a client that sends no herdcap-client, as
	// RateLimitConfig.IPv4Prefix and IPv6Prefix (defaults 32 and 64).
	// They must be 0 when Key is set.
	IPv4Prefix, IPv6Prefix int
	// Logger receives budget failures and server bugs (Error, throttled),
	// and sheds (Debug). If Logger is nil, nothing is logged.
	Logger *slog.Logger
}

// SlowStart returns the interceptors that let a cold node take a growing
// share of its calls through g (see package slowstart), or an error
// wrapping ErrInvalidConfig that names the bad field.
//
// A call is keyed by herdcap-client, else PeerIP (or SlowStartConfig.Key),
// so that a client is admitted or shed as a whole; a call with no usable
// key (malformed herdcap-client, no peer) is decided without one. Then:
//
//   - admitted: the handler runs;
//   - shed by the share or the fleet budget: codes.Unavailable with an
//     errdetails.RetryInfo and the grpc-retry-pushback-ms trailer both
//     holding the wait (when the client's place will be admitted, spread),
//     sent Trailers-Only; the error wraps ErrSlowStartShed on the server;
//   - the fleet budget failed: codes.Unavailable with the wait in
//     RetryInfo alone, without pushback, which clients jitter; the error
//     is logged, never sent;
//   - the call's context ended meanwhile: its own status;
//   - a Key function that fails otherwise, or panics: codes.Internal (or
//     the status it returned).
//
// The answers are httpmw.SlowStart's, call for request: one decision,
// internal/serverside's. The interceptors are safe for concurrent use.
func SlowStart(g *slowstart.Gate, cfg SlowStartConfig) (Interceptors, error) {
	if g == nil {
		return Interceptors{}, fmt.Errorf("%w: SlowStart's gate is nil", ErrInvalidConfig)
	}
	key, err := sessionKey("SlowStartConfig", cfg.Key, cfg.IPv4Prefix, cfg.IPv6Prefix)
	if err != nil {
		return Interceptors{}, configError("", err)
	}
	core, err := serverside.NewSlowStart(serverside.SlowStartConfig[call]{
		Common: common("grpcmw: SlowStart", cfg.Skip, cfg.LimitHealth, cfg.Logger), Gate: g, Key: key,
	})
	if err != nil {
		return Interceptors{}, configError("", err)
	}
	return interceptors(func(ctx context.Context, method string) (metadata.MD, error) {
		o := core.Decide(ctx, call{ctx, method})
		switch o.Verdict {
		case serverside.Pass:
			return nil, nil
		case serverside.Refuse:
			return nil, &Error{Code: codes.Unavailable, RetryAfter: o.RetryAfter, slowStart: true, exact: o.Exact}
		case serverside.Unavailable:
			return nil, &Error{Code: codes.Unavailable, RetryAfter: o.RetryAfter, cause: o.Err, slowStart: true, exact: o.Exact}
		}
		return nil, statusOf(o.Verdict, o.Err, o.KeyErr, "cannot identify the client", "slow start misconfigured")
	}), nil
}
