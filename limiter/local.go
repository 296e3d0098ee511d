package limiter

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/keymap"
	"github.com/herdcap/herdcap/internal/ramp"
	"github.com/herdcap/herdcap/internal/tail"
	"github.com/herdcap/herdcap/observe"
)

// Local is an in-process Budget: one golang.org/x/time/rate bucket per key,
// in a sharded map of bounded size. It is the embedded default store, and
// the fallback of the Redis budgets of package fleet.
//
// Each key's bucket refills at the budget's own limit (NewLocal, SetLimit),
// or at the limit its requests carry (Request.Limit); either ramps over
// Config.Ramp when it changes. Refusals of one key are told successive
// times (see Decision.RetryAfter).
//
// Memory is bounded by Config.MaxKeys whatever the number of distinct keys:
// when a shard is full, a key whose bucket has refilled to its burst (with
// no ramp or denial tail under way) is dropped first, which changes no
// decision since a new key starts full; failing that, the least recently
// used of a small random sample is dropped, and the key starts afresh if it
// comes back (Stats counts such lossy evictions). Keys longer than 128
// bytes are held as their SHA-256.
//
// A Local is safe for concurrent use. AllowN, and Take with a Request.Limit
// equal to the key's last one, allocate nothing once the key's bucket
// exists. Close makes later decisions fail with ErrClosed.
type Local struct {
	clock  Clock // nil: the monotonic clock (see now)
	window time.Duration
	limit  ramp.State
	keys   *keymap.Map[localEntry]
	closed atomic.Bool
	name   string                 // Config.Name, for events
	onDec  func(observe.Decision) // Config.Observe.Decision; nil: none
}

// keyedGen marks a localEntry.gen that stands for the limit the key's
// requests carry, steady (no ramp under way); the low bits count changes.
const keyedGen = 1 << 63

type localEntry struct {
	// gen says which limit lim holds: a generation of the budget's own
	// ramp (below keyedGen); keyedGen|seq for the limit the key's requests
	// carry (carried), steady; or 0 while that limit is ramping or
	// changing (the general path then brings lim to it).
	gen atomic.Uint64
	// The limit the key's requests carry (zero: none so far), as three
	// words so that the hot path compares them without a lock: it reads
	// gen before and after them (a seqlock: every change sets gen to 0
	// first and to a new keyedGen|seq after).
	cRate   atomic.Uint64 // math.Float64bits(Limit.Rate)
	cPeriod atomic.Int64
	cBurst  atomic.Int64
	// The words above are read by every decision and written only when a
	// limit changes; what follows is written by every take. Keep them on
	// separate cache lines, so that concurrent takes of a hot key do not
	// make every read of the limit a miss.
	_ [32]byte

	lim rate.Limiter
	// last is when tokens were last taken (unix ns; 0: never): when the
	// bucket's state was last written, as Redis keeps it.
	last atomic.Int64

	mu   sync.Mutex // guards the writes of lim's limit, gen, the carried limit, and what follows
	seq  uint64
	ramp *ramp.Ramp // the ramp of the carried limit; nil when none is under way
	tail tail.Tail
}

// Stats describes a Local's key map.
type Stats struct {
	// Keys is the number of buckets held.
	Keys int
	// Capacity is the most buckets that can be held (Config.MaxKeys,
	// rounded down to a multiple of the map's shards).
	Capacity int
	// Evictions counts buckets dropped to make room.
	Evictions uint64
	// LossyEvictions counts the evictions of buckets that were not full:
	// their keys got a fresh burst when they came back.
	LossyEvictions uint64
}

// NewLocal returns an in-process budget enforcing l per key. Bad
// configuration is an error wrapping ErrInvalidLimit or ErrInvalidConfig
// that names the field.
func NewLocal(l Limit, cfg Config) (*Local, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.check("Config"); err != nil {
		return nil, err
	}
	window, _ := ramp.Window(cfg.Ramp)
	lb := &Local{clock: cfg.Clock, window: window, name: cfg.Name}
	if cfg.Observe != nil {
		lb.onDec = cfg.Observe.Decision
	}
	lb.keys = keymap.New(cfg.maxKeys(), lb.idle, nil)
	lb.limit.Init(ramp.Limit(l), window)
	return lb, nil
}

// idle reports whether dropping e loses nothing: its bucket is full at t,
// and neither a ramp nor a denial tail is under way.
func (lb *Local) idle(e *localEntry, t time.Time) bool {
	if e.lim.TokensAt(t) < float64(e.lim.Burst()) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tail.Idle(t.UnixNano()) && (e.ramp == nil || !e.ramp.Active(t))
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

// AllowN takes n tokens for key if all n are available: Take of
// Request{Key: key, N: n}, the common call, on the hot path.
func (lb *Local) AllowN(_ context.Context, key string, n int) (d Decision, err error) {
	t := lb.now()
	if !lb.fast(&d, key, t, n, false) {
		r := Request{Key: key, N: n}
		err = lb.take(&d, &r, t)
	}
	if lb.onDec != nil && err == nil {
		lb.onDec(observed(lb.name, d, n))
	}
	return d, err
}

// Take decides r now. See Budget and Request.
func (lb *Local) Take(_ context.Context, r Request) (d Decision, err error) {
	t := lb.now()
	if !r.UpTo && r.Wait >= 0 {
		// With Wait, the fast path serves a request whose tokens are
		// there now (booked at once, as reserve would); any other goes
		// on to the general path.
		if r.Limit == (Limit{}) {
			if lb.fast(&d, r.Key, t, r.N, r.Wait > 0) {
				lb.observed(d, r.N)
				return d, nil
			}
		} else if lb.fastKeyed(&d, &r, t) {
			lb.observed(d, r.N)
			return d, nil
		}
	}
	if err = lb.take(&d, &r, t); err == nil {
		lb.observed(d, r.N)
	}
	return d, err
}

// observed reports d, a decision for n tokens, to the Decision hook.
func (lb *Local) observed(d Decision, n int) {
	if lb.onDec != nil {
		lb.onDec(observed(lb.name, d, n))
	}
}

// observed returns the event that reports d, a decision of policy for n
// tokens, to an observe.Hooks' Decision hook. (observe.Source numbers its
// values as Via does.)
func observed(policy string, d Decision, n int) observe.Decision {
	e := observe.Decision{Policy: policy, Outcome: observe.Denied, Source: observe.Source(d.Via), Tokens: n}
	if d.Allowed {
		e.Outcome, e.Tokens = observe.Allowed, d.Taken
	}
	return e
}

// fast is the hot path under the budget's own limit, for the common case:
// 1 <= n <= burst, a limit not ramping, and a key whose bucket exists under
// the current limit. It reports false, having changed nothing, when any of
// that does not hold, and the general path (take) decides instead. It
// exists because passing a Limit, a time and a Decision down four calls
// cost more than the bucket. With onlyNow (a request with Wait), it also
// reports false, having changed nothing, when the n tokens are not there
// now: booking them ahead is the general path's.
func (lb *Local) fast(d *Decision, key string, t time.Time, n int, onlyNow bool) bool {
	r := lb.limit.Load()
	if n < 1 || n > r.To.Burst || t.Before(r.End) || len(key) == 0 || lb.closed.Load() {
		return false
	}
	ns := t.UnixNano()
	s := lb.keys.Lookup(bucketkey.Local(key), ns)
	if s == nil || s.V.gen.Load() != r.Gen {
		return false
	}
	d.Limit, d.Via = Limit(r.To), ViaLocal
	return lb.allowEntry(d, s, t, ns, n, onlyNow)
}

// fastKeyed is fast for a request carrying its own limit: the key's bucket
// must exist and hold that limit, steady. Reading the carried limit is a
// seqlock on gen (see localEntry): no lock, no allocation. A request with
// Wait goes on to the general path unless its tokens are there now.
func (lb *Local) fastKeyed(d *Decision, r *Request, t time.Time) bool {
	l := r.Limit
	if r.N < 1 || r.N > l.Burst || len(r.Key) == 0 || lb.closed.Load() {
		return false
	}
	ns := t.UnixNano()
	s := lb.keys.Lookup(bucketkey.Local(r.Key), ns)
	if s == nil {
		return false
	}
	e := &s.V
	g := e.gen.Load()
	if g&keyedGen == 0 || e.cRate.Load() != math.Float64bits(l.Rate) || e.cPeriod.Load() != int64(l.Period) ||
		e.cBurst.Load() != int64(l.Burst) || e.gen.Load() != g {
		return false
	}
	d.Limit, d.Via = l, ViaLocal
	return lb.allowEntry(d, s, t, ns, r.N, r.Wait > 0)
}

// allowEntry takes n tokens from s's bucket, all or nothing, into d (whose
// Limit is set), and reports true. With onlyNow, a refusal changes
// nothing (x/time/rate's AllowN leaves the bucket as it was, and the
// denial tail is not moved) and allowEntry reports false, d zeroed.
func (lb *Local) allowEntry(d *Decision, s *keymap.Slot[localEntry], t time.Time, ns int64, n int, onlyNow bool) bool {
	e := &s.V
	if e.lim.AllowN(t, n) {
		d.Allowed, d.Taken = true, n
		e.last.Store(ns)
		fillFromTokens(d, e.lim.TokensAt(t), n, false)
		return true
	}
	if onlyNow {
		*d = Decision{}
		return false
	}
	fillFromTokens(d, e.lim.TokensAt(t), n, false)
	lb.refused(d, e, s.Key, ns, n)
	return true
}

// refused moves e's denial tail for a refusal at ns of a request waiting for
// need tokens, whose own wait is in d.RetryAfter, and tells d its turn.
func (lb *Local) refused(d *Decision, e *localEntry, key string, ns int64, need int) {
	e.mu.Lock()
	d.RetryAfter = e.tail.Refuse(ns, d.RetryAfter, need, d.Limit.PerSecond(), d.Limit.Burst, key)
	e.mu.Unlock()
}

// Limit returns the budget's own limit in force now.
func (lb *Local) Limit() Limit {
	l, _ := lb.limit.At(lb.now())
	return Limit(l)
}

// SetLimit moves the budget's own limit to l, ramping over Config.Ramp from
// now. A bucket refills at the limit in force when it is read, counted from
// its last take, exactly as on Redis. Keys whose requests carry a limit
// (Request.Limit) keep theirs.
func (lb *Local) SetLimit(l Limit) error {
	if err := l.Validate(); err != nil {
		return err
	}
	lb.limit.Set(lb.now(), ramp.Limit(l))
	return nil
}

// Close marks the budget closed; later decisions fail with ErrClosed. It
// is idempotent.
func (lb *Local) Close() error {
	lb.closed.Store(true)
	return nil
}

// Stats reports the size of the key map and its evictions.
func (lb *Local) Stats() Stats {
	return Stats{
		Keys:           lb.keys.Len(),
		Capacity:       lb.keys.Capacity(),
		Evictions:      lb.keys.Evictions.Load(),
		LossyEvictions: lb.keys.Lossy.Load(),
	}
}

func errOverBurst(n int, l Limit) error {
	return fmt.Errorf("%w: Request.N = %d exceeds the burst of %d, so it could never be granted", ErrInvalidRequest, n, l.Burst)
}

// take is the general path: it decides r at t into d.
func (lb *Local) take(d *Decision, r *Request, t time.Time) error {
	d.Via = ViaLocal
	keyed := r.Limit != (Limit{})
	if keyed {
		d.Limit = r.Limit
	} else {
		d.Limit = lb.budgetLimit(t)
	}
	if lb.closed.Load() {
		return ErrClosed
	}
	if err := r.Validate(); err != nil {
		return err
	}
	var s *keymap.Slot[localEntry]
	if keyed {
		s = lb.keys.Get(bucketkey.Local(r.Key), t, func(e *localEntry) { e.initKeyed(r.Limit) })
		d.Limit = lb.keyLimit(&s.V, r.Limit, t)
	} else {
		rp := lb.limit.Load()
		s = lb.bucket(r.Key, t, Limit(rp.At(t)), rp.Gen, rp.Active(t))
	}
	if r.N > d.Limit.Burst && !r.UpTo {
		return errOverBurst(r.N, d.Limit)
	}
	return lb.decideSlot(d, s, t, r)
}

// budgetLimit returns the budget's own limit at t.
func (lb *Local) budgetLimit(t time.Time) Limit {
	l, _ := lb.limit.At(t)
	return Limit(l)
}

// decideSlot decides r on s's bucket, which holds d.Limit.
func (lb *Local) decideSlot(d *Decision, s *keymap.Slot[localEntry], t time.Time, r *Request) error {
	e := &s.V
	if r.Wait > 0 {
		lb.reserve(d, e, t, r.N, r.Wait)
		return nil
	}
	decideBucket(d, &e.lim, t, r.N, r.UpTo)
	ns := t.UnixNano()
	if d.Taken > 0 {
		e.last.Store(ns)
	}
	if !d.Allowed {
		need := r.N
		if r.UpTo {
			need = 1
		}
		lb.refused(d, e, s.Key, ns, need)
	}
	return nil
}

// init sets a new entry's bucket to lim of generation gen, full.
func (e *localEntry) init(lim Limit, gen uint64) {
	// The zero time: the first use finds a full bucket.
	e.lim.SetLimitAt(time.Time{}, rate.Limit(lim.PerSecond()))
	e.lim.SetBurstAt(time.Time{}, lim.Burst)
	e.gen.Store(gen)
}

// initKeyed sets a new entry's bucket to the limit l its first request
// carries, full and steady.
func (e *localEntry) initKeyed(l Limit) {
	e.setCarried(l)
	e.seq = 1
	e.init(l, keyedGen|e.seq)
}

// setCarried records l as the limit the key's requests carry.
func (e *localEntry) setCarried(l Limit) {
	e.cRate.Store(math.Float64bits(l.Rate))
	e.cPeriod.Store(int64(l.Period))
	e.cBurst.Store(int64(l.Burst))
}

// carried returns the limit the key's requests carry (zero: none so far).
func (e *localEntry) carried() Limit {
	return Limit{Rate: math.Float64frombits(e.cRate.Load()), Period: time.Duration(e.cPeriod.Load()), Burst: int(e.cBurst.Load())}
}

// apply brings lim to l from the bucket's last write, as the Redis script
// does (it refills since then at the rate it is given), so that Local and
// Redis make the same decisions through a change. (Setting it at t would
// refill the gap at the old rate.) The caller holds e.mu.
func (e *localEntry) apply(l Limit) {
	at := time.Time{}
	if ns := e.last.Load(); ns != 0 {
		at = time.Unix(0, ns)
	}
	e.lim.SetLimitAt(at, rate.Limit(l.PerSecond()))
	e.lim.SetBurstAt(at, l.Burst)
}

// bucket returns key's slot, its bucket brought to the budget's limit lim
// of generation gen (still changing when ramping).
func (lb *Local) bucket(key string, t time.Time, lim Limit, gen uint64, ramping bool) *keymap.Slot[localEntry] {
	s := lb.keys.Get(bucketkey.Local(key), t, func(e *localEntry) { e.init(lim, gen) })
	if e := &s.V; e.gen.Load() != gen || ramping {
		e.mu.Lock()
		e.apply(lim)
		e.gen.Store(gen)
		e.mu.Unlock()
	}
	return s
}

// keyLimit brings e's bucket to the limit l its request carries at t: a
// change starts a ramp (ramp.Change), a ramp under way moves on, and the
// bucket is set to the limit in force, which keyLimit returns.
func (lb *Local) keyLimit(e *localEntry, l Limit, t time.Time) Limit {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.gen.Load()
	c := e.carried()
	if c != l {
		var cur *ramp.Ramp
		switch {
		case e.ramp != nil:
			cur = e.ramp
		case c != (Limit{}):
			cur = &ramp.Ramp{From: ramp.Limit(c), To: ramp.Limit(c)}
		}
		full := e.lim.TokensAt(t) >= float64(e.lim.Burst())
		nr := ramp.Change(cur, ramp.Limit(l), t, lb.window, full)
		e.gen.Store(0) // readers of the carried limit: a change is under way
		g = 0
		e.setCarried(l)
		e.ramp = nil
		if nr.Active(t) {
			e.ramp = &nr
		}
	}
	eff := l
	if e.ramp != nil {
		if e.ramp.Active(t) {
			eff = Limit(e.ramp.At(t))
		} else {
			e.ramp = nil
		}
	}
	if e.ramp != nil || g&keyedGen == 0 {
		e.apply(eff)
		if e.ramp != nil {
			e.gen.Store(0)
		} else {
			e.seq++
			e.gen.Store(keyedGen | e.seq)
		}
	}
	return eff
}

// reserve books n tokens of e's bucket at t if they are available within
// maxWait, into d (whose Limit is set).
func (lb *Local) reserve(d *Decision, e *localEntry, t time.Time, n int, maxWait time.Duration) {
	lim := d.Limit
	// Look before booking rather than book and cancel: a cancellation
	// moves the bucket's last update to t, which a later limit change
	// would then refill from at the wrong rate (see apply).
	tokens := e.lim.TokensAt(t)
	wait := durationFromTokens(float64(n)-tokens, lim.PerSecond())
	if wait > maxWait {
		d.RetryAfter = wait
	} else {
		res := e.lim.ReserveN(t, n)
		d.Allowed, d.Taken, d.RetryAfter = true, n, res.DelayFrom(t)
		e.last.Store(t.UnixNano())
		tokens = e.lim.TokensAt(t)
	}
	d.ResetAfter = durationFromTokens(float64(lim.Burst)-tokens, lim.PerSecond())
	if tokens >= 1 {
		d.Remaining = int(tokens)
	}
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
// the tokens left in the bucket after the decision. A refusal's RetryAfter
// is its own wait for its tokens, before the denial tail (refused).
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
