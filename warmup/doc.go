// Package warmup warms caches hottest keys first, within the origin's
// headroom, each key fetched once across the fleet.
//
// # The model
//
// A warm (Warm) is a source of keys with weights, hottest first; the
// user's Fetch (read a key from the origin, saying when it was read) and
// Store (write it to the cache, add-only); and an ID that every node
// taking part uses. Each node has one Warmer: Start registers a warm in
// the store or joins it, Run works until its context ends, and Pause,
// Resume, Abort and Status act fleet-wide, in the words of invalidate's
// rollouts (Phase Running, Paused, Aborted, Done; By{Who, Reason}). The
// fills a warm does not make, of a key that many requests miss at once,
// are coalesced by package fill; a cold node takes a growing share of
// its traffic through package slowstart.
//
// # The claim unit: chunk numbers over a positional source
//
// Nodes agree on chunk numbers, never on lists. Chunk c is the items at
// positions [c × ChunkSize, (c+1) × ChunkSize) of the source, and every
// node reads the source itself (Source.Items from a position): a slice, a
// Redis sorted set read by rank pages (SortedSet), or a stream
// (Stream) every node can replay, such as a generator or a file. The
// store holds, per warm, a handful of counters, the claims in force and a
// bitmap of done chunks (one bit per chunk: 1,250 bytes for 10,000,000
// keys in chunks of 1000), and never an item; a node holds one chunk per
// worker. So 10,000,000 keys cost no more memory than 10,000.
//
// The costs of that choice, against staging the list into the store:
//   - every node must see the same sequence (the same file, the same
//     sorted set, unchanged while the warm runs; copy a live sorted set
//     first); the node that registers the warm reads the whole source
//     once to check it and count it (about 0.5 s per 10,000,000 streamed
//     keys here), and the count is the warm's;
//   - a stream is read forward: each node passes over the items of the
//     chunks others took (cheap next to a fetch), and taking over an
//     expired claim behind its position starts a new pass;
//   - in exchange, a Redis that restarts empty loses nothing a node cannot
//     rebuild: the source is on every node, and each node writes back the
//     chunks it completed (see Durability).
//
// A source only one node has, such as the Sketch of the requests it has
// seen (a bounded Space-Saving top-k: Observe each request, Top for the
// hottest), is staged instead (Warm.Staged): the node that registers the
// warm copies the items, checked, into the store in batches of 1000 (at
// most 1,000,000 items, so bounded on both sides), and every node reads
// its chunks from there; the others join with no Source.
//
// A node claims the lowest chunk that is neither done nor held (an
// expired claim first), for Config.ClaimTTL; renews the claim every
// Config.Interval while it works; and marks the chunk done when each of
// its keys is warmed or reported failed. A node that dies holding a claim
// loses it at the TTL, and the next node to poll takes the chunk over:
// within ClaimTTL + Interval. A node restarted mid-chunk fetches at most
// that chunk again. Chunks are handed out in order, so the fleet warms
// hottest first, up to the chunks it holds at once (nodes × Workers).
//
// Items are checked as they are read: an empty key, a weight that is NaN
// or negative, or one above the item before it is an error naming the
// item's position (at Start; a source that changes afterwards has the
// item reported failed). A key repeated within a chunk is fetched once
// (counted in NodeStats.Duplicates); a key repeated in another chunk is
// fetched once per chunk it appears in, which add-only stores make
// harmless.
//
// # Pacing: the origin's spare capacity, never faster
//
// Every fetch (retries included) first takes the right to call the
// origin: through Config.Guard in origin.Background, the lane that takes
// only what the foreground leaves (with a headroom.Origin behind the
// guard, the spare rate the foreground leaves), or a token of a fixed
// Config.Budget. A refusal is waited out (its RetryAfter, re-checking the
// warm's phase at least every Interval) and never dropped. Fetch errors
// are retried Config.Retries times with a doubling backoff, then the key
// is reported failed (counted, the latest listed) and the warm goes on; a
// panic in Fetch or Store is recovered, counted and reported the same way.
//
// # Add-only writes and the hold-off after deletes
//
// Store receives the time the value was read. It should write only if
// the cache holds nothing newer (memcache add, Redis SET NX, or a version
// compare): a user's request may have filled the key with a fresher value
// between the warm's read and its write, and only the cache can tell.
// The Warmer adds memcache's hold-off: Deleted(key) records a delete, and
// for Config.HoldOff (2 s) a value of that key read before the delete +
// HoldOff is not stored (NodeStats.HeldOff): it may predate the write the
// delete announced.
//
// That hold-off is per node, as memcache's is per server: it covers the
// deletes this node is told of, which is all of them with node-local
// caches (each node deletes from its own). With a cache the nodes share
// (Redis, memcached), one node deletes and the others never hear of it;
// there the hold-off belongs in the cache, where memcache keeps it:
// delete by writing a short-lived tombstone (SET key <tombstone> PX 2000)
// instead of DEL, so that any node's add-only write (SET NX) of a value
// read before it fails, and treat the tombstone as a miss on reads.
// Checking a fleet-wide list of deletes in the Warmer instead would cost a
// round trip per key stored, fifty times the warm's own per-key cost.
//
// # Durability
//
// The memory store lives as long as its process. The Redis store
// (NewRedisStore) keeps a warm's keys under one hash tag, one cluster
// slot. While Redis cannot answer, no chunk is claimed and a finished
// chunk is marked done once it answers again: work pauses, nothing is
// lost. If Redis restarts empty, the first node to notice writes the warm
// back with the chunks it completed, and every other node merges its own
// on its next call (each answer carries a generation token that changes
// when the warm is written anew); no chunk is handed out for two
// Intervals after a write-back, so that the nodes can merge first. Chunks
// completed only by nodes that are gone meanwhile are warmed again: no
// key is lost, a few may be fetched twice. An abort any node saw survives;
// failure counts of nodes that are gone do not.
//
// # Progress
//
// Status gives the phase, the chunks and keys done, the failures, the
// rate (keys per second of running time), the ETA at that rate, this
// node's counts, and (with Warm.HitRate) the cache's hit rate as it
// recovers.
//
// # Anchors, and how this differs
//
//   - Facebook's memcache (NSDI 2013) warms a cold cluster from a warm one
//     and holds off writes for 2 s after a delete, so that a late fill
//     cannot bring back stale data; the pace is set by hand. Here the
//     pace comes from the origin's guard or a budget, and the hold-off is
//     the same 2 s by default.
//   - Netflix EVCache's cache warmer copies a replica with add-only writes
//     and an open-loop rate limiter. Here the writes are add-only too, but
//     the keys come hottest first from the origin, and the rate backs off
//     when the foreground needs the origin (the background lane).
//   - Envoy's slow start ramps a new endpoint's share on a timer, and is
//     "not very effective" when every endpoint is new. A warm needs no
//     warm peer: the fleet shares the origin's spare capacity, however
//     cold every node is.
package warmup
