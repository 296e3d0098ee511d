// Package grpcmw provides gRPC interceptors that carry herdcap's rate
// limits, invalidation rollouts and reconnect admission, on the server and
// on the client.
//
// # Server use
//
// Build the interceptors from one budget and install them on the server:
//
//	b, err := limiter.NewLocal(limiter.PerSecond(100, 200))
//	unary, err := grpcmw.UnaryServerRateLimit(b,
//		grpcmw.WithSkip(func(m string) bool { return strings.HasPrefix(m, "/grpc.health.v1.Health/") }))
//	stream, err := grpcmw.StreamServerRateLimit(b)
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
//
// Each unary call takes one token (see WithCost) from the bucket of its key
// (see WithKeyFunc; by default PeerIP, the client's IP address). A stream
// takes its tokens once, when it opens, before the handler runs; its
// messages are not limited. Methods for which the WithSkip function returns
// true bypass the limit.
//
// Install the rate limit early in the chain, before anything that sets
// response headers (grpc.SetHeader, grpc.SendHeader): see the pushback
// section for why.
//
// # Status mapping
//
//   - Allowed: the handler is called.
//   - Quota spent (the Decision is not Allowed): codes.ResourceExhausted.
//   - The budget rejected the cost or key (limiter.ErrInvalidRequest: a
//     WithCost beyond the burst or negative, or an empty key): codes.Internal,
//     without pushback, since no retry can succeed.
//   - The budget returned another error (limiter.ErrUnavailable when a
//     Redis store is down under the fail-closed policy, or any other error):
//     codes.Unavailable. The message is generic, never the budget's error,
//     which is logged (WithLogger) instead.
//   - The key function failed: its own status if its error carries one,
//     otherwise codes.InvalidArgument (see KeyFunc).
//
// Both refusals are returned as an *Error. Their status carries an
// errdetails.RetryInfo detail whose RetryDelay is the Decision's RetryAfter
// (for a failed budget without one, WithUnavailableRetryAfter's delay), and
// the message states the delay too.
//
// # Pushback and Trailers-Only
//
// Along with the status, the interceptors send the grpc-retry-pushback-ms
// trailer (PushbackTrailer): the delay in milliseconds, rounded up. A grpc-go
// client whose service config has a retryPolicy listing the code
// (RESOURCE_EXHAUSTED, or UNAVAILABLE) waits that long before its next
// attempt instead of its own backoff. grpc-go reads the pushback only from a
// Trailers-Only response, one whose status arrives in the single header
// frame that also ends the stream; a response that has sent headers is also
// never retried. The interceptors therefore set the trailer (grpc.SetTrailer,
// or ServerStream.SetTrailer for streams) and return the error without
// sending any header, and the server writes it all in one frame. Anything
// earlier in the chain that sets header metadata turns the response into
// headers plus trailers, and clients then neither retry nor see the
// pushback.
//
// The Limiter type adapts a budget to go-grpc-middleware v2's ratelimit
// interceptors, which report every refusal as codes.ResourceExhausted; it
// sets the pushback trailer itself so that retry policies still work there.
//
// # Invalidation
//
// UnaryServerInvalidate and StreamServerInvalidate tell clients, on their
// ordinary responses, what to drop from their caches once an
// invalidate.Coordinator has released their cohort. A client takes part by
// sending the highest epoch it has applied (MetadataEpoch) and, usually,
// its ID (MetadataClient; else PeerIP); the notices come back in
// MetadataInvalidate, in the format of package httpmw's Herdcap-Invalidate
// field, with MetadataEpoch, in the header metadata of a successful call
// (a stream's first message), and in the trailer otherwise so that
// refusals further in stay Trailers-Only. Malformed herdcap metadata is
// codes.InvalidArgument; a coordinator error never fails the call.
//
// # Admission
//
// UnaryServerAdmission and StreamServerAdmission admit new sessions
// through an admission.Gate (a stream is a session; unary calls are gated
// unless WithSkip exempts them). A refusal is codes.Unavailable with the
// client's slot in RetryInfo and the pushback trailer, sent Trailers-Only
// as above; an admitted client gets a resume token (MetadataResume) that
// lets it back in later without spending the budget.
//
// Chain the interceptors in this order: rate limit, admission,
// invalidation, then anything of your own:
//
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(rl, admUnary, invUnary),
//		grpc.ChainStreamInterceptor(rlStream, admStream, invStream))
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
