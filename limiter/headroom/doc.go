// Package headroom adapts one limit per origin to what the origin can
// take, measured from the outcomes of the calls made to it, in one
// process or for a whole fleet through Redis.
//
// Every herdcap budget is a number set by hand: set low, storms crawl;
// set above what the origin can take, or kept while its capacity drops,
// the origin collapses. A Controller makes the origin's headroom a
// measured signal instead. Nodes report each call's outcome
// (Origin.Record: lane, latency, success, overload, timeout, failure, or a
// refusal by the guard, which is demand that was not served); once per
// control interval the controller moves one limit per origin; the origin
// guard (package origin) carries Origin.Limit in every budget request, and
// storms (rollouts, admission, warm-ups) pace themselves from
// Origin.Spare. *Origin satisfies origin.Headroom and limiter.Headroom.
//
// # The algorithm
//
// For each origin and control interval k, the controller sums what the
// nodes recorded: calls by lane, outcomes, refusals, the sum of the success
// latencies (sample = their mean) and the least of them. Then:
//
//   - baseline = the least of the per-interval minimum latencies of the
//     last 60 intervals: it survives a long overload, and follows an
//     origin that became slower for good within a minute of intervals.
//   - saturated = sample > baseline·(1+Tolerance), or overloads, timeouts
//     and failures together above 1 % of the answered calls. Short of
//     that, the origin runs cold while sample <= baseline·(1+0.15·Tolerance)
//     (or no latency is known), idle while sample <= baseline·(1+0.05·
//     Tolerance), and warm above baseline·(1+0.5·Tolerance).
//   - The limit in force is min(limit, the limit before it): a shared
//     limit acts one interval late.
//   - Saturated: the capacity estimate C becomes what the origin served
//     (success calls per second), or moves a quarter of the way to it
//     when within [0.9, 1/0.9] × C (one interval's count is noisy); a
//     reading below 0.9·C counts only when the interval before was
//     saturated too, or the origin fails (else it may be a queue from
//     before, served while demand dipped: C stays). The peak P, the
//     highest estimate, follows C unless C fell below 0.9·P
//     (a drop of capacity, which P remembers). The limit becomes
//     max(limit·(1−MaxFall), min(limit, max(0.97·C, C − C·(sample −
//     baseline)/(2 intervals)))): below what the origin served by enough
//     to drain the queue the latency implies (Little) within two
//     intervals, by at least 3 % (exactly 3 % for a failing origin, whose
//     latency says nothing). But when the interval before was saturated
//     too, by latency alone, and the sample has fallen since, the queue
//     is draining: the last fall was enough, and the limit holds.
//   - Not saturated, and the demand offered (calls + refusals) below 0.9 ×
//     the limit in force: the limit holds. No probing without demand: an
//     idle fleet never drifts to the ceiling.
//   - Cold, below C: up to C, by at most √limit.
//   - Cold twice running, without an estimate or at or above it (it is
//     stale): probe upward by a step that starts at √limit (Envoy's
//     headroom term) and doubles with each consecutive probe, capped at
//     MaxRise·limit, up to P, where the origin served before: after
//     capacity returns, the limit climbs back geometrically. At or above
//     P, where no capacity was measured, a probe needs the calls to have
//     reached 0.9 × the limit (the last rise is in use), waits out the
//     interval after a rise (its effect shows one interval late when
//     shared), and unless the origin is idle steps 0.02·limit without
//     growing: the first climb to an unknown capacity is careful.
//   - Warm: hold.
//   - Near C (below C/0.9): steps of min(√limit, 0.02·limit) up to C,
//     of min(√limit, 0.005·limit) above it (a low estimate must not hold
//     the limit down).
//   - Otherwise (no estimate, or far above a stale one): a step of
//     min(√limit, 0.02·limit), each after an interval without a rise.
//   - Every case but the growing probe resets the probe's step.
//   - Always: the limit stays within [Floor, Ceiling], rises at most
//     MaxRise and falls at most MaxFall per interval, and changes at most
//     once per interval.
//   - Spare = g × max(0, limit − the foreground's calls per second,
//     refused ones included). The gain g in [1, 4] closes the loop of
//     the storms that pace by Spare: they turn spare calls into clients
//     or sessions with a guess of what each costs, and background work
//     running while the limit is not in use took less than it was
//     offered, so g grows by 3 % an interval; it shrinks by 3 % when the
//     origin saturates, or the limit is in use and background calls were
//     refused; no background work resets it to 1. The guard still holds
//     every call to the limit.
//
// So at capacity the limit cycles between about 0.97·C and a little
// above C, a drop of
// capacity is followed within one or two intervals, and an origin that
// fails every call takes the limit to the floor within ⌈log(limit/Floor)
// / log(1/(1−MaxFall))⌉ intervals (one more when shared).
//
// Refinements of the plain rule came from the virtual-time tests of this
// package and from the simulator's capacity-drop and headroom-incident
// scenarios. Failures count with overloads and timeouts, or an origin
// that fails everything would never be found saturated. The draining
// hold: the interval after a fall serves the old queue too, and less
// than capacity once it is empty, so a second fall would read a capacity
// below the true one and the limit would drift down interval after
// interval. Steps near the estimate are small and do not add up, because
// a probe that had doubled near the estimate jumped 20 % past it (a 65 %
// swing in the simulator). A geometric probe needs two cold intervals,
// as one interval's latency at a few hundred calls is noisy, and stops
// at P, as a shared probe past capacity shows only after the next one
// was sent. The estimate moves a quarter of the way on a noisy reading,
// as a low one taken while demand dipped pulled the limit down. And the
// gain: a rollout that assumed two origin calls per client, where a
// told client cost 1.15, left the origin at 80 % of what it could take.
//
// # Beside the anchors
//
// Envoy's adaptive concurrency filter computes gradient = (minRTT + B) /
// sampleRTT and limit = gradient·limit + √limit; Netflix's
// concurrency-limits Gradient2 computes gradient = clamp(longRTT/shortRTT,
// 0.5, 1) and newLimit = limit·gradient + queueSize, and its Vegas limit
// compares the queue a latency implies with thresholds; Google's SRE
// client-side throttling rejects locally with probability max(0,
// (requests − K·accepts) / (requests + 1)), K = 2. All of them run per
// process, and the first three adapt a concurrency. This controller adapts
// a rate, one for the whole fleet: nodes report, and the step runs once
// per interval on the fleet's sums, so a fleet of 100 nodes does not
// probe 100 times. Where the gradients scale the limit by a latency ratio,
// it jumps to what the origin was measured to serve (the rate is directly
// observable, a concurrency is not), and it takes the SRE accept ratio as
// a second saturation signal. It holds without demand (Gradient2 bounds
// the limit by the in-flight calls instead), and bounds every change per
// interval, herdcap's ramp idea: never a jump.
//
// # Stores
//
// New keeps the state in memory: one process, or the nodes of a
// simulation sharing one Controller; in virtual time it is deterministic.
//
// NewShared keeps it in Redis. Once per interval, on its clock's timer,
// each node sends what it recorded of every origin in one script call
// (EVALSHA, with EVAL when the script is not cached; the keys of a
// controller share one hash tag, so one cluster slot), tagged with the
// interval that just ended, round(now/Interval) − 1, on Redis TIME unless
// a clock is injected. The script adds the reports of interval k up; the
// first report of a later interval finalises k (runs the step) first; a
// late report for k goes into the interval under way, so nothing is lost.
// The reply carries the limit, the spare capacity and the last interval's
// figures, which the node applies at once: every node applies the same
// limit within one interval. The shared limit acts on each interval one
// interval later than the memory store does (k is finalised by the
// reports of k+1), which the tests' bounds include. A fleet state that is
// missing (the first report, or a Redis that lost its data) starts at the
// reporting node's current limit, and expires an hour (at least 120
// intervals) after the last report. The step runs as Go in the memory
// store and as Lua in the script, operation for operation; a conformance
// test feeds both the same reports and requires the same doubles to 1e-9.
//
// While Redis cannot answer (down, slow, its breaker open),
// SharedConfig.Failure decides. Under FailLocal (the default) each node
// controls its share of the limit locally with the same algorithm on its
// own reports, starting from the limit it last applied divided by the
// live nodes it last saw (the live-node heartbeat of package fleet's
// budgets); Origin.Limit stays the fleet-wide figure (share × live), since
// a fleet budget under FailLocal divides the limit it is given by the
// live nodes itself. FailOpen holds every limit at its Ceiling, FailClosed
// at its Floor. At its first report Redis answers, a node rejoins the
// shared limit; what it recorded while local is not replayed as fleet
// data. Record never waits for Redis: the timer's goroutine makes the
// call, within fleet.Redis.Timeout.
package headroom
