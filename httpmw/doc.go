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
// Transport is an http.RoundTripper for one client: it sends the client ID,
// the epoch it has applied and its resume token; hands each invalidation
// notice, once and in order, to the application's callback; and on a 429
// or 503 waits as told (the millisecond slot with a few milliseconds of
// jitter, else Retry-After with a wider one; full-jitter backoff when there
// is no hint), and on a refused or broken connection with full-jitter
// backoff, before sending a request again, within a retry budget, an
// attempt limit and a total wait, and only when the request is safe to
// send again.
//
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
