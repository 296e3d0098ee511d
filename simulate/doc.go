// Package simulate replays cache-invalidation and reconnect storms in
// virtual time, against herdcap's real components, protected and not.
//
// # The model
//
// A run is a deterministic discrete-event simulation: one virtual clock,
// one seeded random stream, events processed in time order. It drives the
// real herdcap code through its injected clocks (limiter budgets,
// admission.Gate, invalidate.Coordinator's AdvanceAt and AppendDue, the
// client core's retry decision over a retry.Backoff with a seeded source
// and a retry.Budget); it re-implements none of them. Two components run
// on real time and cannot be stepped: the warm-up triggers model their
// schedule instead, warmup.Warmer's chunk claims and warmup/fill's fleet
// lease, each rule stated below with the package that implements it.
//
//   - Clients (1 to 10,000,000) each hold a connection to one node (at
//     first client i to node i mod nodes; see the load balancer below)
//     and a cached copy of their page data. They
//     poll (view a page) as a Poisson process of mean Client.PollInterval.
//     A poll is served from the copy (a hit) unless the copy is gone; each
//     poll finds the copy stale with the probability that makes its mean
//     life Client.CopyTTL, and the client refetches. On an invalidation
//     directive a client drops its copy and refetches; on a disconnect it
//     reconnects.
//   - Nodes (1 to 50) cache page data by key (Node.Keys keys; client i
//     reads one key, shared with the clients of the same key, every key
//     about as popular by default, or skewed by a seeded Zipf draw with
//     Node.Zipf, so that a few keys carry most requests): a fetch the
//     node's entry can serve (filled by an origin fetch within
//     Node.CacheTTL, and after the change for a client that applied it) is
//     answered from the cache; a miss is a call to the origin, which
//     refills the entry. A restarted node comes back with an empty cache.
//     A reconnect sets up a session, which is one origin call.
//   - Nodes accept connections at a finite rate (Node.AcceptRate, by
//     default a node's whole client population in ten seconds): every
//     connect attempt costs its node one handshake (TCP, TLS and the
//     session's setup on the node) from a first-in first-out accept queue,
//     fluid like the origin's; admission answers after the handshake, so a
//     refused session costs the node as much as an admitted one. A refusal
//     is a 503 on an open connection: a client that comes back within 90 s
//     (http.DefaultTransport's idle timeout) sends its next attempt on it,
//     with no new handshake. The queue is bounded (Node.AcceptBacklog, one
//     second of the rate): an attempt beyond it is not answered, the
//     client's kernel retransmits the SYN after 1, 3, 7, 15 … s, and the
//     connect fails, an error, at Node.ConnectTimeout (30 s by default). A
//     naive fleet that reconnects every second is throttled by its nodes
//     before it reaches the origin; a herd of first attempts (a blip, a
//     restarted node) congests the accept queues in the protected run
//     too, for the seconds the nodes take to work through it.
//   - A load balancer in front of the nodes sends each new connection by
//     a consistent hash of the client (as Envoy's ring hash or Maglev, or
//     HAProxy's and nginx's consistent source hashing, do for cache
//     affinity): to the client's own node (i mod nodes) while it is in
//     rotation, else to its fallback, the node in rotation that ranks the
//     client highest (rendezvous hashing), so that a failed node's clients
//     spread evenly over the others and nobody else moves. Its health
//     check notices a node that went down, or came back, Node.HealthCheck
//     (5 s) later: until then, connections still go to the dead node and
//     fail at once. Connected clients are never moved: a client on its
//     fallback goes back to its own node only when it next connects anew.
//     With no node in rotation (a cold start) each client goes to its own
//     node. Caches are per node: a moved client is served by its new
//     node's cache entries, and sets up a new session there.
//   - The origin serves Origin.Capacity requests per second from one FIFO
//     queue (Origin.Concurrency workers), so a request's start, end and
//     outcome are known when it arrives (a fluid queue: no events of its
//     own). By default it is an origin a skeptic accepts: the queue is
//     bounded to Origin.MaxQueue (5 s) of capacity, past which a request is
//     rejected at once; deadlines propagate (at Origin.Timeout the caller
//     gives up, and the origin drops its queued request or stops serving
//     it, the work done for nobody counted as waste); service times are
//     log-normal with a tail (Origin.ServiceCV); capacity may degrade under
//     overload (Origin.Degrade) and change during a run (Origin.Changes).
//     Origin.UnboundedQueue and Origin.FinishAbandoned give the lenient
//     origin of the first simulator, whose long queue serves mostly
//     requests nobody waits for. Failures make clients retry, the retries
//     keep the origin overloaded, and the overload keeps failing requests:
//     a metastable collapse emerges from these dynamics when the load that
//     started it is gone; nothing in the model declares it.
//
// The unprotected run is the fleet of the incident: the rogue node's
// "invalidate everything" reaches every client at once (within
// Client.Reaction); a client retries a failed fetch after the fixed
// Client.RetryDelay; a disconnected client reconnects at once and retries
// after the same fixed delay; nothing paces the origin. With
// Client.DisconnectOnError (the incident), a failed fetch also drops the
// connection.
//
// The protected run changes only what herdcap changes:
//
//   - the rogue node's invalidation becomes an invalidate.Rollout (scope
//     "*", so the guard paces it: Protection.RolloutRate clients per
//     second in Protection.Cohorts cohorts, never in less than
//     Protection.MinDuration) on a Coordinator per node sharing one store.
//     The nodes take turns to advance it, one advance per Protection.Tick.
//     Every poll is a request that carries the epoch the client applied,
//     and its node answers it through the server-side decision
//     httpmw.Invalidate and grpcmw.Invalidate share (serverside.Notifier,
//     which asks AppendDue): the notice list and the epoch field to
//     record are the ones they send (allocation-free when none is due;
//     a coordinator that cannot read its store, which the Notifier would
//     only log, stops the run). Each node also runs an invalidate.Pusher over its
//     connected sessions every Protection.PushInterval: the waves it
//     reports (AppendWaves) name the released cohorts, and Push asks
//     AppendDue for each session, draws on a fleet-wide push budget
//     (Protection.PushBudget) and notifies; sessions it defers wait for the
//     next interval. A page view that finds its notice due is delivered
//     through the Pusher too;
//   - every origin call goes through the nodes' origin guard
//     (limiter/origin.Guard) on a fleet-wide origin budget
//     (Protection.OriginBudget calls per second, burst 5% of that): the
//     node holds the call until its token is due (never past the caller's
//     deadline less an idle origin call's time, which the hold is counted
//     against), up to a second, and past that answers 503 with the wait as
//     Retry-After;
//   - a reconnect asks a fleet-wide admission.Gate (Client.Backoff
//     "slot", Protection.AdmissionRate sessions per second) through the
//     server-side decision httpmw.Admit and grpcmw.Admit share
//     (serverside.Admitter, the request being the client's index): its
//     verdict, its ticket handling and the wait it tells are the shipped
//     ones. The client reads a refusal as the client core reads httpmw's
//     503: an exact slot in the whole milliseconds of
//     Herdcap-Retry-After-Ms (clientcore.Slot, a few ms of jitter), a
//     coarse wait in Retry-After's whole seconds (clientcore.Coarse), and
//     comes back then; with "jitter" the client only backs off. Any other
//     verdict can only come from a store that failed, and stops the run;
//   - clients wait with retry.Backoff (full jitter, honouring the
//     server's hint) and retry only while their retry.Budget allows
//     (otherwise their next page view asks again), as the client core
//     that httpmw.Transport and grpcmw.Client share decides;
//   - the config change's limit ramps over Protection.Ramp (limiter
//     Config.Ramp and SetLimit) instead of jumping.
//
// With Protection.Headroom the protected run takes its pace from the
// origin's measured headroom instead (limiter/headroom): one controller
// for the fleet (headroom.New on the memory store, headroom.NewShared on
// Redis, on the virtual clock) adapts the origin's limit between the
// headroom's floor and ceiling from the outcomes the nodes record; the
// origin guard carries that limit (Config.Headroom, on a budget made with
// limiter.NoRamp); the rollout (invalidate.Config.Headroom, CallsPerClient)
// and the admission gate (admission.Config.Headroom, one call per session)
// run at the spare capacity, capped by Protection.RolloutRate and
// AdmissionRate. A page view's fetch takes the guard's Foreground lane;
// the calls the storm causes (the refetch of a client that applied the
// invalidation, every session call) take the Background lane, which is
// never held and takes only what the foreground leaves. A shared
// controller applies interval k's step when the first report of k+1
// finalises it, one interval later than a memory controller would: the
// nodes of the memory store read the limit and spare through the same
// one-interval lag, so that both stores give the same numbers, those of a
// fleet. Result.Series.Limit and Spare record them each second.
//
// Every origin call's outcome is recorded with the guard (and so with a
// headroom controller) when the call completes, as a node learns it: the
// fluid origin knows a call's outcome when it is sent, but a controller
// told then would learn of a timeout ten seconds early.
//
// Coordination lives in process by default. With Config.Redis the same
// budgets, admission and rollouts run on Redis, with the virtual time
// passed to every script, and the same seed gives the same numbers.
//
// # Warm-ups: content push, cold node, hot key
//
// Three triggers are about the node caches rather than the clients: no
// client is told anything and none converges; what is judged is the
// origin, the failed requests, and the node hit rate (Series.Fresh ÷
// Lookups: fetches a node answered from its cache with the current
// content). With Node.Zipf the caches start in steady state for skewed
// keys: an entry its node asks for λ times a second starts live with the
// probability λT ÷ (1 + λT) of a TTL T, as it would be after a long run.
//
//   - content-push: new content makes every entry filled before the push
//     out of date at once. Unprotected, every node misses on every key its
//     clients ask for (nodes × keys origin calls) and the naive clients
//     retry each second. Protected, a node answers with its stale entry
//     (stale-while-revalidate, as warmup/fill serves it) while one warm
//     fetches each key once for the fleet, hottest first, in the origin
//     guard's Background lane, on the run's fixed budget or headroom: page
//     views' misses keep the Foreground lane. The guard is the real one;
//     the warm's schedule is modelled (warmup.Warmer runs on real time and
//     its own goroutines): the keys hottest first cut into chunks of
//     Protection.WarmChunk, each node's Protection.WarmWorkers workers
//     claiming the lowest chunk not yet claimed and fetching its keys in
//     order, one at a time, a failed fetch tried again 3 times after
//     100 ms doubled each time, then reported failed (warmup's defaults).
//     A fetched key is stored add-only (warmup's rule) and keeps the stale
//     entry's expiry (Redis's SET with KEEPTTL), so that what the warm
//     fetched in a minute does not all expire in the same minute; it
//     renews the entries the nodes hold, and a node that holds nothing of
//     a key fetches it when asked, as before. Result.Hit90S is the time to a node hit rate
//     of 90%, against the physical limit WarmPhysicalS: the keys that
//     carry 90% of the clients, one call each, ÷ the origin's spare
//     capacity during the warm (capacity less the calls that were not the
//     warm's).
//   - cold-node: node Trigger.Node's cache is replaced by an empty one
//     while its clients stay on it. Unprotected, it misses on every key its
//     clients ask for. Protected, warmup/slowstart's Gate (the real one,
//     on the virtual clock, Window Protection.SlowStart) admits a growing
//     share of the node's fetches and answers the rest 503 with its
//     Retry-After (a refusal the client reads as httpmw.SlowStart's), and
//     the warm above fills that node's keys, hottest first, each stored
//     with its TTL shortened by a random share of up to half, so that the
//     node's entries do not expire together.
//   - hot-key: the most popular key expires on every node at the same
//     moment. Unprotected, each node calls the origin for it once per
//     request that misses while its first call is under way (no per-process
//     coalescing), and the entries, refilled together, expire together
//     again a TTL later. Protected, a fleet fill lease per key (warmup/fill
//     NewShared's rule with SharedConfig.Handoff, modelled: its lease lives
//     in Redis on real time): a node that finds a key expired less than a
//     TTL ago serves the stale value and, unless another node holds the
//     key's lease, takes it for Protection.FillLease and fetches through
//     the guard's Foreground lane; on release the value reaches every
//     node's cache (the handoff: a shared cache would do the same) and the
//     lease is released. A miss with nothing stale to serve fetches as
//     before. Result.HotKeyFetches counts the key's origin fetches in the
//     TTL after it expired, HotKeyLeasePeak the most in a lease.
//
// # The Redis model
//
// Scenario.Redis makes the store a component that takes time and fails:
//
//   - Latency (redis.latency, default 0 so that the built-ins keep their
//     figures) delays, in virtual time, the effect of every coordination
//     call of the protected run, the same on both stores: a call the
//     origin guard holds or refuses waits that much longer, counted
//     against the caller's deadline; a reconnect pays it twice (admission,
//     then the origin budget); a notice a page view finds due reaches the
//     client that much later; each tick's rollout advance, each push
//     interval and the config change's paced refresh happen that much
//     after their moment. The session's own due check is part of the
//     session's setup and costs nothing more. At 0 none of this runs.
//   - Outages (redis.outages: {at, for, lose_data} windows of virtual
//     time) make every Redis call of the protected run fail: a go-redis
//     hook on the run's client answers each command with an error while
//     the virtual clock is inside a window, without touching the server.
//     The library's real failure policy answers (redis.failure: "local",
//     fleet.FailLocal, the default the library ships; "open"; "closed"):
//     the origin budget, the push budget and the admission gate decide
//     from their fallback (under FailLocal a local bucket with this
//     node's share, which is the whole limit since the simulator's
//     fleet-wide budgets are one component); a coordinator's AppendDue
//     answers from its cached copy; an advance fails, so the rollout
//     releases nothing until Redis is back and then resumes where it was
//     (the store banks at most one tick of its running time). With
//     lose_data the run's own keys (its prefix's; never anything else)
//     are deleted as the outage starts, so Redis comes back empty as
//     after a restart without persistence: the coordinators notice the
//     loss and re-register the rollout with the highest released count
//     they know (invalidate's durability; Result.RolloutRestores counts
//     the re-registrations), which then waits its restore grace before
//     releasing more. Under FailClosed the origin guard's refusal has no
//     hint (the node answers 503 and the client backs off on its own);
//     the admission gate's refusal says when to come back.
//     Result.RedisFailed and Series.RedisFailed count the failed calls.
//   - The breaker (internal/redisguard over sony/gobreaker) times its
//     open period on the real clock, which would make a run depend on
//     the machine: the simulator's components never open it
//     (BreakerFailures out of reach). During an outage every call reaches
//     the hook, which fails it at once, and the failure policy answers
//     each, as it answers while a breaker is open. A Redis that fails for
//     real, outside the windows, stops the run with an error; without
//     outages the components run FailClosed, as before.
//   - Outages need the Redis store: the memory store has no Redis to
//     lose, and the policy that answers in an outage is the Redis
//     backends' own, which the simulator must not re-implement. A
//     protected run with outages on the memory store is refused with an
//     error naming redis.outages; stormsim -check starts a private
//     redis-server for such scenarios when -redis is not given.
//
// # Triggers
//
// A Scenario (JSON; see Scenario and the files under scenarios/) has one
// trigger: rogue-invalidate (one node tells every client to invalidate),
// reconnect-storm (a share of clients drop at once, or one node restarts),
// incident (the rogue invalidation, with clients that reconnect on
// errors), config-change (a content push paced by a limit that an
// operator raises 100× at once, against ramped), and the warm-ups
// content-push, cold-node and hot-key (above). Each runs unprotected and
// protected with the same seed (Compare); the clients' placement and poll
// phases are the same in both.
//
// # Definitions
//
//   - Steady state: the mean origin load in the seconds before the
//     trigger (skipping the first ten). Runs start in steady state: every
//     client connected with a copy, poll phases random.
//   - Intended calls: the origin calls a fault-free system would make for
//     the same client needs: each need for data that misses the node cache
//     once, plus one session per client the trigger disconnected.
//     Amplification is origin calls ÷ intended calls; retries, reconnects
//     after errors and duplicate work push it above 1.
//   - Affected and converged: the clients the trigger affects are all of
//     them (invalidations), the ones it drops (reconnect storm) or the ones
//     the content push must refresh (config change). One converges when it
//     has applied the change and holds data again, connected. Time to
//     converge runs from the trigger to the last one; the target is
//     Result.ConvergeOverSchedule ≤ 1.1: converged within 1.1 × (affected ÷
//     budget), no less than the rollout's least duration, plus one wave
//     (one cohort interval; one tick for the others).
//   - Peaks: the origin load and the clients changed are judged against
//     their budgets over a peak window of W whole seconds, the least in
//     which the pacing budget's burst is at most 5% of its allowance
//     rate × W (Result.PeakWindowS and ChangedWindowS). A token bucket lets
//     through at most rate × W + burst in W seconds, so over W the peak is
//     at most (rate·W + burst) ÷ (rate·W) ≤ 1.05 × its rate by
//     construction: 1.05 × the origin budget, 1.02 × 1.05 = 1.071 × the
//     rollout rate for the default push budget, both under the target of
//     1.1. At 1,000,000 clients W is 1 s; at small sizes the burst is the
//     one-token quantum (a budget of 1/s lets 2 through in some second)
//     and W grows until it is 5% (20 s at 1/s), so a ratio means the same
//     at every size. A reconnection counts when its session completes, so
//     a reconnect storm's W also covers the sessions that waited in the
//     origin's queue (the admission rate × the run's longest queueing
//     delay): 2 s at 1,000,000 clients.
//   - Hit rate: page views served from the client's copy ÷ page views, per
//     second; normal is its mean before the trigger.
//   - Recovered: from some second after the trigger to the end of the run
//     (at least a minute), the trailing minute always had a hit rate of at
//     least 90% of normal and an error rate under 1%. Not recovered is
//     reported as Collapsed: a metastable collapse, the failure outlasting
//     its trigger. It is judged over the run's last five minutes, which
//     must start after the trigger's own work could be done
//     (Result.SettleS); a shorter run is not judged (CollapseJudged false,
//     and a bound on "collapsed" fails with "not judged", never passes).
//   - Errors: failed client requests: origin timeouts and rejections, a
//     node that is down or does not answer a connect, and refusals (503 from the origin budget,
//     admission's "come back at your slot"), which are cheap but are not
//     successes.
//   - Time to data: from the moment a client needs data until a fetch
//     delivers it, retries and waits included; needs still open at the end
//     count with their age.
//
// # Sizes
//
// A scenario's rates and capacities are for its client count; Scale
// resizes it, multiplying them all, so the dynamics stay the same. The
// built-ins are written for 1,000,000 clients; stormsim runs them at
// LaptopClients by default, and the tests at a smaller size. Per-second
// counts carry Poisson noise of about √n, so small sizes show a rougher
// picture of the same dynamics.
//
// # Engine
//
// Events are 16-byte values in a two-level calendar queue (a ladder):
// buckets of 10 ms of virtual time over a 164 s horizon, grouped by 512
// into coarse buckets of 5.12 s. An event for a coarse bucket not yet
// reached is appended to it, and the coarse bucket is spread into its
// fine buckets, in push order, when the queue reaches it; an event for
// the coarse bucket being drained goes to its fine bucket directly. So a
// fine bucket holds its events in push order as a single ring would, and
// the pushes write to a few hundred bucket tails that stay in cache
// rather than to one of 16,384 spread over memory (the incident at
// 1,000,000 clients, both runs: 31% less CPU than that single ring, on a
// 2-core Intel Xeon KVM guest). Each bucket is a list of 128-event chunks
// from one shared pool (so memory follows the events queued, not the
// largest bucket times the ring), gathered and sorted when reached (a
// stable radix sort), with a 4-ary heap for events beyond the horizon. SYN retransmits wait apart, in
// one first-in first-out queue per retransmit (each in time order by
// construction, since a retransmit follows its drop by a fixed time), and
// the loop takes the earliest of their heads and the calendar's next
// event, the calendar's first at the same time. Push and pop are O(1) amortised
// and allocate nothing once the pool has grown. Client state is a flat
// array of 32-byte structs without pointers (one cache line per event,
// nothing for the garbage collector to scan; backed by huge pages where
// Linux gives them on request) plus one string holding every client ID;
// the loop prefetches the state of the client 16 events ahead, so the
// cache miss each event's client costs overlaps the events between. Each
// client has at most one pending action
// (fetch, its outcome, a reconnect, ...) and one pending poll; a
// rescheduled action leaves its old event in the queue, skipped when popped
// because it no longer matches the client's pending action and time. Runs
// are single-threaded and deterministic: the same scenario and seed give
// the same Result, byte for byte in JSON.
package simulate
