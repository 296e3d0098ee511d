// Package fleet provides budgets shared by a fleet of nodes through Redis
// (Strict and Leased, both limiter.Budget), and Redis, the one way every
// Redis-backed constructor of herdcap is told how to reach and share the
// fleet's Redis.
//
// # Strict
//
// Every Strict decision is one Lua script (EVALSHA, with EVAL when the
// script is not cached), so every node sharing the Redis and the Name
// shares each key's bucket exactly: its tokens, its denial tail and the
// ramp of the limit its requests carry (see package limiter). Each key's
// bucket is one Redis string, 16 bytes (two doubles), or 80 with the tail
// and the carried limit, under a hash-tagged key (prefix:name:{k:key}), so
// that a script touches one cluster slot.
//
// Concurrent decisions share round trips: while a few calls are under way
// (4), further decisions queue and go out together as one pipeline, each
// still its own atomic script. A lone caller never waits for a batch;
// under load this multiplies throughput, since the kernel and network work
// of a round trip is paid once per batch instead of once per decision. The
// batch workers start the first time a decision has to queue.
//
// # Leased
//
// A Leased node leases tokens from Strict's bucket in batches and spends
// them in process. The lease of a key is sized from the demand this node
// observes for it: about LeaseAhead worth of demand (100 ms by default), at
// least one token, and at most the max lease size L (by default the limit's
// tokens per LeaseAhead, capped at the burst). A request the lease cannot
// serve, while no refill is under way, makes one round trip: it takes what
// it lacks from the bucket (with a top-up of the lease, if it asked for no
// more than the lease's size), and a request for more than that takes the
// difference all at once or not at all, so a refused request never grows a
// lease. While a refill is under way, a request the lease cannot serve
// waits for it. When a refill comes back short (the bucket is empty), the
// next one is due when about half a lease has accrued, or one token, at
// most LeaseAhead later, made by a timer on the clock (or by the first
// decision at or after the due time, if the timer has not run yet); until
// then the node refuses what its lease cannot serve, without a round trip,
// and remembers a refused large request the same way.
//
// A request waits again for a refill only while the bucket is known to
// hold what it lacks: if the refill it waited for was answered, left the
// bucket short of what the request lacks (its tokens went to other
// requests), and another refill is under way when it ends, the request is
// refused, with a RetryAfter from that answer, rather than wait again. A
// refill that failed does not count: the request waits for the next one,
// within its time limit, or the failure policy answers. So a decision does
// not spend its time limit queueing behind one refill after another while
// Redis answers each.
//
// Overshoot bound: every token a node spends was taken from the shared
// bucket, so over any period the fleet admits no more than the bucket
// grants. Tokens may be spent a little after they were granted, so over
// any trailing window of length W
//
//	admitted(W) <= Rate·W + Burst + N·L
//
// for N nodes with max lease size L: a lease never holds more than L
// unspent tokens (a request for more than the lease holds takes the
// difference and spends it at once), so at most L tokens per node are held
// unspent at the start of any window. With the defaults, four nodes
// overshoot by at most 0.4 s worth of tokens in any window, and not at all
// over the long run.
//
// Decision.Remaining on a Leased budget is this node's view, its unspent
// lease plus what the shared bucket held at its last exchange with Redis,
// so a decision served from the lease does not count refill since then
// (nor other nodes' takes); it is the one difference from Strict and
// limiter.Local that the conformance suite allows. A peek (N = 0) reads the
// shared bucket, unless this node exchanged with it at the peek's time
// already, or the peek waited for an exchange under way: then it answers
// from that exchange's view. UpTo takes from the lease when the bucket is
// known to be empty (or Redis unreachable), and otherwise tops the lease
// up first. The limit a key's requests carry ramps in the node's view of
// the key, and each node keeps its own denial tail: N nodes send their
// refused callers back at up to N × the rate between them.
//
// # Failure
//
// Every Redis call passes through a circuit breaker (sony/gobreaker) and
// is bounded by Redis.Timeout, on the real clock. A call that fails or
// overruns, and every call while the breaker is open (which then reaches
// no Redis at all), is answered by the failure policy, with
// Decision.Via set to limiter.ViaFallback: FailLocal (the default) answers
// from an in-process limiter.Local holding this node's share of the limit,
// the limit divided by the live nodes of the heartbeat set; FailOpen
// allows; FailClosed refuses with limiter.ErrUnavailable. The policy's
// refusals (FailClosed's, and FailLocal's of a request over this node's
// share) are told to come back no sooner than the breaker's open period,
// and spread as a bucket's refusals are, so that callers refused together
// during an outage do not all return the moment the breaker half-opens:
// each key keeps a denial tail of these refusals on this node (successive
// refusals come back at the limit's rate, within the tail's horizon), and
// the keys are spread over one more open period by their hash. After the
// breaker's open period one probe call is let through, and the budget
// returns to Redis by itself once it succeeds. A Leased decision waits no
// longer than one Timeout in all, whether for a refill under way, for its
// own round trip, or both; while Redis cannot be reached a node spends its
// lease first, then answers from the failure policy. A caller's own
// cancellation is returned as an error and never held against Redis.
package fleet
