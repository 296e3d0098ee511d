package fill

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
)

// SharedConfig configures NewShared: Config's fields, the fill lease and
// the handoff. The zero value is the default configuration.
type SharedConfig[V any] struct {
	Config
	// LeaseTTL is how long a node holds a key's fill lease unless it
	// releases it first: at most one fill per key per LeaseTTL across the
	// fleet while the nodes can reach Redis, and the longest a dead
	// holder keeps the others waiting. It should exceed the fills' usual
	// duration. If LeaseTTL is 0, FillTimeout (10 s by default, the
	// lease of Facebook's memcache); otherwise at least 1 ms.
	LeaseTTL time.Duration
	// LeaseWait is the longest a node waits, polling the cache, for the
	// value of a fill another node holds the lease for. If LeaseWait is 0,
	// LeaseTTL: a node then never fills while a live holder still could.
	// It must not be negative.
	LeaseWait time.Duration
	// Handoff, when set, hands each filled entry to the other nodes
	// through Redis, for node-local caches: the holder's release writes
	// the entry (Value encoded by Handoff, Expires, FillTime) beside the
	// lease, for the rest of its fresh lifetime, and a node that misses
	// its cache gets it in the round trip that would take the lease,
	// Sets it in its cache and serves it (Source FromHandoff). With a
	// cache the nodes share, leave it nil: the cache is the handoff.
	// Invalidations must then call Group.Forget (see there).
	Handoff Codec[V]
	// HandoffMaxBytes bounds an encoded value that is handed off: a
	// larger one is not written (Stats.HandoffTooLarge), and the other
	// nodes fill on their own, as without Handoff. If HandoffMaxBytes is
	// 0, 1 MiB; it must not be negative.
	HandoffMaxBytes int
}

// Codec turns a Group's values into bytes and back, for
// SharedConfig.Handoff. Decode(Encode(v)) must give back v; Decode may keep
// b. Both must be safe for concurrent use. An error (or a panic) is counted
// in Stats.HandoffErrors and logged, and the value is not handed off, or
// not taken.
type Codec[V any] interface {
	Encode(v V) ([]byte, error)
	Decode(b []byte) (V, error)
}

// defaultHandoffMaxBytes is HandoffMaxBytes' default.
const defaultHandoffMaxBytes = 1 << 20

// Poll intervals of a node that waits for another node's fill: the first,
// doubling up to the last.
const (
	firstPoll = 5 * time.Millisecond
	lastPoll  = 50 * time.Millisecond
)

// shared is a Group's link to the fleet's leases.
type shared struct {
	link   *remote.Link
	prefix string // prefix:name:
	ttl    int64  // lease TTL, ms
	mark   int64  // TTL of the filled marker, ms
	wait   time.Duration
	poll   time.Duration // the longest poll interval
	node   string        // this Group's part of a lease token
	seq    atomic.Uint64 // the other part
	max    int           // HandoffMaxBytes
}

// NewShared returns a Group that fills cache, coalescing fills in this
// process and, through a fill lease per key in Redis, across every node
// with the same Redis, Prefix and Name (if Redis.Name is "", "fill").
//
// Before a fill a node takes the key's lease: SET NX PX with a token of
// its own, in one round trip. The holder, once its fill is in the cache,
// wakes its own waiters, then releases the lease (deleting it only if its
// token is still there) and bumps the key's filled marker. A node that
// finds the lease held polls the cache (Cache.Get) at growing intervals
// (5 ms doubling to 50 ms), each poll followed by a round trip that reads
// the marker and retries the lease; it returns the value another node
// filled as soon as Get shows it. It fills itself, without the lease, at
// once if the marker shows a fill that finished while Get still misses
// (the nodes' caches are not shared, and nothing was handed off), and
// after LeaseWait: then, if the call that started the wait had an entry
// within StaleIfError, it gets ErrLeaseWait and serves that entry
// instead. A holder that died leaves its lease to expire: a waiter takes
// it over within LeaseTTL plus one poll.
//
// With SharedConfig.Handoff (node-local caches), the release also writes
// the filled entry to Redis, in the same round trip, with a TTL of its
// remaining fresh lifetime; the round trip that takes or retries the
// lease returns that entry instead when it is newer than the one the
// caller saw, and the node Sets it in its cache and serves it (Source
// FromHandoff) without filling. A key that expires on every node at once
// then costs one origin fill across the fleet, not one per node, and a
// handed-off hit costs one round trip. A value that fails to decode is
// counted and logged, and the node goes on as if there were none. Deleting
// a key from the nodes' caches does not delete the copy in Redis: an
// invalidation calls Group.Forget once.
//
// While Redis cannot answer (a call fails or exceeds Redis.Timeout, or the
// breaker is open) a node fills without the lease, coalescing in process
// only (Stats.Unleased): a Redis outage costs no more than Redis.Timeout
// per fill, and nothing once the breaker is open. The lease, the marker
// and the handed-off entry of a key live in one cluster slot. No heartbeat
// runs: Redis.Node and Redis.Heartbeat must be unset. Bad configuration is
// an error wrapping limiter.ErrInvalidConfig that names the field.
func NewShared[V any](cache Cache[V], r fleet.Redis, cfg SharedConfig[V]) (*Group[V], error) {
	if cache == nil {
		return nil, fmt.Errorf("%w: fill.NewShared: cache is nil", limiter.ErrInvalidConfig)
	}
	c, err := cfg.Config.check("fill.SharedConfig")
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.LeaseTTL < 0 || (cfg.LeaseTTL > 0 && cfg.LeaseTTL < time.Millisecond):
		return nil, fmt.Errorf("%w: fill.SharedConfig.LeaseTTL must be 0 or >= 1ms, got %v", limiter.ErrInvalidConfig, cfg.LeaseTTL)
	case cfg.LeaseWait < 0:
		return nil, fmt.Errorf("%w: fill.SharedConfig.LeaseWait must be >= 0, got %v", limiter.ErrInvalidConfig, cfg.LeaseWait)
	case cfg.HandoffMaxBytes < 0:
		return nil, fmt.Errorf("%w: fill.SharedConfig.HandoffMaxBytes must be >= 0, got %d", limiter.ErrInvalidConfig, cfg.HandoffMaxBytes)
	}
	ttl := cfg.LeaseTTL
	if ttl == 0 {
		ttl = c.FillTimeout
	}
	wait := cfg.LeaseWait
	if wait == 0 {
		wait = ttl
	}
	maxBytes := cfg.HandoffMaxBytes
	if maxBytes == 0 {
		maxBytes = defaultHandoffMaxBytes
	}
	var onBreaker func(observe.Breaker)
	if c.Observe != nil {
		onBreaker = c.Observe.Breaker
	}
	link, err := remote.Open(remote.Config(r), remote.Use{DefaultName: "fill",
		NoHeartbeat: "fill leases run no live-node heartbeat", Breaker: onBreaker}, c.Clock, c.Logger, "local")
	if err != nil {
		return nil, err
	}
	g := newGroup(cache, c)
	// The marker outlives any flight (the lease wait, then a fill), so a
	// release compares it with the value its flight saw (see Forget).
	g.shared = &shared{link: link, prefix: link.Prefix + ":" + link.Name + ":",
		ttl: max(ttl.Milliseconds(), 1), mark: max(2*(max(ttl, c.FillTimeout)+wait), time.Minute).Milliseconds(),
		wait: wait, poll: min(lastPoll, max(ttl/10, time.Millisecond)),
		node: strconv.FormatUint(rand.Uint64(), 36) + ":", max: maxBytes}
	g.codec = cfg.Handoff
	return g, nil
}

// keys returns the lease's, the filled marker's and the handed-off entry's
// Redis keys for key, in one slot.
func (s *shared) keys(key string) []string {
	base := s.prefix + "{" + bucketkey.Tag(key) + "}:"
	return []string{base + "lease", base + "filled", base + "value"}
}

// acquire retries the lease. mark is the filled marker seen at the first
// try ("": this is the first); if the marker has changed since, the lease
// is not taken. With look, a handed-off entry that expires after seen is
// returned instead (v, not ""), and the lease is not taken. It returns
// whether the lease is held and the marker.
func (s *shared) acquire(ctx context.Context, keys []string, token, mark string, seen time.Time, look bool) (held bool, now, v string, err error) {
	after, flag := "", "0"
	if look {
		flag = "1"
		if !seen.IsZero() {
			after = strconv.FormatInt(seen.UnixNano(), 10)
		}
	}
	reply, err := s.link.Eval(ctx, acquireScript, keys, token, s.ttl, mark, flag, after)
	if err != nil {
		return false, "", "", err
	}
	r, ok := reply.([]any)
	if !ok || len(r) < 2 || len(r) > 3 {
		return false, "", "", fmt.Errorf("%w: %v", fleet.ErrUnexpectedReply, reply)
	}
	n, _ := r[0].(int64)
	now, _ = r[1].(string)
	if len(r) == 3 {
		v, _ = r[2].(string)
	}
	return n == 1, now, v, nil
}

// lease runs the fleet's part of a flight of key: it returns a value
// another node filled (src FromFill if found in the cache, FromHandoff if
// handed off), or a release function when this node is to fill (nil when
// it fills without the lease), or ErrLeaseWait.
func (g *Group[V]) lease(ctx context.Context, key string, seen, staleUntil time.Time) (e Entry[V], src Source, release func(Entry[V], bool), err error) {
	s, clock := g.shared, g.cfg.Clock
	keys := s.keys(key)
	token := s.node + strconv.FormatUint(s.seq.Add(1), 36)
	unleased := func() (Entry[V], Source, func(Entry[V], bool), error) {
		g.n.unleased.Add(1)
		return e, 0, nil, nil
	}
	cached := func() (Entry[V], bool) {
		c, ok := g.cache.Get(ctx, key)
		if ok && g.fresh(c, seen) {
			g.n.waited.Add(1)
			return c, true
		}
		return e, false
	}
	look := g.codec != nil // ask for a handed-off entry
	mark := ""             // the marker at the first try
	deadline := clock.Now().Add(s.wait)
	for pause := firstPoll; ; {
		held, now, v, err := s.acquire(ctx, keys, token, mark, seen, look)
		switch {
		case err != nil && ctx.Err() != nil:
			return e, 0, nil, ctx.Err()
		case err != nil:
			return unleased() // the failure policy: fill locally
		case v != "":
			if h, ok := g.handedOff(key, v, seen); ok {
				g.n.handoffHits.Add(1)
				return h, FromHandoff, nil, nil
			}
			look = false // as if there were none: retry at once
			continue
		case held:
			// Another node may have filled between our look at the cache
			// and the lease being free.
			if c, ok := cached(); ok {
				g.release(key, keys, token, now, c, false)
				return c, FromFill, nil, nil
			}
			g.n.leases.Add(1)
			return e, 0, func(e Entry[V], filled bool) { g.release(key, keys, token, now, e, filled) }, nil
		case mark != "" && now != mark:
			// A fill finished elsewhere, and Get missed it just before:
			// look once more, then fill without the lease.
			if c, ok := cached(); ok {
				return c, FromFill, nil, nil
			}
			return unleased()
		}
		mark = now
		left := deadline.Sub(clock.Now())
		if left <= 0 {
			if clock.Now().Before(staleUntil) {
				return e, 0, nil, ErrLeaseWait
			}
			return unleased()
		}
		if err := sysclock.Sleep(ctx, clock, min(pause, left)); err != nil {
			return e, 0, nil, err
		}
		pause = min(2*pause, s.poll)
		if c, ok := cached(); ok {
			return c, FromFill, nil, nil
		}
	}
}

// release releases key's lease, taken when the marker was mark, and, if
// filled, bumps the marker and hands e off (with a Codec). Its context is
// not the flight's: that may have ended, and the lease should go all the
// same. Redis.Timeout bounds the call.
func (g *Group[V]) release(key string, keys []string, token, mark string, e Entry[V], filled bool) {
	var ttl int64
	var v []byte
	if filled && g.codec != nil {
		ttl, v = g.handoff(key, e)
	}
	r, err := g.shared.link.Eval(context.Background(), releaseScript, keys, token, filled, g.shared.mark, mark, ttl, v)
	if err != nil {
		g.shared.link.Logger().Debug("herdcap: a fill lease was not released; it expires", "err", err)
		return
	}
	if n, _ := r.(int64); n == 1 {
		g.n.handoffWrites.Add(1)
	}
}

// acquireScript takes a key's fill lease, or returns its handed-off entry,
// in one round trip.
//
// KEYS[1]  the lease
// KEYS[2]  the filled marker (a counter)
// KEYS[3]  the handed-off entry: "expiresUnixNano fillTimeNanos value"
// ARGV[1]  the taker's token
// ARGV[2]  the lease TTL, ms
// ARGV[3]  the marker the taker saw first, or "" on its first try
// ARGV[4]  "1" to return the handed-off entry, else "0"
// ARGV[5]  the expiry of the entry the taker saw (UnixNano), or "" for none
//
// It returns {1 if the lease is now the taker's, else 0; the marker}, or
// {0; the marker; the handed-off entry} if there is one that expires after
// ARGV[5]. A taker whose marker has changed does not take the lease: a fill
// finished.
var acquireScript = redis.NewScript(`
local mark = redis.call("GET", KEYS[2]) or "0"
if ARGV[4] == "1" then
  local v = redis.call("GET", KEYS[3])
  if v then
    local exp = tonumber(string.match(v, "^(-?%d+) "))
    if exp and (ARGV[5] == "" or exp > tonumber(ARGV[5])) then
      return {0, mark, v}
    end
  end
end
if ARGV[3] ~= "" and ARGV[3] ~= mark then
  return {0, mark}
end
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return {1, mark}
end
return {0, mark}
`)

// releaseScript releases a fill lease and, after a fill, hands the entry
// off and bumps the marker.
//
// KEYS[1]  the lease
// KEYS[2]  the filled marker
// KEYS[3]  the handed-off entry
// ARGV[1]  the holder's token: the lease is deleted only if it holds it
// ARGV[2]  1 if the holder filled the cache, else 0
// ARGV[3]  the marker's TTL, ms
// ARGV[4]  the marker when the lease was taken
// ARGV[5]  the handed-off entry's TTL, ms, or 0 for none
// ARGV[6]  the handed-off entry
//
// The entry is written only if the marker has not moved since the lease
// was taken: a Forget (or another node's fill) came after this fill began,
// and its value must not come back. It returns 1 if the entry was written,
// else 0.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
local wrote = 0
if ARGV[2] == "1" then
  local mark = redis.call("GET", KEYS[2]) or "0"
  if ARGV[5] ~= "0" and mark == ARGV[4] then
    redis.call("SET", KEYS[3], ARGV[6], "PX", ARGV[5])
    wrote = 1
  end
  redis.call("INCR", KEYS[2])
  redis.call("PEXPIRE", KEYS[2], ARGV[3])
end
return wrote
`)
