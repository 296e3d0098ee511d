// Package limiter provides herdcap's budgets: keyed token buckets, in
// process or shared by a fleet through Redis, behind one small interface.
//
// Everything herdcap paces (requests, invalidation notices, reconnects,
// warm-up fetches) draws tokens from a Budget. Three backends implement it
// and pass one conformance suite, on single-node Redis and Redis Cluster
// alike (the one stated difference: Leased's Decision.Remaining is its
// node's view of the shared bucket):
//
//   - Local: golang.org/x/time/rate buckets in a bounded in-process map,
//     allocation-free on the hot path; the embedded default.
//   - Redis: one Lua script per decision (one round trip, Redis TIME as the
//     clock, hash-tagged keys that expire when idle): exact fleet-wide.
//   - Leased: tokens leased from the same Redis bucket in batches and spent
//     in process, refilled in the background: no round trip on the hot path,
//     with a stated overshoot bound.
//
// The Redis backends wrap every call in a time budget and a circuit breaker;
// while Redis cannot answer, a FailurePolicy decides (by default a local
// bucket holding this node's share of the limit). Every Decision says which
// Source made it.
//
// A Limit changed at runtime ramps to its new value over a window
// (WithRamp, default DefaultRamp: 10 s) instead of jumping. Every backend
// takes its time from an injected Clock, or from an explicit time
// (AllowNAt), so tests and the storm simulator can drive it in virtual time.
package limiter
