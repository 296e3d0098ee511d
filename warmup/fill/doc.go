// Package fill coalesces the fills of a read-through cache: one fill per
// key in a process and, through a Redis fill lease, one per key across a
// fleet, with stale serving in RFC 5861's sense and probabilistic early
// refresh.
//
// # In a process
//
// A Group is told how to reach the caller's cache (a two-method Cache) and,
// on each call of Do, how to fill a key. Concurrent calls for a key that
// needs a fill share one: the fill runs on its own goroutine, on a context
// that keeps the first caller's values but not its cancellation, bounded by
// Config.FillTimeout. A caller that gives up (its context ends) returns at
// once and the others still get the value; the cache is filled all the
// same, so the work is not lost. A fill that panics becomes a *PanicError
// for each of its waiters, and the Group goes on. Config.MaxKeys bounds the
// fills in flight: past it a call fails at once with ErrTooManyFills rather
// than running an uncoalesced fill, because a flood of distinct keys is the
// case where an origin most needs the bound.
//
// # Stale serving
//
// An entry is fresh until its Expires. Config.StaleWhileRevalidate after
// that, it is still served, at once, while one background refresh per key
// runs; Config.StaleIfError after it, it is served when the fill fails.
// Both windows count from Expires, as the Cache-Control extensions of RFC
// 5861 do. A stale value is never silent: Result.Source says Stale or
// StaleOnError, and Result.FillErr carries the failure. The error return
// stays nil, since the caller got a usable value.
//
// # Early refresh
//
// With Config.Beta > 0, a fresh entry is refreshed in the background before
// it expires, with a probability that grows as expiry nears and with the
// time the last fill took (δ, Entry.FillTime): when now − δ·β·ln(r) ≥
// Expires, r uniform in (0, 1]. At Δ before expiry a call refreshes with
// probability exp(−Δ/(δ·β)), so a hot key is usually refreshed by one call
// shortly before it expires, and never expires under load. This is the
// XFetch rule of Vattani, Chierichetti and Lowenstein (VLDB 2015).
//
// # Across the fleet
//
// NewShared adds a fill lease per key in Redis (see NewShared): one node
// fills, the others wait a bounded time for its value, and a dead holder's
// lease expires. Without Redis a node fills on its own. A waiter finds the
// holder's value in the cache when the nodes share it. With node-local
// caches (an in-process cache on each node), SharedConfig.Handoff hands
// the value over: the holder's release writes the filled entry to Redis
// beside the lease, for the rest of its fresh lifetime, and the round trip
// in which another node would take the lease returns the entry instead,
// which that node Sets in its cache (Source FromHandoff). A key that
// expires on every node at once then costs one origin fill per lease
// across the fleet, not one per node. Without a handoff each node still
// fills once, after the holder: the marker the holder bumps on release
// tells the waiters that its value is not coming to them, so they stop
// waiting at once. With a handoff, an invalidation calls Group.Forget once
// (on any node) besides deleting the key from the nodes' caches, so the
// copy in Redis does not come back; a fill that began before Forget does
// not hand its value off.
//
// # Anchors, and how this differs
//
// Facebook's memcache (NSDI 2013) hands out one lease token per key every
// 10 s and lets the others wait or take a stale value; the lease lives in
// the cache server. Here the lease is a Redis key beside any cache, and a
// holder's release tells waiters when to look again. x/sync/singleflight
// coalesces in a process but takes no context: the fill usually closes
// over the first caller's, whose cancellation then fails every waiter, and
// a panic re-panics in each; here the fill is detached, bounded and
// recovered. sturdyc coalesces
// refreshes in a process and only makes duplicates across containers
// unlikely; groupcache coalesces across a fleet through a mesh of peers
// that own keys, and has no expiry. This package keeps the caller's cache
// and adds only the coordination.
package fill
