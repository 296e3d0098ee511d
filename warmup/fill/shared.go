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
)

// SharedConfig configures NewShared: Config's fields and the fill lease.
// The zero value is the default configuration.
type SharedConfig struct {
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
}

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
// (the nodes' caches are not shared), and after LeaseWait: then, if the
// call that started the wait had an entry within StaleIfError, it gets
// ErrLeaseWait and serves that entry instead. A holder that died leaves
// its lease to expire: a waiter takes it over within LeaseTTL plus one poll.
//
// While Redis cannot answer (a call fails or exceeds Redis.Timeout, or the
// breaker is open) a node fills without the lease, coalescing in process
// only (Stats.Unleased): a Redis outage costs no more than Redis.Timeout
// per fill, and nothing once the breaker is open. The lease and the
// marker of a key live in one cluster slot. No heartbeat runs: Redis.Node
// and Redis.Heartbeat must be unset. Bad configuration is an error
// wrapping limiter.ErrInvalidConfig that names the field.
func NewShared[V any](cache Cache[V], r fleet.Redis, cfg SharedConfig) (*Group[V], error) {
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
	}
	ttl := cfg.LeaseTTL
	if ttl == 0 {
		ttl = c.FillTimeout
	}
	wait := cfg.LeaseWait
	if wait == 0 {
		wait = ttl
	}
	link, err := remote.Open(remote.Config(r), remote.Use{DefaultName: "fill",
		NoHeartbeat: "fill leases run no live-node heartbeat"}, c.Clock, c.Logger, "local")
	if err != nil {
		return nil, err
	}
	g := newGroup(cache, c)
	g.shared = &shared{link: link, prefix: link.Prefix + ":" + link.Name + ":",
		ttl: max(ttl.Milliseconds(), 1), mark: max(2*(ttl+wait), time.Minute).Milliseconds(),
		wait: wait, poll: min(lastPoll, max(ttl/10, time.Millisecond)),
		node: strconv.FormatUint(rand.Uint64(), 36) + ":"}
	return g, nil
}

// keys returns the lease's and the filled marker's Redis keys for key.
func (s *shared) keys(key string) []string {
	base := s.prefix + "{" + bucketkey.Tag(key) + "}:"
	return []string{base + "lease", base + "filled"}
}

// acquire retries the lease. mark is the filled marker seen at the first
// try ("": this is the first); if the marker has changed since, the lease
// is not taken. It returns whether the lease is held and the marker.
func (s *shared) acquire(ctx context.Context, keys []string, token, mark string) (bool, string, error) {
	v, err := s.link.Eval(ctx, acquireScript, keys, token, s.ttl, mark)
	if err != nil {
		return false, "", err
	}
	r, ok := v.([]any)
	if !ok || len(r) != 2 {
		return false, "", fmt.Errorf("%w: %v", fleet.ErrUnexpectedReply, v)
	}
	held, _ := r[0].(int64)
	m, _ := r[1].(string)
	return held == 1, m, nil
}

// lease runs the fleet's part of a flight of key: it returns a value
// another node filled (found), or a release function when this node is to
// fill (nil when it fills without the lease), or ErrLeaseWait.
func (g *Group[V]) lease(ctx context.Context, key string, seen, staleUntil time.Time) (e Entry[V], found bool, release func(bool), err error) {
	s, clock := g.shared, g.cfg.Clock
	keys := s.keys(key)
	token := s.node + strconv.FormatUint(s.seq.Add(1), 36)
	unleased := func() (Entry[V], bool, func(bool), error) {
		g.n.unleased.Add(1)
		return e, false, nil, nil
	}
	held, mark, err := s.acquire(ctx, keys, token, "")
	if err != nil {
		if ctx.Err() != nil {
			return e, false, nil, ctx.Err()
		}
		return unleased() // the failure policy: fill locally
	}
	release = func(filled bool) {
		// Not the flight's context: it may have ended, and the lease
		// should go all the same. Redis.Timeout bounds the call.
		if _, err := s.link.Eval(context.Background(), releaseScript, keys, token, filled, s.mark); err != nil {
			s.link.Logger().Debug("herdcap: a fill lease was not released; it expires", "err", err)
		}
	}
	deadline := clock.Now().Add(s.wait)
	for pause := firstPoll; ; pause = min(2*pause, s.poll) {
		if held {
			// Another node may have filled between our look at the cache
			// and the lease being free.
			if c, ok := g.cache.Get(ctx, key); ok && g.fresh(c, seen) {
				release(false)
				g.n.waited.Add(1)
				return c, true, nil, nil
			}
			g.n.leases.Add(1)
			return e, false, release, nil
		}
		left := deadline.Sub(clock.Now())
		if left <= 0 {
			if clock.Now().Before(staleUntil) {
				return e, false, nil, ErrLeaseWait
			}
			return unleased()
		}
		if err := sysclock.Sleep(ctx, clock, min(pause, left)); err != nil {
			return e, false, nil, err
		}
		if c, ok := g.cache.Get(ctx, key); ok && g.fresh(c, seen) {
			g.n.waited.Add(1)
			return c, true, nil, nil
		}
		var now string
		held, now, err = s.acquire(ctx, keys, token, mark)
		switch {
		case err != nil && ctx.Err() != nil:
			return e, false, nil, ctx.Err()
		case err != nil:
			return unleased()
		case !held && now != mark:
			// A fill finished elsewhere, and Get missed it just before:
			// look once more, then fill without the lease.
			if c, ok := g.cache.Get(ctx, key); ok && g.fresh(c, seen) {
				g.n.waited.Add(1)
				return c, true, nil, nil
			}
			return unleased()
		}
	}
}

// acquireScript takes a key's fill lease, in one round trip.
//
// KEYS[1]  the lease
// KEYS[2]  the filled marker (a counter)
// ARGV[1]  the taker's token
// ARGV[2]  the lease TTL, ms
// ARGV[3]  the marker the taker saw first, or "" on its first try
//
// It returns {1 if the lease is now the taker's, else 0; the marker}. A
// taker whose marker has changed does not take the lease: a fill finished.
var acquireScript = redis.NewScript(`
local mark = redis.call("GET", KEYS[2]) or "0"
if ARGV[3] ~= "" and ARGV[3] ~= mark then
  return {0, mark}
end
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return {1, mark}
end
return {0, mark}
`)

// releaseScript releases a fill lease and, after a fill, bumps the marker.
//
// KEYS[1]  the lease
// KEYS[2]  the filled marker
// ARGV[1]  the holder's token: the lease is deleted only if it holds it
// ARGV[2]  1 if the holder filled the cache, else 0
// ARGV[3]  the marker's TTL, ms
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
if ARGV[2] == "1" then
  redis.call("INCR", KEYS[2])
  redis.call("PEXPIRE", KEYS[2], ARGV[3])
end
return 1
`)
