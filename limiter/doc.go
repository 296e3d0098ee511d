// Package limiter provides herdcap's budget core: keyed token buckets
// behind one small interface, Budget, with Local, the in-process backend.
//
// Everything herdcap paces (requests, invalidation notices, reconnects,
// warm-up fetches) draws tokens from a Budget: Take(ctx, Request) returns a
// Decision. Three backends implement it and pass one conformance suite, on
// single-node Redis and Redis Cluster alike:
//
//   - Local (this package): golang.org/x/time/rate buckets in a bounded
//     in-process map, allocation-free on the hot path; the embedded
//     default. This package imports no Redis client.
//   - fleet.Strict: one Lua script per decision, exact fleet-wide.
//   - fleet.Leased: tokens leased from the same Redis bucket in batches
//     and spent in process: no round trip on the hot path, with a stated
//     overshoot bound.
//
// Package admission builds reconnect admission (slots, tickets) on the same
// buckets. Headroom is how an admission gate or an invalidation rollout
// takes its pace from an origin's spare capacity, never faster than its own
// configured rate.
//
// # Limits that change
//
// A limit changed at runtime ramps to its new value over a window
// (Config.Ramp, 10 s by default) instead of jumping, linearly in rate and
// in burst, so that a mistaken change can be noticed and undone before it
// has spread. A budget's own limit changes with SetLimit. A Request may
// also carry its own limit (per plan, per key, per route): the key's bucket
// then refills at that limit, and when the limit a key's requests carry
// changes, that key ramps from the old limit to the new one over the same
// window. A key seen for the first time starts at its limit, full; so does
// an idle key (its bucket full, no ramp under way), since a full bucket is
// what a new key starts with and a Redis backend keeps nothing for it.
// Local keeps a key's ramp in its entry (allocated only while a ramp is
// under way), fleet.Strict in the bucket in Redis (still one round trip
// and one cluster slot), fleet.Leased in the node's lease of the key. A
// bucket refills at the limit in force when it is read, counted from its
// last take, on every backend alike.
//
// # No lockstep retries
//
// A token bucket that tells every caller it refuses at the same moment the
// same RetryAfter makes a herd of its own: they all come back together,
// and all but a burst are refused again. Each key therefore keeps a denial
// tail: a refusal is told max(its own wait for its tokens, tail − now), and
// the tail then moves on by the tokens the refusal waits for, so refused
// callers come back one after another at the bucket's refill rate.
//
// The tail never runs more than a horizon ahead of now, max(Burst ÷ rate,
// 1 min): a longer queue of promises would only grow stale, and a caller
// that ignores RetryAfter and comes straight back would otherwise push
// everyone's waits out without bound. Refusals past the horizon are spread
// evenly over it, at frac(h(key) + count × (√5−1)/2) of the horizon, a
// low-discrepancy sequence over the key's refusals: the same on every
// backend, and never the same instant twice in a row. A Request with Wait
// books tokens instead (the bucket goes into debt and later callers queue
// behind it), so reservations are spaced already and touch no tail.
//
// # Time
//
// Every backend takes its time from one injected Clock (Config.Clock; the
// system clock by default), which also runs every timer a component sets:
// a Leased budget's refills, the live-node heartbeat. Tests and the storm
// simulator drive components in virtual time by injecting a clock; there
// are no explicit-time variants of the methods, because a timer cannot
// take an explicit time, and one mechanism covers both "now" and "later".
// The Redis components use Redis TIME unless a clock is injected, whose
// time they then pass to every script: the buckets', the admission gate's
// and the live-node heartbeat's, whose set is judged on that time too. Two
// things stay on the real clock: the time limit on a Redis call, which
// bounds a wait on the network that virtual time does not see, and the
// expiry Redis keeps for its keys (PEXPIRE), a duration the scripts
// compute in the time they were given.
package limiter
