// Package origin guards the calls a node makes to its origin (the
// database or service behind its caches), so that a storm of refetches,
// sessions or warm-ups reaches the origin at the pace of a budget and
// never as a herd.
//
// A Guard wraps each call: it books a token of a limiter.Budget (Local for
// one process; fleet.Strict or fleet.Leased for the fleet), holds the call
// until its token is due, up to Config.MaxWait, and calls the origin. The
// hold counts against the caller's deadline: a call is held only as long
// as leaves it Config.MinCallTime before its context's deadline, so a
// held call is never one its caller has already given up on. A call that
// cannot get a token within that wait is refused at once with an error
// (*RefusedError, errors.Is ErrRefused) that says when to come back: what
// a server sends as a 503 with Retry-After, or gRPC's UNAVAILABLE with the
// same hint. An optional concurrency cap (Config.MaxConcurrent) bounds
// the calls in flight.
//
// Every call's outcome is classified (Config.Classify: success, overload,
// timeout or error) and counted with its latency (Guard.Stats), the signal
// a controller of the origin's headroom reads.
//
// Calls come in two lanes (Lane). Foreground calls, a user's, are held for
// their token as above. Background calls (refetches after an
// invalidation, warm-ups) are never held and take only what the
// foreground leaves: on a fixed budget, a token only while the bucket
// keeps half its burst; with an adaptive limit (Config.Headroom, which
// package headroom's *Origin implements), only the spare rate the
// foreground leaves, shared by the fleet through a second key of the
// budget (Config.Name + "/background"). A foreground call held for its
// token means the bucket is in debt, so background work is then refused.
// With a Headroom, every budget request carries its limit, and every
// call and every refusal for the budget or the concurrency cap is
// reported to it (Outcome Refused for a refusal): refused calls are the
// demand the origin did not serve.
//
// Guard.Do is the blocking form for request handlers. Guard.Reserve is
// the form for event loops and simulations: it decides without waiting or
// allocating and says how long to hold the call (or when to come back);
// Hold.Record reports the outcome. Neither takes a lock: a foreground
// decision and its record on a healthy origin cost well under twice a
// Local budget's AllowN (BenchmarkGuardDecision against
// BenchmarkLocalAllowN), with no allocation.
//
// The guard is the library's form of what a storm simulation needs at the
// origin (herdcap's simulator runs it in every protected run).
package origin
