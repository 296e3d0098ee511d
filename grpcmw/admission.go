package grpcmw

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/limiter/admission"
)

// Admit returns the interceptors that admit the calls that start sessions
// through g, so that a herd of clients coming back at once is let in as a
// flat stream; or an error wrapping ErrInvalidConfig that names the bad
// field. A stream is a session; every unary call passes the gate too
// unless AdmitConfig.Skip exempts its method, and the ticket tells new
// sessions from rejoining ones.
//
// The call's client ID is herdcap-client, else PeerIP (or AdmitConfig.Key);
// its ticket is herdcap-ticket (a missing, malformed, expired or foreign
// ticket only makes the call a new session). Then:
//
//   - admitted: the handler runs; when g issues tickets
//     (admission.Config.TicketKeys), herdcap-ticket carries the client's
//     fresh ticket with the response (header on success, trailer
//     otherwise);
//   - refused: codes.Unavailable, with an errdetails.RetryInfo and the
//     grpc-retry-pushback-ms trailer both holding the slot, sent
//     Trailers-Only; the error wraps ErrAdmissionRefused on the server. A
//     booked client that comes back after the wait (within the gate's slot
//     grace) is let in;
//   - g failed (limiter.ErrUnavailable under FailClosed, ...):
//     codes.Unavailable with a generic message, and the decision's wait
//     in the same details and trailer (a gate spreads those waits too),
//     else AdmitConfig.UnavailableRetryAfter in RetryInfo alone, without
//     pushback, which clients jitter; the error is logged, never sent;
//   - the call's context ended meanwhile: its own status;
//   - g rejected the client ID (a Key returning more than
//     admission.MaxClientIDLen bytes): codes.Internal without pushback;
//   - a malformed herdcap-client: codes.InvalidArgument; Key's errors as
//     for RateLimit.
//
// Health checking and reflection pass unless AdmitConfig.LimitHealth.
// Install Admit before anything that sets response headers, as for the
// rate limit. The interceptors are safe for concurrent use.
func Admit(g *admission.Gate, cfg AdmitConfig) (Interceptors, error) {
	if g == nil {
		return Interceptors{}, fmt.Errorf("%w: Admit's gate is nil", ErrInvalidConfig)
	}
	key, err := sessionKey("AdmitConfig", cfg.Key, cfg.IPv4Prefix, cfg.IPv6Prefix)
	if err != nil {
		return Interceptors{}, configError("", err)
	}
	core, err := serverside.NewAdmitter(serverside.AdmitConfig[call]{
		Common: common("grpcmw: Admit", cfg.Skip, cfg.LimitHealth, cfg.Logger),
		Gate:   g, Key: key, UnavailableRetryAfter: cfg.UnavailableRetryAfter, Path: "AdmitConfig",
	})
	if err != nil {
		return Interceptors{}, configError("", err)
	}
	return interceptors(func(ctx context.Context, method string) (metadata.MD, error) {
		o := core.Decide(ctx, call{ctx, method}, metadata.ValueFromIncomingContext(ctx, metadataTicket))
		switch o.Verdict {
		case serverside.Pass:
			if o.Ticket != "" {
				return metadata.MD{metadataTicket: {o.Ticket}}, nil
			}
			return nil, nil
		case serverside.Refuse:
			return nil, &Error{Code: codes.Unavailable, RetryAfter: o.RetryAfter, admission: true, exact: o.Exact}
		case serverside.Unavailable:
			return nil, &Error{Code: codes.Unavailable, RetryAfter: o.RetryAfter, cause: o.Err, admission: true, exact: o.Exact}
		}
		return nil, statusOf(o.Verdict, o.Err, o.KeyErr, "cannot identify the client", "admission misconfigured")
	}), nil
}
