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
// Guard.Do is the blocking form for request handlers. Guard.Reserve is
// the form for event loops and simulations: it decides without waiting or
// allocating and says how long to hold the call (or when to come back);
// Hold.Record reports the outcome.
//
// The guard is the library's form of what a storm simulation needs at the
// origin (herdcap's simulator runs it in every protected run).
package origin
