// Package httpmw provides net/http middleware and a client transport that
// carry herdcap's rate limits, invalidation rollouts and reconnect admission
// over HTTP.
//
// # Server side
//
// Three middlewares, each of the standard func(http.Handler) http.Handler
// shape, built from a herdcap primitive and a config struct whose zero
// value is the default (a bad field is an error wrapping ErrInvalidConfig
// that names it):
//
//   - RateLimit passes every request through one or more Policy values,
//     each a limiter.Budget with its key, per-request limit and cost: 429
//     with Retry-After and the IETF RateLimit fields when a quota is
//     spent, 503 with Retry-After when a budget fails.
//   - Admit admits new sessions through an admission.Gate: 503 with
//     Retry-After (whole seconds) and Herdcap-Retry-After-Ms (the exact
//     slot) when the gate is full; an admitted client is handed a ticket
//     (Herdcap-Ticket) that lets it back in later without spending the
//     budget.
//   - Invalidate tells each client, on its ordinary responses, what to drop
//     from its caches once an invalidate.Coordinator has released its
//     cohort (Herdcap-Invalidate, Herdcap-Epoch).
//   - SlowStart lets a cold node take a growing share of its clients
//     through a slowstart.Gate: 503 with Retry-After and
//     Herdcap-Retry-After-Ms for the others.
//
// A handler whose call to its origin is refused by an origin.Guard answers
// with WriteRefusal: 503 with Retry-After and Herdcap-Retry-After-Ms.
//
// Chain them outermost first: RateLimit, then Admit, then Invalidate, then
// the application, so that refused requests cost nothing further:
//
//	h := rl(adm(inv(app)))
//
// All three key a request by the client's address (ClientIP: forwarding
// headers are believed only from trusted proxies; an IPv6 client is keyed
// by its /64); Admit and Invalidate prefer the client's own Herdcap-Client
// ID when it sends one, and a Key function replaces either rule. The
// decisions themselves are made by one transport-neutral core shared with
// package grpcmw, so the two transports answer alike.
//
// # Several policies
//
// A RateLimit with several policies (per client IP and per API key, say),
// or several RateLimit middlewares stacked, limit a request by all of
// them. Every policy's budget is asked, each taking its own tokens
// whatever the others answer, as Envoy's rate limit filter does: the
// policies are independent quotas. The most restrictive answer decides: a
// budget that rejects the request's cost or limit (500) before a failed
// budget (503) before a refusal (429, told the longest wait of the
// refusing policies). A Shadow policy is asked and reported (logs, and
// the fields with ShadowHeaders) but never refuses: it never changes a
// response's status.
//
// The fields list every policy, as draft-ietf-httpapi-ratelimit-headers-11
// allows: one RateLimit-Policy member per policy, and one RateLimit field
// line per middleware holding a member per policy. A middleware adds its
// field lines after those already set (by a middleware further out),
// never replacing them, so a client sees one list of every policy its
// request passed. A handler may change the fields as it likes: every
// value is the response's own.
//
// # Plain clients
//
// A budget spreads the refusals of one key (limiter.Decision.RetryAfter):
// callers refused together are told successive times, a refill interval
// apart, so they come back at the bucket's rate instead of together. But
// Retry-After carries whole seconds, and plain HTTP clients told the same
// second would come back together after all. So a refusal whose wait has a
// fraction of a second is held for that fraction (at most 1 s, ended early
// by the request's context) and then sent with Retry-After the whole
// seconds left, possibly 0: a client that waits exactly Retry-After
// arrives at its own time. At most RateLimitConfig.MaxHeld refusals are
// held at once; beyond that a refusal is answered at once, its wait
// rounded up to whole seconds (at least 1). Herdcap-Retry-After-Ms carries
// the exact wait left, in milliseconds, for herdcap's Transport.
//
// # The RateLimit fields
//
// RateLimit-Policy and RateLimit follow draft-ietf-httpapi-ratelimit-headers-11
// ("RateLimit header fields for HTTP", May 2026), sections 3 and 4: both are
// structured-field Lists (RFC 9651) with one Item per policy, whose value is
// the policy name as a String:
//
//	RateLimit-Policy: "default";q=10;w=2
//	RateLimit: "default";r=7;t=1
//
// A token bucket maps onto them as follows.
//
//   - q (quota, section 3.1.1) is the burst: the most a client may spend at
//     once.
//   - w (window, section 3.1.3) is the time the bucket takes to refill
//     from empty to full, burst / rate, rounded up to whole seconds (the
//     draft allows no sub-second precision) and at least 1. Rounding up
//     keeps q/w at or below the sustained rate, so a client that paces
//     itself by the policy is never throttled by it.
//   - r (available quota, section 4.1.1) is limiter.Decision.Remaining,
//     the whole tokens left after this request.
//   - t (effective window, section 4.1.2) is, for a policy that allowed
//     the request, the time until its bucket is full again, rounded up: a
//     conservative window, since the bucket keeps refilling within it. For
//     the policy that refused it, the Retry-After value, so that
//     Retry-After never points earlier than the end of the effective
//     window (section 6); for another refusing policy, its own wait.
//
// With RateLimitConfig.LegacyHeaders, X-RateLimit-Limit (q),
// X-RateLimit-Remaining (r) and X-RateLimit-Reset (t, in seconds from now)
// are sent too, for the most restrictive policy: the one that refused,
// else the one with the fewest tokens left, across stacked middlewares.
//
// # Wire protocol
//
// The herdcap header fields, shared with herdcap's Transport and, as gRPC
// metadata of the same names in lower case, with package grpcmw:
//
//	Herdcap-Client          request   the client ID
//	Herdcap-Epoch           request   the highest epoch applied
//	                        response  the epoch to record after the notices
//	Herdcap-Invalidate      response  notices: "scope";epoch=N;id="rollout", ...
//	Herdcap-Ticket          both      the session's ticket
//	Herdcap-Retry-After-Ms  response  the exact wait of a refusal's turn, in ms
//
// Herdcap-Client is 1 to admission.MaxClientIDLen (256) bytes of visible
// ASCII (0x21 to 0x7E) other than the comma, in one field line, the same
// bound as an AdmitConfig.Key's IDs. Admit and Invalidate use it, when no
// Key is set, to place the client in cohorts and admission slots. It is
// self-asserted: a client may name any ID, which moves it to another
// cohort or slot but gets it nothing a new ID would not; set a Key to key
// by an authenticated identity instead.
//
// Herdcap-Epoch (request) is the highest invalidation epoch the client has
// applied, in decimal: 1 to 16 digits, at most 2^53 - 1, in one field
// line. A request without it is from a client that takes no part in
// invalidation. (response) Set with Herdcap-Invalidate: the highest epoch
// among its notices, which the client records as applied once it has
// applied them all. A client that does not read the notices one by one
// may drop everything it caches and record this epoch.
//
// Herdcap-Invalidate tells the client what to drop: a structured-field
// List of notices in epoch order, each an Item whose value is the scope,
// with the parameters epoch (an Integer) and id (the rollout ID):
//
//	Herdcap-Invalidate: "tag:catalog";epoch=1767225600000;id="catalog-v2", "*";epoch=1767225600001;id="oops-1"
//
// A scope or ID that is printable ASCII is a String, anything else a Byte
// Sequence (:base64:). An epoch above 15 digits, which a structured-field
// Integer cannot carry, is sent as a String of its digits. Parameters other
// than epoch and id are reserved: clients must ignore them.
//
// Herdcap-Ticket carries a session ticket (admission.Config.TicketKeys): in
// a response from Admit, the ticket an admitted client presents on its
// next request; in a request, the ticket the client holds. A missing,
// malformed, expired or foreign ticket makes the request a new session; it
// is never an error.
//
// Herdcap-Retry-After-Ms accompanies Retry-After on refusals whose wait
// is a turn the server spread, the caller's own: a 429 (the budget's
// turn for it), Admit's 503 (a slot, a deferral, or a failed gate's
// wait, which the gate spreads too), and WriteRefusal's 503 (the origin
// guard's wait, which its budget spreads). It is the exact wait in milliseconds
// (at least 1), where Retry-After carries whole seconds. Clients that
// understand it (Transport) come back at their turn instead of on a whole
// second, which keeps returns flat. A 503 from a failed budget carries
// Retry-After alone: its wait is the same for every caller (a breaker's
// open period, RateLimitConfig.UnavailableRetryAfter), so clients must
// add jitter of their own rather than come back in the same millisecond.
//
// Malformed herdcap fields from a client get 400 Bad Request (a ticket
// excepted: a bad one only makes the request a new session); the
// Transport applies a malformed notice list up to its first fault. Neither
// side ever panics on its input.
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
//   - Herdcap-Retry-After-Ms, the exact wait the server already spread (an
//     admission slot or deferral, a rate-limit refusal's turn): the wait
//     plus at most a
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
package httpmw
