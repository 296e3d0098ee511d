package fill

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/limiter"
)

// handoff encodes e for the other nodes as "expiresUnixNano fillTimeNanos
// value" and returns it with its TTL in Redis, ms: the rest of e's fresh
// lifetime. It returns a TTL of 0 when e is not to be handed off: no
// lifetime left, an encoding error, or a value over HandoffMaxBytes.
func (g *Group[V]) handoff(key string, e Entry[V]) (int64, []byte) {
	ttl := e.Expires.Sub(g.cfg.Clock.Now()).Milliseconds()
	if ttl <= 0 {
		return 0, nil
	}
	b, err := g.encode(e.Value)
	if err != nil {
		g.n.handoffErrors.Add(1)
		g.cfg.Logger.Warn("herdcap: a filled value was not handed off: it failed to encode", "key", key, "err", err)
		return 0, nil
	}
	if len(b) > g.shared.max {
		g.n.handoffTooLarge.Add(1)
		return 0, nil
	}
	v := make([]byte, 0, len(b)+42)
	v = strconv.AppendInt(v, e.Expires.UnixNano(), 10)
	v = append(v, ' ')
	v = strconv.AppendInt(v, int64(e.FillTime), 10)
	v = append(v, ' ')
	return ttl, append(v, b...)
}

// handedOff decodes an entry another node handed off and reports whether
// it is a value newer than the one whose expiry the caller saw. A value
// that fails to decode is counted and logged.
func (g *Group[V]) handedOff(key, v string, seen time.Time) (Entry[V], bool) {
	e, err := g.decode(v)
	if err != nil {
		g.n.handoffErrors.Add(1)
		g.cfg.Logger.Warn("herdcap: a handed-off value was ignored: it failed to decode", "key", key, "err", err)
		return Entry[V]{}, false
	}
	return e, g.fresh(e, seen)
}

// errHandoffFormat: a handed-off entry without its header.
var errHandoffFormat = fmt.Errorf("fill: a handed-off entry has no header")

// decode parses "expiresUnixNano fillTimeNanos value".
func (g *Group[V]) decode(v string) (e Entry[V], err error) {
	exp, rest, ok1 := strings.Cut(v, " ")
	took, val, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return e, errHandoffFormat
	}
	ns, err1 := strconv.ParseInt(exp, 10, 64)
	d, err2 := strconv.ParseInt(took, 10, 64)
	if err1 != nil || err2 != nil {
		return e, errHandoffFormat
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fill: Codec.Decode panicked: %v", p)
		}
	}()
	value, err := g.codec.Decode([]byte(val))
	if err != nil {
		return e, err
	}
	return Entry[V]{Value: value, Expires: time.Unix(0, ns), FillTime: time.Duration(d)}, nil
}

// encode runs Codec.Encode, recovering a panic.
func (g *Group[V]) encode(v V) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fill: Codec.Encode panicked: %v", p)
		}
	}()
	return g.codec.Encode(v)
}

// Forget deletes key's handed-off entry across the fleet (SharedConfig.
// Handoff) and bumps its filled marker, in one round trip. An invalidation
// of key calls it once, on any node, besides deleting key from the nodes'
// caches: otherwise the copy in Redis would come back into the caches it
// was deleted from. Call it before deleting from the caches, so that a
// node missing its cache afterwards does not find the old entry.
//
// A fill under way when Forget runs (its lease taken before) does not
// hand its value off: its release sees that the marker moved, and the
// nodes waiting for it fill on their own. Forget does not stop what is in
// flight from reaching the caches: a fill under way still Sets its value
// in its node's cache, and so does a node that took the entry from Redis
// just before Forget ran, as with any fill during an invalidation. On a
// Group from New, Forget does nothing. It returns Redis's error (or the
// breaker's) if the round trip failed, and limiter.ErrClosed after Close.
func (g *Group[V]) Forget(ctx context.Context, key string) error {
	if g.shared == nil {
		return nil
	}
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return limiter.ErrClosed
	}
	_, err := g.shared.link.Eval(ctx, forgetScript, g.shared.keys(key), g.shared.mark)
	return err
}

// forgetScript deletes a key's handed-off entry and bumps its marker.
//
// KEYS[1]  the lease (unused: a fill under way keeps it)
// KEYS[2]  the filled marker
// KEYS[3]  the handed-off entry
// ARGV[1]  the marker's TTL, ms
var forgetScript = redis.NewScript(`
redis.call("DEL", KEYS[3])
redis.call("INCR", KEYS[2])
redis.call("PEXPIRE", KEYS[2], ARGV[1])
return 1
`)
