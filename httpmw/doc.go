// Package httpmw provides net/http middleware and a client transport that
// carry herdcap's rate limits, invalidation rollouts and reconnect admission
// over HTTP.
//
// # Server side
//
// Three middlewares, each of the standard func(http.Handler) http.Handler
// shape, built from a herdcap primitive and functional options (an option
// given to a constructor it does not apply to is an error):
//
//   - RateLimit takes tokens from a limiter.Budget for every request: 429
//     with Retry-After and the IETF RateLimit fields when the quota is
//     spent, 503 when the limiter fails.
//   - Admit admits new sessions through an admission.Gate: 503 with
//     Retry-After (whole seconds) and Herdcap-Retry-After-Ms (the exact
//     slot) when the budget is spent; an admitted client is handed a
//     resume token (Herdcap-Resume) that lets it back in later without
//     spending the budget.
//   - Invalidate tells each client, on its ordinary responses, what to drop
//     from its caches once an invalidate.Coordinator has released its
//     cohort (Herdcap-Invalidate, Herdcap-Epoch).
//
// Chain them outermost first: RateLimit, then Admit, then Invalidate, then
// the application, so that refused requests cost nothing further:
//
//	h := rl(adm(inv(app)))
//
// All three key a request by the client IP address, trusting forwarding
// headers only from the proxies named by WithTrustedProxies; Admit and
// Invalidate prefer the client's own Herdcap-Client ID when it sends one,
// and WithKeyFunc replaces either rule.
//
// # Client side
//
// Transport (NewTransport, TransportConfig) is an http.RoundTripper for one
// client: it sends the client ID, the epoch it has applied and its
// session's ticket; hands each invalidation notice, once and in order, to
// the application's callback; and when turned away, waits and sends the
// request again.
//
// A 429 or 503 response is a refusal. The Transport sends the request
// again when all of these hold, and otherwise returns the refusal as it
// came:
//
//   - the request can be sent again safely: its method is idempotent (GET,
//     HEAD, OPTIONS, TRACE, PUT, DELETE) or it carries an Idempotency-Key
//     or X-Idempotency-Key header, and its body can be replayed (none, or
//     Request.GetBody set, as http.NewRequest does for in-memory bodies);
//   - the retry budget allows it (TransportConfig.Retry.Budget: every
//     refusal and connection failure takes a token, every other response
//     gives a fraction back);
//   - fewer than Retry.MaxAttempts attempts were made;
//   - the wait fits in what is left of Retry.MaxWait.
//
// The wait is the server's hint when it sent one, and never less than the
// hint:
//
//   - Herdcap-Retry-After-Ms, Admit's exact wait (a booked slot, or a
//     deferral the admission has already spread): the wait plus at most a
//     few milliseconds of jitter (retry.Backoff.DelaySlot, by default
//     under 5 ms), so that a herd comes back as flat as the slots were
//     booked;
//   - else Retry-After (delay-seconds or an HTTP date), which many clients
//     may be told alike: the hint plus a wider jitter
//     (retry.Backoff.DelayHint, by default up to 10% of the hint and at
//     most a second);
//   - no hint: exponential backoff with full jitter (retry.Backoff.Delay).
//
// A connection failure is retried like a refusal without a hint (full
// jitter, the same budget, attempts and wait bounds): the dial failed
// (refused, unreachable, timed out) or the connection broke before a
// response came (reset, or closed: EOF). A failed dial sent nothing, so
// any request whose body can be replayed is sent again; a broken
// connection may have delivered the request, so only requests that can be
// sent again safely are (as above). Other errors (the request's context,
// TLS, a name that does not resolve) are returned at once. When the
// Transport gives up on a connection failure, it returns the last
// attempt's error as the base transport gave it.
//
// A malformed Herdcap-Invalidate is applied up to its first bad notice and
// logged (TransportConfig.Logger).

// # Header fields
//
//	Herdcap-Client          request   the client ID (HeaderClient)
//	Herdcap-Epoch           request   the highest epoch applied (HeaderEpoch)
//	                        response  the epoch to record after the notices
//	Herdcap-Invalidate      response  notices: "scope";epoch=N;id="rollout", ... (HeaderInvalidate)
//	Herdcap-Resume          both      the session's resume token (HeaderResume)
//	Herdcap-Retry-After-Ms  response  the exact wait of a refusal (HeaderRetryAfterMillis)
//
// Malformed herdcap fields from a client get 400 Bad Request (a resume
// token excepted: a bad one only makes the request a new session); the
// Transport applies a malformed notice list up to its first fault. Neither
// side ever panics on its input.
package httpmw
