package fill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// Entry is a cached value as the Group sees it: the value and when it stops
// being fresh. The Group builds entries from fills and hands them to
// Cache.Set; a Cache returns them as they were set.
type Entry[V any] struct {
	// Value is the cached value.
	Value V
	// Expires is the end of the entry's fresh lifetime, on Config.Clock.
	// Within Config.StaleWhileRevalidate or Config.StaleIfError after it,
	// the entry is stale but may still be served (see Group).
	Expires time.Time
	// FillTime is how long the fill that produced the entry took: the δ of
	// early refresh (Config.Beta). 0 disables early refresh of the entry.
	FillTime time.Duration
}

// Cache is the read-through cache a Group fills: the caller's, local to the
// process or shared by the fleet. Get reports a miss with false. Both must
// be safe for concurrent use; a Cache that cannot reach its store reports a
// miss from Get and drops a Set. For fleet-wide coalescing (NewShared) the
// nodes' waiters find a value another node filled through Get when the
// Cache is shared by the nodes (a remote cache, or a local one in front of a
// shared one), or, with node-local caches, through SharedConfig.Handoff.
type Cache[V any] interface {
	Get(ctx context.Context, key string) (Entry[V], bool)
	Set(ctx context.Context, key string, e Entry[V])
}

// Func fills one key from the origin: the value and how long it stays
// fresh (ttl > 0). ctx carries the values of the context of the call that
// started the fill, but not its cancellation: it ends after
// Config.FillTimeout or when the Group is closed. Passing a func value that
// captures nothing per call (a top-level function or a method value kept in
// a variable) keeps Do free of allocations.
type Func[V any] func(ctx context.Context, key string) (v V, ttl time.Duration, err error)

// Source says where a Result's value came from.
type Source uint8

const (
	// FromCache: a fresh entry of the cache, without waiting.
	FromCache Source = iota + 1
	// FromFill: a fill the call waited for, run by this Group or, under
	// NewShared, by the node that held the key's lease.
	FromFill
	// Stale: an expired entry within Config.StaleWhileRevalidate, served at
	// once while a refresh runs in the background.
	Stale
	// StaleOnError: an expired entry within Config.StaleIfError, served
	// because the fill failed (Result.FillErr says why).
	StaleOnError
	// FromHandoff (NewShared with SharedConfig.Handoff): an entry another
	// node filled and handed off through Redis, now also in this node's
	// cache; no fill ran on this node.
	FromHandoff
)

// String returns "cache", "fill", "stale", "stale-on-error" or "handoff".
func (s Source) String() string {
	switch s {
	case FromCache:
		return "cache"
	case FromFill:
		return "fill"
	case Stale:
		return "stale"
	case StaleOnError:
		return "stale-on-error"
	case FromHandoff:
		return "handoff"
	}
	return fmt.Sprintf("Source(%d)", uint8(s))
}

// Result is what Do returns. It is a value: returning it allocates nothing.
type Result[V any] struct {
	// Value is the key's value.
	Value V
	// Expires is the end of Value's fresh lifetime (in the past for
	// Stale and StaleOnError).
	Expires time.Time
	// Source says where Value came from.
	Source Source
	// FillErr is the failed fill's error when Source is StaleOnError, and
	// nil otherwise.
	FillErr error
}

// Errors of Do, besides a fill's own and the caller's context's.
var (
	// ErrTooManyFills: Config.MaxKeys fills are in flight and the key has
	// none; the call fails at once rather than add a fill.
	ErrTooManyFills = errors.New("fill: too many fills in flight")
	// ErrInvalidTTL: a fill returned a TTL <= 0; nothing was cached.
	ErrInvalidTTL = errors.New("fill: fill returned a TTL <= 0")
	// ErrLeaseWait (NewShared): another node held the key's lease for all
	// of SharedConfig.LeaseWait, and the caller had a stale entry to serve
	// instead of filling (see Group).
	ErrLeaseWait = errors.New("fill: another node's fill outlasted the lease wait")
)

// PanicError is the error every waiter of a fill that panicked gets.
type PanicError struct {
	// Key is the key whose fill panicked.
	Key string
	// Value is the value the fill panicked with.
	Value any
	// Stack is the goroutine's stack when it panicked.
	Stack []byte
}

// Error names the key and the panic's value.
func (e *PanicError) Error() string {
	return fmt.Sprintf("fill: the fill of key %q panicked: %v", e.Key, e.Value)
}

// Config configures New (and, in SharedConfig, NewShared). The zero value is
// the default configuration.
type Config struct {
	// FillTimeout bounds one fill: its context ends FillTimeout after it
	// starts (real time: it is a context deadline). If FillTimeout is 0,
	// 10 s; it must not be negative.
	FillTimeout time.Duration
	// StaleWhileRevalidate is how long after Expires an entry is served
	// at once (Source Stale) while one refresh per key runs in the
	// background. 0: never. It must not be negative.
	StaleWhileRevalidate time.Duration
	// StaleIfError is how long after Expires an entry is served
	// (Source StaleOnError) when the fill fails. 0: never. It must not be
	// negative.
	StaleIfError time.Duration
	// Beta enables early refresh (XFetch) when > 0: a fresh entry is
	// refreshed in the background once now − FillTime·Beta·ln(Rand()) ≥
	// Expires. 1 is the usual choice; larger refreshes earlier. It must be
	// a finite number >= 0.
	Beta float64
	// MaxKeys is the most fills in flight at once, each for another key.
	// A call that would start one more fails with ErrTooManyFills (or,
	// within StaleIfError, is served stale), and a background refresh that
	// would is skipped. If MaxKeys is 0, 10,000; it must not be negative.
	MaxKeys int
	// Clock is the source of time (entries' Expires, early refresh and,
	// under NewShared, the waits between polls). If Clock is nil, the
	// system clock.
	Clock limiter.Clock
	// Rand returns a number uniform in (0, 1] for early refresh; it must
	// be safe for concurrent use. If Rand is nil, math/rand/v2.
	Rand func() float64
	// Logger receives panics and failed background refreshes (Warn) and,
	// under NewShared, the breaker's transitions and the handoff's
	// encoding and decoding errors (Warn). If Logger is nil, nothing is
	// logged.
	Logger *slog.Logger
	// Observe receives, under NewShared, the breaker's changes
	// (observe.Breaker, named after the Redis.Name); its other hooks are
	// not called. Nil: none.
	Observe *observe.Hooks
}

// Defaults of Config's zero values.
const (
	defaultFillTimeout = 10 * time.Second
	defaultMaxKeys     = 10000
)

// check validates c, naming fields under path, and returns it resolved.
func (c Config) check(path string) (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+path+"."+format, append([]any{limiter.ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.FillTimeout < 0:
		return bad("FillTimeout must be >= 0, got %v", c.FillTimeout)
	case c.StaleWhileRevalidate < 0:
		return bad("StaleWhileRevalidate must be >= 0, got %v", c.StaleWhileRevalidate)
	case c.StaleIfError < 0:
		return bad("StaleIfError must be >= 0, got %v", c.StaleIfError)
	case math.IsNaN(c.Beta) || math.IsInf(c.Beta, 0) || c.Beta < 0:
		return bad("Beta must be a finite number >= 0, got %v", c.Beta)
	case c.MaxKeys < 0:
		return bad("MaxKeys must be >= 0, got %d", c.MaxKeys)
	}
	if c.FillTimeout == 0 {
		c.FillTimeout = defaultFillTimeout
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = defaultMaxKeys
	}
	c.Clock = sysclock.Or(c.Clock)
	if c.Rand == nil {
		c.Rand = func() float64 { return 1 - rand.Float64() }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Stats counts what a Group did since New. Every field is a running total.
type Stats struct {
	// Hits: calls served a fresh entry (Source FromCache).
	Hits uint64
	// Fills: fills this Group ran (calls of a Func).
	Fills uint64
	// Joined: calls that waited for a fill another call had started.
	Joined uint64
	// Abandoned: calls whose context ended while they waited for a fill.
	Abandoned uint64
	// Stale and StaleOnError: calls served stale, by Source.
	Stale, StaleOnError uint64
	// Refreshes: background refreshes started (StaleWhileRevalidate, and
	// early refresh), of which Early by early refresh.
	Refreshes, Early uint64
	// Failed: fills that failed (an error, a panic or a bad TTL), of which
	// Panics panicked.
	Failed, Panics uint64
	// Rejected: fills not started because MaxKeys were in flight.
	Rejected uint64
	// Leases (NewShared): fills made holding the key's lease.
	Leases uint64
	// Waited (NewShared): flights that found another node's value in the
	// cache while it held the lease.
	Waited uint64
	// Unleased (NewShared): fills made without the lease because Redis
	// could not answer (the failure policy), the lease wait ran out, or
	// another node's fill finished but its value was neither in this
	// node's cache nor handed off.
	Unleased uint64
	// HandoffHits (SharedConfig.Handoff): flights served an entry another
	// node handed off (Source FromHandoff).
	HandoffHits uint64
	// HandoffWrites (SharedConfig.Handoff): filled entries this Group
	// handed off to the other nodes when it released the lease.
	HandoffWrites uint64
	// HandoffTooLarge (SharedConfig.Handoff): filled entries not handed
	// off because their encoded value exceeded HandoffMaxBytes.
	HandoffTooLarge uint64
	// HandoffErrors (SharedConfig.Handoff): values the Codec failed to
	// encode or decode (an error or a panic), each logged (Warn). A value
	// that fails to decode is ignored: the node goes on as if none was
	// handed off.
	HandoffErrors uint64
}

// counters are Stats' atomic counterparts.
type counters struct {
	hits, fills, joined, abandoned, stale, staleOnError, refreshes, early atomic.Uint64
	failed, panics, rejected, leases, waited, unleased                    atomic.Uint64
	handoffHits, handoffWrites, handoffTooLarge, handoffErrors            atomic.Uint64
}

// Group coalesces the fills of a read-through cache: for each key, at most
// one fill is in flight in the process (and, with NewShared, one across the
// fleet per lease), however many calls want it.
//
// Do serves, in order: a fresh entry of the cache (Source FromCache;
// without allocating); an entry expired less than StaleWhileRevalidate ago,
// at once, starting one background refresh (Source Stale); otherwise the
// value of the key's fill in flight, or of a new one (Source FromFill, or
// FromHandoff when another node handed it off: see NewShared). If
// that fill fails and the entry expired less than StaleIfError ago, the
// entry is served instead (Source StaleOnError, with Result.FillErr).
//
// A fill runs on a goroutine of its own, on a context that keeps the
// values of the starting call's context but not its cancellation, bounded
// by FillTimeout. A call whose context ends while it waits returns the
// context's error at once; the fill goes on for the others and still fills
// the cache. A fill that panics is recovered: every waiter gets a
// *PanicError. A fill's value is Set in the cache before any waiter
// returns. A flight lasts at most FillTimeout, plus, under NewShared, the
// lease wait and a few Redis calls of at most Redis.Timeout each.
//
// A Group is safe for concurrent use. Close it to end its fills.
type Group[V any] struct {
	cache  Cache[V]
	cfg    Config
	shared *shared  // nil: in process only
	codec  Codec[V] // SharedConfig.Handoff; nil: no handoff
	n      counters

	closing context.Context // ends when Close begins
	close   context.CancelFunc
	wg      sync.WaitGroup // the flights' goroutines

	mu      sync.Mutex // guards what follows
	flights map[string]*flight[V]
	closed  bool
}

// flight is one fill in flight. Its result fields are written before done
// is closed and only read after.
type flight[V any] struct {
	done   chan struct{}
	entry  Entry[V]
	err    error
	staleU time.Time // the starter's stale entry may be served until then (lease wait)
	bg     bool      // started by a background refresh
	src    Source    // FromFill, or FromHandoff
}

// New returns a Group that fills cache, coalescing fills in this process.
// Bad configuration is an error wrapping limiter.ErrInvalidConfig that
// names the field (fill.Config.Field).
func New[V any](cache Cache[V], cfg Config) (*Group[V], error) {
	if cache == nil {
		return nil, fmt.Errorf("%w: fill.New: cache is nil", limiter.ErrInvalidConfig)
	}
	c, err := cfg.check("fill.Config")
	if err != nil {
		return nil, err
	}
	return newGroup(cache, c), nil
}

func newGroup[V any](cache Cache[V], c Config) *Group[V] {
	g := &Group[V]{cache: cache, cfg: c, flights: make(map[string]*flight[V])}
	g.closing, g.close = context.WithCancel(context.Background())
	return g
}

// Do returns key's value; see Group for which. fill is called (on another
// goroutine) only when the key needs a fill and none is in flight. The
// error is ctx's when it ended first, limiter.ErrClosed after Close,
// ErrTooManyFills, or the fill's: its own error, a *PanicError, one
// wrapping ErrInvalidTTL or context.DeadlineExceeded (FillTimeout) and,
// under NewShared, ErrLeaseWait.
func (g *Group[V]) Do(ctx context.Context, key string, fill Func[V]) (Result[V], error) {
	if fill == nil {
		return Result[V]{}, fmt.Errorf("%w: fill.Group.Do: fill is nil", limiter.ErrInvalidRequest)
	}
	if err := ctx.Err(); err != nil {
		return Result[V]{}, err
	}
	e, ok := g.cache.Get(ctx, key)
	now := g.cfg.Clock.Now()
	if ok && now.Before(e.Expires) {
		if g.early(now, e) && g.refresh(ctx, key, e.Expires, fill) {
			g.n.early.Add(1)
		}
		g.n.hits.Add(1)
		return Result[V]{Value: e.Value, Expires: e.Expires, Source: FromCache}, nil
	}
	if ok && now.Before(e.Expires.Add(g.cfg.StaleWhileRevalidate)) {
		g.refresh(ctx, key, e.Expires, fill)
		g.n.stale.Add(1)
		return Result[V]{Value: e.Value, Expires: e.Expires, Source: Stale}, nil
	}
	var seen, staleUntil time.Time
	if ok {
		seen, staleUntil = e.Expires, e.Expires.Add(g.cfg.StaleIfError)
	}
	f, err := g.start(ctx, key, seen, staleUntil, fill, false)
	if err == nil {
		select {
		case <-f.done:
			err = f.err
		case <-ctx.Done():
			g.n.abandoned.Add(1)
			return Result[V]{}, ctx.Err()
		}
		if err == nil {
			return Result[V]{Value: f.entry.Value, Expires: f.entry.Expires, Source: f.src}, nil
		}
	}
	if ok && !errors.Is(err, limiter.ErrClosed) && g.cfg.Clock.Now().Before(staleUntil) {
		g.n.staleOnError.Add(1)
		return Result[V]{Value: e.Value, Expires: e.Expires, Source: StaleOnError, FillErr: err}, nil
	}
	return Result[V]{}, err
}

// early reports whether a fresh entry is due for early refresh.
func (g *Group[V]) early(now time.Time, e Entry[V]) bool {
	if g.cfg.Beta == 0 || e.FillTime <= 0 {
		return false
	}
	gap := -float64(e.FillTime) * g.cfg.Beta * math.Log(g.cfg.Rand())
	return !(gap < float64(e.Expires.Sub(now))) // NaN or +Inf (Rand 0) refresh
}

// refresh starts a background fill of key, unless one is in flight, and
// reports whether it did.
func (g *Group[V]) refresh(ctx context.Context, key string, seen time.Time, fill Func[V]) bool {
	if _, err := g.start(ctx, key, seen, time.Time{}, fill, true); err != nil {
		return false
	}
	g.n.refreshes.Add(1)
	return true
}

// start joins key's flight, or starts one. seen is the Expires of the
// entry the caller saw (zero: none): a cache entry counts as a new value
// only if it is fresh and expires later. A background refresh that would
// only join is not counted and returns errJoined.
func (g *Group[V]) start(ctx context.Context, key string, seen, staleUntil time.Time, fill Func[V], background bool) (*flight[V], error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, limiter.ErrClosed
	}
	if f, ok := g.flights[key]; ok {
		g.mu.Unlock()
		if background {
			return nil, errJoined
		}
		g.n.joined.Add(1)
		return f, nil
	}
	if len(g.flights) >= g.cfg.MaxKeys {
		g.mu.Unlock()
		g.n.rejected.Add(1)
		return nil, ErrTooManyFills
	}
	f := &flight[V]{done: make(chan struct{}), staleU: staleUntil, bg: background, src: FromFill}
	g.flights[key] = f
	g.wg.Add(1)
	g.mu.Unlock()
	go g.run(context.WithoutCancel(ctx), key, seen, fill, f)
	return f, nil
}

// errJoined: a background refresh found a fill in flight.
var errJoined = errors.New("fill: joined")

// run is a flight's goroutine: it finds or fills key's value, Sets it,
// and wakes the waiters.
func (g *Group[V]) run(ctx context.Context, key string, seen time.Time, fill Func[V], f *flight[V]) {
	defer g.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(g.closing, cancel)
	defer stop()

	var release func(e Entry[V], filled bool)
	if g.shared != nil {
		e, src, rel, err := g.lease(ctx, key, seen, f.staleU)
		if err != nil || src != 0 {
			if src == FromHandoff {
				g.cache.Set(ctx, key, e)
				f.src = src
			}
			g.finish(key, f, e, err)
			return
		}
		release = rel
	} else if e, ok := g.cache.Get(ctx, key); ok && g.fresh(e, seen) {
		g.finish(key, f, e, nil) // filled since the caller looked
		return
	}
	e, err := g.call(ctx, key, fill)
	if err == nil {
		g.cache.Set(ctx, key, e)
	}
	g.finish(key, f, e, err)
	if release != nil {
		release(e, err == nil)
	}
	if err != nil && f.bg {
		g.cfg.Logger.Warn("herdcap: a background refresh failed", "key", key, "err", err)
	}
}

// fresh reports whether e is a value newer than the one whose expiry the
// caller saw.
func (g *Group[V]) fresh(e Entry[V], seen time.Time) bool {
	return g.cfg.Clock.Now().Before(e.Expires) && e.Expires.After(seen)
}

// finish records f's result, retires it and wakes its waiters.
func (g *Group[V]) finish(key string, f *flight[V], e Entry[V], err error) {
	f.entry, f.err = e, err
	g.mu.Lock()
	delete(g.flights, key)
	g.mu.Unlock()
	close(f.done)
}

// call runs fill within FillTimeout, recovering a panic, and returns the
// entry to cache.
func (g *Group[V]) call(ctx context.Context, key string, fill Func[V]) (e Entry[V], err error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.FillTimeout)
	defer cancel()
	g.n.fills.Add(1)
	start := g.cfg.Clock.Now()
	defer func() {
		if p := recover(); p != nil {
			g.n.panics.Add(1)
			err = &PanicError{Key: key, Value: p, Stack: debug.Stack()}
			g.cfg.Logger.Warn("herdcap: a fill panicked", "key", key, "panic", p)
		}
		if err != nil {
			g.n.failed.Add(1)
			e = Entry[V]{}
		}
	}()
	v, ttl, err := fill(ctx, key)
	if err != nil {
		return e, err
	}
	if ttl <= 0 {
		return e, fmt.Errorf("%w: the fill of key %q returned %v", ErrInvalidTTL, key, ttl)
	}
	now := g.cfg.Clock.Now()
	return Entry[V]{Value: v, Expires: now.Add(ttl), FillTime: max(now.Sub(start), 0)}, nil
}

// Stats returns the Group's counters.
func (g *Group[V]) Stats() Stats {
	n := &g.n
	return Stats{Hits: n.hits.Load(), Fills: n.fills.Load(), Joined: n.joined.Load(), Abandoned: n.abandoned.Load(),
		Stale: n.stale.Load(), StaleOnError: n.staleOnError.Load(), Refreshes: n.refreshes.Load(), Early: n.early.Load(),
		Failed: n.failed.Load(), Panics: n.panics.Load(), Rejected: n.rejected.Load(),
		Leases: n.leases.Load(), Waited: n.waited.Load(), Unleased: n.unleased.Load(),
		HandoffHits: n.handoffHits.Load(), HandoffWrites: n.handoffWrites.Load(),
		HandoffTooLarge: n.handoffTooLarge.Load(), HandoffErrors: n.handoffErrors.Load()}
}

// Close ends the Group: later calls of Do return limiter.ErrClosed, the
// contexts of the fills in flight end, and Close returns once their
// goroutines have (a fill that ignores its context delays it). Under
// NewShared it then drops the link to Redis; a lease still held expires
// after its TTL. It is idempotent.
func (g *Group[V]) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.close()
	g.wg.Wait()
	if g.shared != nil {
		g.shared.link.Close()
	}
	return nil
}
