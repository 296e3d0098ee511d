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
//     and failures together above 1 % of the answered calls.
//   - Saturated: the capacity estimate C is what the origin served
//     (success calls per second) and the limit becomes
//     max(limit·(1−MaxFall), min(limit, 0.95·C)): just below what the
//     origin actually served, so that its queue drains, and never falling
//     faster than MaxFall. But when the interval before was saturated too,
//     by latency alone, and the sample has fallen since, the queue is
//     draining: the last fall was enough, and the limit holds.
//   - Not saturated, and the demand offered (calls + refusals) below 0.9 ×
//     the limit: the limit holds. No probing without demand: an idle fleet
//     never drifts to the ceiling.
//   - Not saturated, and the limit in use: probe upward by a step that
//     starts at √limit (Envoy's headroom term) and doubles with each
//     consecutive probe, capped at MaxRise·limit, so that after capacity
//     returns the limit climbs back geometrically; a saturated interval
//     resets it. Within [0.9, 1.05] × C, near the last capacity estimate,
//     the step is at most min(√limit, 0.02·C).
//   - Always: the limit stays within [Floor, Ceiling], rises at most
//     MaxRise and falls at most MaxFall per interval, and changes at most
//     once per interval.
//   - Spare = max(0, limit − the foreground's calls per second, refused
//     ones included).
//
// So at capacity the limit cycles between 0.95·C and a step or two above
// C (950 to 1,030 for an origin of 1,000 calls/s in the tests: an 8 %
// swing), a drop of capacity is followed within one or two intervals, and
// an origin that fails every call takes the limit to the floor within
// ⌈log(limit/Floor) / log(1/(1−MaxFall))⌉ intervals (one more when
// shared).
//
// Three refinements of the plain rule came from the virtual-time tests of
// this package. Failures count with overloads and timeouts, or an origin
// that fails everything would never be found saturated. The step near the
// estimate is capped at 2 % of it, because √limit is 4.5 % of a limit of
// 500: two such steps from 0.95·C overshoot by 4 %, and the cycle swings
// more than 10 %. And the draining hold: the interval after a fall serves
// the old queue too, and less than capacity once it is empty, so a second
// fall would read a capacity below the true one and the limit would drift
// down interval after interval.
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
