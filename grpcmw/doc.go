// Package grpcmw provides gRPC interceptors that carry herdcap's rate
// limits, invalidation rollouts and reconnect admission, on the server and
// on the client.
//
// # Server use
//
// RateLimit, Admit and Invalidate each return Interceptors, a unary and a
// stream server interceptor, built from a herdcap primitive and a config
// struct whose zero value is the default (a bad field is an error wrapping
// ErrInvalidConfig that names it). Install both of each, in this order:
// rate limit, admission, invalidation, then anything of your own, so that
// refused calls cost nothing further:
//
//	budget, err := limiter.NewLocal(limiter.PerSecond(100, 200), limiter.Config{})
//	rl, err := grpcmw.RateLimit(grpcmw.RateLimitConfig{}, grpcmw.Policy{Budget: budget})
//	adm, err := grpcmw.Admit(gate, grpcmw.AdmitConfig{})
//	inv, err := grpcmw.Invalidate(coordinator, grpcmw.InvalidateConfig{})
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(rl.Unary, adm.Unary, inv.Unary),
//		grpc.ChainStreamInterceptor(rl.Stream, adm.Stream, inv.Stream))
//
// A stream is decided once, when it opens, before the handler runs; what
// flows on an open stream is not limited. The decisions are made by one
// transport-neutral core shared with package httpmw, so the two
// transports answer alike: the same key errors, the same tickets, the same
// handling of a context that ends.
//
// Health checking (/grpc.health.v1.Health/) and reflection
// (/grpc.reflection.v1.ServerReflection/ and v1alpha) are skipped by every
// server interceptor unless RateLimitConfig.LimitHealth (or
// AdmitConfig.LimitHealth, InvalidateConfig.NotifyHealth) says otherwise:
// a client whose quota is spent must still pass a grpc-go channel's
// health check (healthCheckConfig), or the channel would fail every call
// with Unavailable.
//
// Each call is keyed by PeerIP (an IPv6 client by its /64, an IPv4 client
// by its address; RateLimitConfig.IPv6Prefix and IPv4Prefix change that)
// unless a Policy's Key says otherwise; Admit and Invalidate prefer the
// client's own herdcap-client ID when it sends one.
//
// # Several policies
//
// A RateLimit with several policies (per client IP and per tenant, say)
// limits a call by all of them. Every policy's budget is asked, each
// taking its own tokens whatever the others answer, as Envoy's rate limit
// filter does: the policies are independent quotas. The most restrictive
// answer decides: a budget that rejects the call's cost or limit
// (Internal) before a failed budget (Unavailable) before a refusal
// (ResourceExhausted, told the longest wait of the refusing policies). A
// Shadow policy is asked and logged but never refuses: it never changes a
// call's status.
//
// # Status mapping
//
//   - Allowed: the handler is called.
//   - A quota is spent: codes.ResourceExhausted.
//   - A budget failed (limiter.ErrUnavailable when a Redis store is down
//     under the fail-closed policy, or any other error), or Admit refused
//     a new session or its gate failed: codes.Unavailable. The message is
//     generic, never the budget's error, which is logged instead.
//   - The handler returned an error wrapping an *origin.RefusedError (an
//     origin.Guard refused its call to the origin): codes.Unavailable,
//     told the guard's wait in RetryInfo and as the pushback, as
//     httpmw.WriteRefusal answers it (any of RateLimit's, Admit's or
//     Invalidate's interceptors maps it).
//   - The call's context ended while it was decided: its own status
//     (Canceled, DeadlineExceeded).
//   - A key function failed: codes.InvalidArgument for an error wrapping
//     ErrNoKey (and for malformed herdcap metadata), the error's own status
//     if it carries one, else codes.Internal. The log tells whose fault
//     it was: the client's (Debug) for ErrNoKey and the codes
//     InvalidArgument, FailedPrecondition, OutOfRange, Unauthenticated,
//     PermissionDenied and NotFound (the codes mapped to an HTTP 4xx
//     other than 409, 429 and 499: a missing, malformed or unknown
//     credential, which no retry of the same call fixes); the server's
//     (Error, throttled) for every other code (Unavailable, Internal,
//     Unknown, DeadlineExceeded, ResourceExhausted, Aborted, ...: the key
//     store is down, slow or out of quota), for an error without a status
//     and for a panic. Canceled or DeadlineExceeded once the call's own
//     context has ended, or the context's own error, mean the caller left
//     (Debug).
//   - A limit or cost function failed or panicked, or returned a limit
//     or cost that no budget can grant (an invalid limit, a negative cost
//     or one beyond the burst): codes.Internal, without pushback, since no
//     retry can succeed; no policy's budget is asked.
//
// Both kinds of refusal are returned as an *Error. Their status carries an
// errdetails.RetryInfo detail whose RetryDelay is the wait, and the
// message states the wait too.
//
// # Pushback and Trailers-Only
//
// Along with the status of a refusal whose wait is a turn spread for the
// caller (a spent quota; an admission slot or deferral, or a failed gate's
// wait, which the gate spreads too), the interceptors send the
// grpc-retry-pushback-ms trailer: the wait in milliseconds, rounded up. A
// grpc-go client whose service config has a retryPolicy listing the code
// (RESOURCE_EXHAUSTED, or UNAVAILABLE) waits exactly that long before its
// next attempt instead of its own backoff. The wait is the budget's
// spread one: callers refused together are told successive times, a
// refill interval apart (limiter.Decision.RetryAfter), so plain grpc-go
// clients refused together come back one after another at the bucket's
// rate, not together.
//
// A failed budget's wait is no such turn: every caller is told the same
// one (a breaker's open period, RateLimitConfig.UnavailableRetryAfter).
// Sent as the pushback, it would bring them all back in the same
// millisecond, just as the breaker half-opens. So it goes in RetryInfo
// only: herdcap's Client adds its coarse jitter to it (see "Client
// side"), and a retry policy uses its own jittered backoff.
//
// grpc-go reads the pushback only from a Trailers-Only response, one whose
// status arrives in the single header frame that also ends the stream; a
// response that has sent headers is also never retried. The interceptors
// therefore set the trailer (grpc.SetTrailer, or ServerStream.SetTrailer
// for streams) and return the error without sending any header, and the
// server writes it all in one frame. Anything earlier in the chain that
// sets header metadata turns the response into headers plus trailers, and
// clients then neither retry nor see the pushback: install the rate limit
// and admission first.
//
// The Limiter type adapts RateLimit's decision to go-grpc-middleware v2's
// ratelimit interceptors, which report every refusal as
// codes.ResourceExhausted; it sets the pushback trailer itself so that
// retry policies still work there.
//
// # Invalidation and admission
//
// Invalidate tells clients, on their ordinary responses, what to drop from
// their caches once an invalidate.Coordinator has released their cohort.
// A client takes part by sending the highest epoch it has applied
// (herdcap-epoch) and, usually, its ID (herdcap-client); the notices come
// back in herdcap-invalidate with herdcap-epoch, in the header metadata of
// a successful call (a stream's first message), and in the trailer
// otherwise, so that refusals further in stay Trailers-Only.
//
// Admit admits new sessions through an admission.Gate (a stream is a
// session; unary calls are gated unless AdmitConfig.Skip exempts them). A
// refusal is codes.Unavailable with the client's slot in RetryInfo and the
// pushback trailer, sent Trailers-Only; an admitted client gets a ticket
// (herdcap-ticket) that lets it back in later without spending the budget.
// PeerIP keys a client that sends no herdcap-client by the prefixes of
// AdmitConfig.IPv4Prefix and IPv6Prefix (InvalidateConfig's for
// Invalidate).
//
// SlowStart lets a cold node take a growing share of its clients through
// a slowstart.Gate; the others get codes.Unavailable with the wait in
// RetryInfo and the pushback trailer, Trailers-Only, as Admit's refusals.
//
// # Wire protocol
//
// The herdcap metadata keys carry the values of package httpmw's header
// fields of the same names, so that one client library or gateway can
// speak both:
//
//	herdcap-client      request   the client ID: 1 to 256 bytes (admission.MaxClientIDLen) of visible ASCII but the comma, one value
//	herdcap-epoch       request   the highest epoch applied: 1 to 16 digits, at most 2^53 - 1, one value
//	                    response  the epoch to record after the notices
//	herdcap-invalidate  response  notices: "scope";epoch=N;id="rollout", ...
//	herdcap-ticket      both      the session's ticket
//
// herdcap-client is self-asserted: a client may name any ID, which moves
// it to another cohort or slot but gets it nothing a new ID would not; set
// a Key to key by an authenticated identity instead. A call without
// herdcap-epoch takes no part in invalidation. A missing, malformed,
// expired or foreign ticket makes the call a new session, never an error.
// Other malformed herdcap metadata is codes.InvalidArgument. The pushback
// trailer is gRPC's standard grpc-retry-pushback-ms.
//
// # Client side
//
// A Client (NewClient, ClientConfig) holds one client's herdcap state and
// provides the unary and stream client interceptors: they send the client
// ID, applied epoch and ticket, apply each notice once and in order through
// the application's callback, and retry refusals. Install both:
//
//	hc, err := grpcmw.NewClient(grpcmw.ClientConfig{ClientID: id, OnInvalidate: drop})
//	conn, err := grpc.NewClient(target,
//		grpc.WithChainUnaryInterceptor(hc.UnaryInterceptor()),
//		grpc.WithChainStreamInterceptor(hc.StreamInterceptor()),
//		grpc.WithDisableRetry()) // the Client retries; see below
//
// A call that fails with one of the retry codes (ClientConfig.RetryCodes,
// default codes.Unavailable and codes.ResourceExhausted) is sent again
// when the retry budget allows it (Retry.Budget: every failure with a
// retry code takes a token, every success gives a fraction back), fewer
// than Retry.MaxAttempts attempts were made, the wait fits in what is left
// of Retry.MaxWait, and the server did not forbid it (a
// grpc-retry-pushback-ms trailer that is not a non-negative integer means
// "do not retry", as in gRPC's retry design). The wait is the server's
// hint, and never less than it:
//
//   - the pushback trailer, the exact millisecond the server computed (for
//     the admission interceptors, a slot already spread at the admission's
//     rate): the hint plus at most a few milliseconds of jitter
//     (retry.Backoff.DelaySlot, by default under 5 ms), so that a herd
//     comes back as flat as the slots were booked;
//   - else an errdetails.RetryInfo detail, which any server may send alike
//     to many clients: the hint plus a wider jitter
//     (retry.Backoff.DelayHint, by default up to 10% and at most a
//     second);
//   - no hint (a pushback of 0, or a connection failure grpc-go reports
//     as codes.Unavailable): exponential backoff with full jitter.
//
// A wait ends early when the call's context is done.
//
// Like a service config's retryPolicy, this treats the retry codes as
// meaning the call was not processed; list only codes your handlers do
// not return after side effects. A stream is retried only while it opens:
// a server-streaming call (one request message) whose first receive fails
// with a retry code before any response arrived is opened again and its
// request sent again. Client-streaming and bidirectional streams are never
// retried: their refusal is returned, after the notices and ticket are
// applied.
//
// # With grpc-go's own retries
//
// grpc-go retries by itself when the service config has a retryPolicy (or
// transparently, for attempts that never reached a server), and it honours
// the pushback too. The interceptors sit outside those retries: they see
// only the outcome after grpc-go's last attempt, so retrying then would
// multiply the attempts (maxAttempts × maxAttempts). Use one or the other:
//
//   - let the Client retry: no retryPolicy for the methods it calls (or
//     grpc.WithDisableRetry(), which does not disable transparent retries,
//     as they are safe), and the budget, backoff and bounds above apply;
//   - let grpc-go retry: keep the retryPolicy (with retryThrottling for a
//     budget) and build the Client with Retry.MaxAttempts 1, so that it
//     only carries metadata and applies notices.
//
// All interceptors, Limiters and Clients are safe for concurrent use.
package grpcmw
