// Package grpcmw provides gRPC server interceptors that rate-limit calls
// with a limiter.Budget and tell clients when to come back.
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
//   - The budget rejected the cost or key (limiter.ErrInvalidN: a WithCost
//     beyond the burst or negative; limiter.ErrInvalidKey): codes.Internal,
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
// All interceptors and Limiters are safe for concurrent use.
package grpcmw
