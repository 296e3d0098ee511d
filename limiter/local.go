package limiter

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/herdcap/herdcap/internal/bucketkey"
)

// Local is an in-process Budget: one golang.org/x/time/rate bucket per key,
// held in a sharded map of bounded size. It is the embedded default store and
// the fallback of the Redis backends.
//
// Memory is bounded by WithMaxKeys (default DefaultMaxKeys) whatever the
// number of distinct keys: when a shard is full, a key whose bucket has
// refilled to its burst is dropped first (which changes no decision, since a
// new key starts full); failing that, the least recently used of a small
// random sample is dropped, and the key starts afresh if it comes back (such
// lossy evictions are counted in Stats). Keys longer than
// bucketkey.MaxVerbatim bytes are stored as their SHA-256 digest.
//
// A Local is safe for concurrent use. Its AllowN allocates nothing once a
// key's bucket exists.
type Local struct {
	clock  Clock // nil: the monotonic clock (see now)
	limit  limitState
	keys   *keyMap[localEntry]
	closed atomic.Bool
}

type localEntry struct {
	lim rate.Limiter
	gen atomic.Uint64 // ramp generation applied to lim
	// last is when tokens were last taken (unix ns; 0: never): when the
	// bucket's state was last written, as Redis keeps it.
	last atomic.Int64
}

// LocalStats describes a Local's key map.
type LocalStats struct {
	// Keys is the number of buckets held.
	Keys int
	// Capacity is the most buckets that can be held (WithMaxKeys).
	Capacity int
	// Evictions counts buckets dropped to make room.
	Evictions uint64
	// LossyEvictions counts the evictions of buckets that were not full:
	// their keys got a fresh burst when they came back.
	LossyEvictions uint64
}

// NewLocal returns an in-process budget enforcing l per key. It accepts
// WithClock, WithRamp, WithMaxKeys and WithLogger.
func NewLocal(l Limit, opts ...Option) (*Local, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	o, err := buildOptions(kindLocal, opts)
	if err != nil {
		return nil, err
	}
	return newLocal(l, o), nil
}

func newLocal(l Limit, o options) *Local {
	lb := &Local{keys: newKeyMap(o.maxKeys, localFull, nil)}
	if o.clockSet {
		lb.clock = o.clock
	}
	lb.limit.init(l, o.ramp)
	return lb
}

// localFull reports whether e's bucket is full at t: dropping it loses
// nothing, since a new key starts full.
func localFull(e *localEntry, t time.Time) bool {
	return e.lim.TokensAt(t) >= float64(e.lim.Burst())
}

// monoBase anchors the monotonic clock that Local uses when no clock is
// injected.
var monoBase = time.Now()

// now reads the injected clock or, by default, the monotonic clock anchored
// at process start: it cannot step when the wall clock is adjusted, and it
// costs about half of time.Now.
func (lb *Local) now() time.Time {
	if lb.clock == nil {
		return monoBase.Add(time.Since(monoBase))
	}
	return lb.clock.Now()
}

// AllowN takes n tokens for key now, if all n are available. See Budget.
func (lb *Local) AllowN(_ context.Context, key string, n int) (d Decision, err error) {
	t := lb.now()
	if lb.fast(&d, key, t, n) {
		return d, nil
	}
	err = lb.decideAt(&d, key, t, n, false)
	return d, err
}

// fast is AllowN's hot path, for the common case: 1 <= n <= burst, a limit
// not ramping, and a key whose bucket exists under the current limit. It
// reports false, having changed nothing, when any of that does not hold, and
// the general path (decideAt) decides instead. It exists because passing a
// Limit, a time and a Decision down four calls cost more than the bucket.
func (lb *Local) fast(d *Decision, key string, t time.Time, n int) bool {
	r := lb.limit.p.Load()
	if n < 1 || n > r.to.Burst || t.Before(r.end) || len(key) == 0 || lb.closed.Load() {
		return false
	}
	ns := t.UnixNano()
	s := lb.keys.lookup(bucketkey.Local(key), ns)
	if s == nil || s.v.gen.Load() != r.gen {
		return false
	}
	e := &s.v
	d.Limit, d.Source = r.to, SourceLocal
	if e.lim.AllowN(t, n) {
		d.Allowed, d.Taken = true, n
		e.last.Store(ns)
	}
	fillFromTokens(d, e.lim.TokensAt(t), n, false)
	return true
}

// AllowNAt is AllowN at time t.
func (lb *Local) AllowNAt(_ context.Context, key string, t time.Time, n int) (Decision, error) {
	return lb.decide(key, t, n, false)
}

// TakeUpTo takes as many of n tokens as are available now, at least one.
func (lb *Local) TakeUpTo(_ context.Context, key string, n int) (Decision, error) {
	return lb.decide(key, lb.now(), n, true)
}

// TakeUpToAt is TakeUpTo at time t.
func (lb *Local) TakeUpToAt(_ context.Context, key string, t time.Time, n int) (Decision, error) {
	return lb.decide(key, t, n, true)
}

// Limit returns the limit in force now.
func (lb *Local) Limit() Limit {
	l, _ := lb.limit.at(lb.now())
	return l
}

// SetLimit ramps every key to l over the WithRamp window, starting now. A
// bucket refills at the limit in force when it is read, counted from its
// last take, exactly as on Redis.
func (lb *Local) SetLimit(l Limit) error { return lb.SetLimitAt(lb.now(), l) }

// SetLimitAt is SetLimit with the ramp starting at t.
func (lb *Local) SetLimitAt(t time.Time, l Limit) error { return lb.limit.set(t, l) }

// Close marks the budget closed; later decisions fail with ErrClosed.
func (lb *Local) Close() error {
	lb.closed.Store(true)
	return nil
}

// Stats reports the size of the key map and its evictions.
func (lb *Local) Stats() LocalStats {
	return LocalStats{
		Keys:           lb.keys.len(),
		Capacity:       lb.keys.capacity(),
		Evictions:      lb.keys.evictions.Load(),
		LossyEvictions: lb.keys.lossy.Load(),
	}
}

func checkArgs(key string, n int) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if n < 0 {
		return fmt.Errorf("%w: n must be >= 0, got %d", ErrInvalidN, n)
	}
	return nil
}

func errOverBurst(n int, l Limit) error {
	return fmt.Errorf("%w: n = %d exceeds the burst of %d, so it could never be granted", ErrInvalidN, n, l.Burst)
}

func (lb *Local) decide(key string, t time.Time, n int, upTo bool) (d Decision, err error) {
	err = lb.decideAt(&d, key, t, n, upTo)
	return d, err
}

// decideAt decides into d at t, under the limit in force then. Outside a
// ramp window (the common case) that is one atomic load and one comparison.
func (lb *Local) decideAt(d *Decision, key string, t time.Time, n int, upTo bool) error {
	r := lb.limit.p.Load()
	lim, ramping := r.to, false
	if t.Before(r.end) {
		lim, ramping = r.at(t), true
	}
	return lb.decideLimit(d, key, t, n, upTo, lim, r.gen, ramping, SourceLocal)
}

// decideLimit decides under lim into d. lim belongs to generation gen of the
// limit (and is still changing when ramping). The Redis backends call it with
// their fallback share. d is filled in place: a Decision is 80 bytes, and
// copying it down the call chain showed in profiles.
func (lb *Local) decideLimit(d *Decision, key string, t time.Time, n int, upTo bool, lim Limit, gen uint64, ramping bool, src Source) error {
	d.Source, d.Limit = src, lim
	if lb.closed.Load() {
		return ErrClosed
	}
	if err := checkArgs(key, n); err != nil {
		return err
	}
	if n > lim.Burst && !upTo {
		return errOverBurst(n, lim)
	}
	e := lb.bucket(key, t, lim, gen, ramping)
	decideBucket(d, &e.lim, t, n, upTo)
	if d.Taken > 0 {
		e.last.Store(t.UnixNano())
	}
	return nil
}

// bucket returns key's bucket, brought to limit lim of generation gen.
func (lb *Local) bucket(key string, t time.Time, lim Limit, gen uint64, ramping bool) *localEntry {
	e := &lb.keys.get(bucketkey.Local(key), t, func(e *localEntry) {
		// Initialise at the zero time so the first use finds a full bucket.
		e.lim.SetLimitAt(time.Time{}, rate.Limit(lim.PerSecond()))
		e.lim.SetBurstAt(time.Time{}, lim.Burst)
		e.gen.Store(gen)
	}).v
	if e.gen.Load() != gen || ramping {
		// A new limit applies from the bucket's last write, as in the
		// Redis script, which refills since then at the rate it is given:
		// so Local and Redis make the same decisions through a change.
		// (Setting it at t would refill the gap at the old rate.)
		at := time.Time{}
		if ns := e.last.Load(); ns != 0 {
			at = time.Unix(0, ns)
		}
		e.lim.SetLimitAt(at, rate.Limit(lim.PerSecond()))
		e.lim.SetBurstAt(at, lim.Burst)
		e.gen.Store(gen)
	}
	return e
}

// decideBucket makes one decision on an x/time/rate bucket, into d (whose
// Limit is set).
func decideBucket(d *Decision, b *rate.Limiter, t time.Time, n int, upTo bool) {
	want := n
	if upTo {
		want = min(n, int(b.TokensAt(t)))
		if n > 0 && want < 1 {
			want = -1 // nothing available
		}
	}
	switch {
	case want == 0:
		d.Allowed = true
	case want > 0 && b.AllowN(t, want):
		d.Allowed, d.Taken = true, want
	}
	fillFromTokens(d, b.TokensAt(t), n, upTo)
}

// fillFromTokens completes d (whose Limit, Allowed and Taken are set) from
// the tokens left in the bucket after the decision.
func fillFromTokens(d *Decision, tokens float64, n int, upTo bool) {
	perSec := d.Limit.PerSecond()
	if !d.Allowed {
		need := float64(n)
		if upTo {
			need = 1
		}
		d.RetryAfter = durationFromTokens(need-tokens, perSec)
		if d.RetryAfter <= 0 {
			// Taken by a concurrent caller between our look and our
			// take; the shortest honest wait is one token's worth.
			d.RetryAfter = durationFromTokens(1, perSec)
		}
	}
	d.ResetAfter = durationFromTokens(float64(d.Limit.Burst)-tokens, perSec)
	if tokens >= 1 {
		d.Remaining = int(tokens)
	}
}
