package fleet

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/bucketlua"
	"github.com/herdcap/herdcap/internal/keymap"
	"github.com/herdcap/herdcap/internal/ramp"
	"github.com/herdcap/herdcap/internal/tail"
	"github.com/herdcap/herdcap/limiter"
)

// Leased is a fleet-wide limiter.Budget whose hot path makes no round trip:
// each node leases tokens from the shared Redis bucket (Strict's bucket and
// script) in batches, spends them in process, and refills a key's lease on
// the clock before it runs dry.
//
// Over any trailing window of length W, N nodes with max lease size L
// (LeasedConfig.MaxLease) admit at most
//
//	Rate·W + Burst + N·L
//
// tokens: every token spent was taken from the shared bucket, and at most
// L per node are held unspent (the package doc derives the bound). With the
// defaults L is a tenth of a second of the limit.
//
// No decision waits longer than one Redis.Timeout in all, whether for a
// refill under way, for its own round trip, or both; then the failure
// policy answers. Decision.Remaining is this node's view (its unspent
// lease plus what the shared bucket held at its last exchange with Redis);
// a peek reads the shared bucket. The limit a key's requests carry, its
// ramp and its denial tail are this node's (see limiter.Decision).
//
// A Leased is safe for concurrent use. Close it when done: it stops the
// refill timers it set on the clock, waits for the refills under way, gives
// every unspent token back and leaves the live-node set; decisions after
// Close fail with limiter.ErrClosed.
type Leased struct {
	s        *shared
	ahead    time.Duration
	maxLease int // 0: derived from the limit at each refill
	keys     *keymap.Map[lease]

	closed    atomic.Bool // set when Close begins; decisions then fail with ErrClosed
	closeOnce sync.Once

	mu         sync.Mutex // guards closing, late, lateTimers and wg.Add against Close
	closing    bool
	late       []giveBackItem  // give-backs that arrived once Close had begun
	lateTimers []limiter.Timer // timers of leases dropped once Close had begun
	wg         sync.WaitGroup
}

// giveBackItem is a lease's unspent tokens, to go back to the bucket at rkey
// at time at (passed to Redis when pass, else Redis TIME), under lim.
type giveBackItem struct {
	rkey   string
	tokens int
	at     time.Time
	pass   bool
	lim    limiter.Limit
}

// lease is one key's tokens on this node. A lease is in one of three
// states: settled, fetching (an exchange with Redis is on the wire; fetched
// is closed when it ends) or scheduled (the bucket was short, and a fetch is
// due at due: made by a timer on the clock, or by the first decision at or
// after due, whichever comes first). All fields are guarded by mu.
//
// A scheduled fetch's timer is stopped whenever its schedule is cancelled
// (the fetch is made by a decision, the lease is dropped, Close), so that
// no timer outlives the schedule it was set for; the timer is stopped with
// no lock held (a clock is user code), by whoever cancelled it.
type lease struct {
	mu      sync.Mutex
	rkey    string // the Redis key (bounded: see bucketkey)
	tokens  int    // leased and unspent
	fetched chan struct{}

	// The node's view of the shared bucket, from its last exchange.
	remote  int           // the bucket's whole tokens left at viewAt
	viewAt  time.Time     // decision time of the latest exchange; zero: none yet
	viewLim limiter.Limit // the limit of that exchange
	pass    bool          // whether that time was passed to Redis
	views   uint64        // exchanges recorded: a wait can tell one answered

	due      time.Time     // scheduled: when the next fetch is due; zero: none
	retryAt  time.Time     // when the bucket will hold one token, as last reported
	timerGen uint64        // identifies the scheduled fetch; a stale timer does nothing
	timer    limiter.Timer // the scheduled fetch's timer, once armed; nil: none

	// A refused all-or-nothing request: a deficit of at least shortNeed
	// cannot be had before shortUntil under shortLim.
	shortNeed  int
	shortUntil time.Time
	shortLim   limiter.Limit

	demand   float64 // tokens asked for per second, smoothed
	asked    int     // tokens asked for since sampleAt
	sampleAt time.Time
	gone     bool // dropped or closed: give back what comes in

	// The limit this key's requests carry (keyed) and its ramp, as this
	// node sees them; and its denial tail on this node.
	keyed bool
	kr    ramp.Ramp
	tail  tail.Tail
}

func (l *lease) fetching() bool  { return l.fetched != nil }
func (l *lease) scheduled() bool { return !l.due.IsZero() }
func (l *lease) settled() bool   { return l.fetched == nil && l.due.IsZero() }

// startFetchLocked marks l fetching.
func (l *lease) startFetchLocked() { l.fetched = make(chan struct{}) }

// endFetchLocked marks the fetch over and wakes its waiters.
func (l *lease) endFetchLocked() {
	close(l.fetched)
	l.fetched = nil
}

// cancelScheduleLocked cancels a scheduled fetch and returns its timer (nil
// if none is armed), which the caller stops once it holds no lock. A timer
// that fires meanwhile finds itself stale and does nothing.
func (l *lease) cancelScheduleLocked() limiter.Timer {
	l.due = time.Time{}
	l.timerGen++
	t := l.timer
	l.timer = nil
	return t
}

// stopTimer stops t, if any. The caller holds no lock: a clock is user
// code.
func stopTimer(t limiter.Timer) {
	if t != nil {
		t.Stop()
	}
}

// noteViewLocked records an exchange at t under lim.
func (l *lease) noteViewLocked(remaining int, t time.Time, pass bool, lim limiter.Limit) {
	l.remote = remaining
	l.views++
	if l.viewAt.IsZero() || t.After(l.viewAt) {
		l.viewAt = t
	}
	l.pass = pass
	l.viewLim = lim
}

// giveBackLocked takes l's unspent tokens out, to give back.
func (l *lease) giveBackLocked() giveBackItem {
	it := giveBackItem{rkey: l.rkey, tokens: l.tokens, at: l.viewAt, pass: l.pass, lim: l.viewLim}
	l.tokens = 0
	return it
}

// NewLeased returns a leasing budget enforcing l per key on Redis. Under
// FailLocal it starts the live-node heartbeat: call Close when done. Bad
// configuration is an error wrapping limiter.ErrInvalidLimit or
// limiter.ErrInvalidConfig that names the field.
func NewLeased(r Redis, l limiter.Limit, cfg LeasedConfig) (*Leased, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	ahead := cfg.LeaseAhead
	switch {
	case ahead == 0:
		ahead = 100 * time.Millisecond
	case ahead < time.Millisecond || ahead > time.Minute:
		return nil, fmt.Errorf("%w: LeasedConfig.LeaseAhead must be between 1ms and 1m, got %v", limiter.ErrInvalidConfig, ahead)
	}
	switch {
	case cfg.MaxLease < 0:
		return nil, fmt.Errorf("%w: LeasedConfig.MaxLease must be >= 0, got %d", limiter.ErrInvalidConfig, cfg.MaxLease)
	case cfg.MaxLease > l.Burst:
		return nil, fmt.Errorf("%w: LeasedConfig.MaxLease %d exceeds the burst %d", limiter.ErrInvalidConfig, cfg.MaxLease, l.Burst)
	}
	s, err := newShared(r, l, cfg.Config, "LeasedConfig")
	if err != nil {
		return nil, err
	}
	maxKeys := cfg.MaxKeys
	if maxKeys == 0 {
		maxKeys = keymap.DefaultMax
	}
	b := &Leased{s: s, ahead: ahead, maxLease: cfg.MaxLease}
	b.keys = keymap.New(maxKeys, leaseIdle, b.dropLease)
	return b, nil
}

// leaseIdle reports whether dropping l loses nothing: it holds no tokens,
// nothing is under way or scheduled, and neither a ramp nor a denial tail
// runs.
func leaseIdle(l *lease, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tokens == 0 && l.fetched == nil && l.due.IsZero() && l.tail.Idle(t.UnixNano()) && !(l.keyed && l.kr.Active(t))
}

// dropLease is called when l leaves the key map, under the map's shard lock:
// so it only takes l's tokens and its scheduled fetch's timer, and hands
// them to a goroutine to give back and stop (or, once Close has begun, to
// Close).
func (b *Leased) dropLease(l *lease) {
	l.mu.Lock()
	l.gone = true
	it := l.giveBackLocked()
	stale := l.cancelScheduleLocked()
	l.mu.Unlock()
	if it.tokens <= 0 && stale == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		if it.tokens > 0 {
			b.late = append(b.late, it)
		}
		if stale != nil {
			b.lateTimers = append(b.lateTimers, stale)
		}
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		stopTimer(stale)
		b.giveBack(it)
	}()
}

// AllowN takes n tokens for key if all n are available: Take of
// limiter.Request{Key: key, N: n}.
func (b *Leased) AllowN(ctx context.Context, key string, n int) (limiter.Decision, error) {
	r := limiter.Request{Key: key, N: n}
	d, err := b.decide(ctx, &r)
	b.s.observed(d, err, n)
	return d, err
}

// Take decides r, from the lease when it can. See limiter.Budget and
// limiter.Request; a reservation (Request.Wait) goes to the shared bucket
// in one round trip, so that every node queues behind the same debt.
func (b *Leased) Take(ctx context.Context, r limiter.Request) (limiter.Decision, error) {
	d, err := b.decide(ctx, &r)
	b.s.observed(d, err, r.N)
	return d, err
}

// Limit returns the budget's own limit in force now.
func (b *Leased) Limit() limiter.Limit {
	l, _ := b.s.own(b.s.clock.Now())
	return l
}

// SetLimit moves this node's own limit to l, ramping over Config.Ramp from
// now. The limit travels with each call to Redis, so nodes that should
// agree must be set alike.
func (b *Leased) SetLimit(l limiter.Limit) error { return b.s.setLimit(l) }

// LiveNodes returns the number of nodes last seen in the heartbeat set.
func (b *Leased) LiveNodes() int { return int(b.s.link.Live()) }

// Close stops background refills, gives every unspent token back to its
// bucket, and leaves the live-node set. Decisions made once Close has begun
// fail with limiter.ErrClosed. Close is idempotent and safe to call
// concurrently; every call returns once the first has finished.
func (b *Leased) Close() error {
	b.closeOnce.Do(b.close)
	return nil
}

func (b *Leased) close() {
	b.closed.Store(true)
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	var (
		back   []giveBackItem
		timers []limiter.Timer
	)
	b.keys.Each(func(s *keymap.Slot[lease]) {
		l := &s.V
		l.mu.Lock()
		l.gone = true
		if t := l.cancelScheduleLocked(); t != nil {
			timers = append(timers, t)
		}
		if l.tokens > 0 {
			back = append(back, l.giveBackLocked())
		}
		l.mu.Unlock()
	})
	// Stopped with no lock held; a timer armed from now on finds its lease
	// gone and stops itself (see arm).
	for _, t := range timers {
		t.Stop()
	}
	b.wg.Wait() // refills under way give their tokens back themselves
	b.mu.Lock()
	back = append(back, b.late...)
	timers = b.lateTimers
	b.late, b.lateTimers = nil, nil
	b.mu.Unlock()
	for _, t := range timers {
		t.Stop()
	}
	for _, it := range back {
		b.giveBack(it)
	}
	b.s.close()
}

// track counts a background task in wg and reports true, unless Close has
// begun: then it reports false and the task must not run.
func (b *Leased) track() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.wg.Add(1)
	return true
}

// goBackground runs f on a tracked goroutine and reports true, unless Close
// has begun: then it reports false and does nothing.
func (b *Leased) goBackground(f func()) bool {
	if !b.track() {
		return false
	}
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

func (b *Leased) decide(ctx context.Context, r *limiter.Request) (limiter.Decision, error) {
	t := b.s.clock.Now()
	keyed := r.Limit != (limiter.Limit{})
	lim := r.Limit
	if !keyed {
		lim, _ = b.s.own(t)
	}
	if b.closed.Load() {
		return limiter.Decision{Limit: lim, Via: limiter.ViaLease}, limiter.ErrClosed
	}
	if err := r.Validate(); err != nil {
		return limiter.Decision{Limit: lim, Via: limiter.ViaLease}, err
	}
	if r.N > lim.Burst && !r.UpTo {
		return limiter.Decision{Limit: lim, Via: limiter.ViaLease}, errOverBurst(r.N, lim)
	}
	c := call{ctx: ctx, key: r.Key, t: t, pass: b.s.injected, n: r.N, upTo: r.UpTo, lim: lim, timeout: b.s.link.Timeout}
	if r.Wait > 0 && !keyed {
		return b.reserve(&c, r)
	}
	d, err := b.decideKey(&c, r, keyed)
	stopTimer(c.stale)
	return d, err
}

// decideKey decides c (for r) on its key's lease. A scheduled fetch it
// cancels leaves its timer in c.stale, for decide to stop.
func (b *Leased) decideKey(c *call, r *limiter.Request, keyed bool) (limiter.Decision, error) {
	t := c.t
	s := b.keys.Get(bucketkey.Local(r.Key), t, func(l *lease) {
		l.rkey = b.s.redisKey(r.Key)
		l.sampleAt = t
	})
	l := &s.V
	c.lkey = s.Key
	l.mu.Lock()
	if keyed {
		c.lim = b.keyLimitLocked(l, r.Limit, t)
	}
	if r.Wait > 0 {
		l.mu.Unlock()
		return b.reserve(c, r)
	}
	n, upTo := r.N, r.UpTo
	l.asked += n
	waited := false // a fetch this decision waited for was answered by Redis
	for {
		if n > 0 && l.tokens >= n {
			// The hot path: spend from the lease.
			return b.spendLocked(l, c, n, limiter.ViaLease), nil
		}
		if l.fetching() {
			if waited && (n == 0 || l.remote < c.lacking(l.tokens)) {
				// The fetch this decision waited for has ended, found the
				// bucket short of what the decision lacks, and its tokens
				// went to other requests; another fetch is under way
				// already. Answer from what the lease knows rather than
				// wait again: under saturation each fetch's end starts the
				// next, and waits for one after another would add up to
				// the time limit, so the failure policy would answer
				// although Redis answers every call.
				return b.afterWaitLocked(l, c), nil
			}
			// Tokens are on their way: wait for them, within the time
			// limit, rather than refuse a request the bucket can serve.
			views := l.views
			ended, err := b.awaitLocked(l, c)
			if err != nil {
				return b.fail(c, err)
			}
			// Only an answered fetch counts: one that failed brought no
			// view, and the next wait (or the failure policy, once the
			// time limit is spent) decides.
			waited = ended && l.views != views
			continue
		}
		if l.scheduled() && !t.Before(l.due) {
			// The scheduled fetch is due (its timer starved of CPU, or
			// time is virtual): make it now rather than refuse meanwhile.
			c.stale = l.cancelScheduleLocked()
		}
		if l.gone {
			l.mu.Unlock()
			return b.direct(c)
		}
		open := b.s.link.Guard().Open()
		if n == 0 {
			if !l.viewAt.IsZero() && !t.After(l.viewAt) {
				d := limiter.Decision{Allowed: true, Limit: c.lim, Via: limiter.ViaLease}
				fillDecision(&d, l.tokens+l.remote, c.lim)
				l.mu.Unlock()
				return d, nil
			}
			if open {
				l.mu.Unlock()
				return b.fail(c, gobreaker.ErrOpenState)
			}
			if err := b.exchangeLocked(l, c, 0, 0); err != nil {
				return b.fail(c, err)
			}
			d := limiter.Decision{Allowed: true, Limit: c.lim, Via: limiter.ViaRedis}
			fillDecision(&d, l.tokens+l.remote, c.lim)
			l.mu.Unlock()
			return d, nil
		}
		if upTo && l.tokens > 0 && (open || l.scheduled()) {
			// The bucket is known to be empty, or out of reach: what the
			// lease holds is what there is.
			return b.spendLocked(l, c, l.tokens, limiter.ViaLease), nil
		}
		switch {
		case open:
			l.mu.Unlock()
			return b.fail(c, gobreaker.ErrOpenState)
		case l.scheduled():
			// The bucket is short; a fetch is due when tokens accrue.
			d := limiter.Decision{RetryAfter: b.retryLocked(l, c), Limit: c.lim, Via: limiter.ViaLease}
			fillDecision(&d, l.tokens+l.remote, c.lim)
			b.refusedLocked(l, c, &d)
			l.mu.Unlock()
			return d, nil
		case !upTo && l.shortNeed > 0 && n-l.tokens >= l.shortNeed && t.Before(l.shortUntil) && c.lim == l.shortLim:
			// A refusal Redis gave already: it holds until shortUntil.
			wait := l.shortUntil.Sub(t) + durationFromTokens(float64(n-l.tokens-l.shortNeed), c.lim.PerSecond())
			d := limiter.Decision{RetryAfter: wait, Limit: c.lim, Via: limiter.ViaLease}
			fillDecision(&d, l.tokens+l.remote, c.lim)
			b.refusedLocked(l, c, &d)
			l.mu.Unlock()
			return d, nil
		}
		return b.acquireLocked(l, c)
	}
}

// keyLimitLocked brings l to the limit lim its request carries at t
// (ramp.Change, judging the bucket full by this node's view) and returns
// the limit in force.
func (b *Leased) keyLimitLocked(l *lease, lim limiter.Limit, t time.Time) limiter.Limit {
	if !l.keyed || l.kr.To != ramp.Limit(lim) {
		var cur *ramp.Ramp
		full := true
		if l.keyed {
			old := l.kr
			cur = &old
			prev := old.At(t)
			if !l.viewAt.IsZero() {
				held := float64(l.tokens+l.remote) + max(t.Sub(l.viewAt), 0).Seconds()*prev.PerSecond()
				full = held >= float64(prev.Burst)
			}
		}
		l.kr, l.keyed = ramp.Change(cur, ramp.Limit(lim), t, b.s.window, full), true
	}
	return limiter.Limit(l.kr.At(t))
}

// limitLocked returns the limit in force for l at t: the one its requests
// carry, or the budget's own.
func (b *Leased) limitLocked(l *lease, t time.Time) limiter.Limit {
	if l.keyed {
		return limiter.Limit(l.kr.At(t))
	}
	lim, _ := b.s.own(t)
	return lim
}

// refusedLocked moves l's denial tail for the refusal d of c, whose own
// wait is in d.RetryAfter, and tells d its turn.
func (b *Leased) refusedLocked(l *lease, c *call, d *limiter.Decision) {
	need := c.n
	if c.upTo {
		need = 1
	}
	d.RetryAfter = l.tail.Refuse(c.t.UnixNano(), d.RetryAfter, need, c.lim.PerSecond(), c.lim.Burst, c.lkey)
}

// call is one decision's arguments, passed down the slow path.
type call struct {
	ctx      context.Context
	key      string
	lkey     string // key in its bucketkey.Local form
	t        time.Time
	pass     bool
	n        int
	upTo     bool
	lim      limiter.Limit
	timeout  time.Duration // the time limit of the whole decision
	deadline time.Time     // its end, set when the decision first waits
	stale    limiter.Timer // the timer of a scheduled fetch the decision cancelled, to stop
}

// timeLeft returns what is left of c's time limit, starting it at the
// first call: every wait of one decision draws on the same limit. It runs
// on the real clock, as Redis.Timeout does.
func (c *call) timeLeft() time.Duration {
	if c.deadline.IsZero() {
		c.deadline = time.Now().Add(c.timeout)
	}
	return time.Until(c.deadline)
}

// spendLocked takes k tokens from l for c, starts a background refill when
// the lease has fallen to half its target, and unlocks l.
func (b *Leased) spendLocked(l *lease, c *call, k int, via limiter.Via) limiter.Decision {
	l.tokens -= k
	d := limiter.Decision{Allowed: true, Taken: k, Limit: c.lim, Via: via}
	refill := false
	var stale limiter.Timer
	if l.fetched == nil && !l.gone && l.tokens <= b.target(l, c.lim, c.t)/2 {
		switch {
		case l.due.IsZero():
			refill = true
		case !c.t.Before(l.due):
			// Due, and its timer has not run yet: refill now, in the
			// background.
			stale = l.cancelScheduleLocked()
			refill = true
		}
	}
	if refill {
		l.startFetchLocked()
	}
	fillDecision(&d, l.tokens+l.remote, c.lim)
	l.mu.Unlock()
	stopTimer(stale)
	if refill {
		t, pass := c.t, c.pass
		if !b.goBackground(func() { b.fetch(l, t, pass) }) {
			// Closing: no refill after all.
			l.mu.Lock()
			l.endFetchLocked()
			l.mu.Unlock()
		}
	}
	return d
}

// awaitLocked waits, with l unlocked, for l's fetch under way to end, within
// what is left of c's time limit. It returns with l locked, reporting
// whether the fetch ended (rather than the time limit), or with l unlocked
// and an error: the caller's cancellation, or context.DeadlineExceeded once
// the time limit is spent (Redis did not answer in time).
func (b *Leased) awaitLocked(l *lease, c *call) (bool, error) {
	wait := c.timeLeft()
	if wait <= 0 {
		l.mu.Unlock()
		return false, context.DeadlineExceeded
	}
	ch := l.fetched
	l.mu.Unlock()
	tm := time.NewTimer(wait) // the real clock: see call.timeLeft
	defer tm.Stop()
	ended := false
	select {
	case <-ch:
		ended = true
	case <-tm.C:
	case <-c.ctx.Done():
		return false, c.ctx.Err()
	}
	l.mu.Lock()
	return ended, nil
}

// lacking returns how many tokens c needs beyond the lease's held: what
// an all-or-nothing request lacks, or one for UpTo.
func (c *call) lacking(held int) int {
	if c.upTo {
		return 1
	}
	return c.n - held
}

// afterWaitLocked answers c, which waited for a fetch that Redis answered,
// from the lease alone, while another fetch is under way: a peek reads this
// node's view (just refreshed), UpTo spends what the lease holds, and a
// request the lease cannot serve is refused, with RetryAfter from the
// view: when the bucket will have refilled what it lacked for c (the tokens
// c waited for went to other requests on this node). It unlocks l.
func (b *Leased) afterWaitLocked(l *lease, c *call) limiter.Decision {
	if c.n > 0 && c.upTo && l.tokens > 0 {
		return b.spendLocked(l, c, min(l.tokens, c.n), limiter.ViaLease)
	}
	d := limiter.Decision{Allowed: c.n == 0, Limit: c.lim, Via: limiter.ViaLease}
	if c.n > 0 {
		// When the bucket, as that answer saw it, will hold what c lacks
		// (at its refill rate; other nodes may take too), and not before
		// this node's next fetch is due.
		deficit := c.lacking(l.tokens) - l.remote
		wait := l.viewAt.Sub(c.t) + durationFromTokens(float64(deficit), c.lim.PerSecond())
		if l.scheduled() {
			wait = max(wait, l.due.Sub(c.t))
		}
		d.RetryAfter = max(wait, time.Microsecond)
	}
	fillDecision(&d, l.tokens+l.remote, c.lim)
	if c.n > 0 {
		b.refusedLocked(l, c, &d)
	}
	l.mu.Unlock()
	return d
}

// fail answers c after err: the failure policy for a store failure, or the
// error itself.
func (b *Leased) fail(c *call, err error) (limiter.Decision, error) {
	r := limiter.Request{Key: c.key, N: c.n, UpTo: c.upTo}
	return b.s.failed(c.ctx, err, &r, c.lim, c.t)
}

// direct decides c on the shared bucket alone, as Strict does (without a
// denial tail): for a key whose lease was dropped while the decision was
// under way.
func (b *Leased) direct(c *call) (limiter.Decision, error) {
	if b.closed.Load() {
		return limiter.Decision{Limit: c.lim, Via: limiter.ViaLease}, limiter.ErrClosed
	}
	mode := 0
	if c.upTo {
		mode = 1
	}
	rep, err := b.exchange(c, b.s.redisKey(c.key), c.n, mode)
	if err != nil {
		return b.fail(c, err)
	}
	return rep, nil
}

// reserve books c's tokens on the shared bucket, in one round trip of its
// own, within r.Wait.
func (b *Leased) reserve(c *call, r *limiter.Request) (limiter.Decision, error) {
	v, err := b.s.link.Eval(c.ctx, bucketScript, []string{b.s.redisKey(c.key)},
		c.lim.PerSecond()/1e6, c.lim.Burst, c.n, 3, bucketlua.NowArg(c.t, c.pass), r.Wait.Microseconds(), "", "")
	if err != nil {
		return b.s.failed(c.ctx, err, r, c.lim, c.t)
	}
	b.s.answered()
	return parseBucketReply(v, c.lim, limiter.ViaRedis)
}

func fillDecision(d *limiter.Decision, remaining int, lim limiter.Limit) {
	remaining = min(remaining, lim.Burst)
	d.Remaining = remaining
	d.ResetAfter = durationFromTokens(float64(lim.Burst-remaining), lim.PerSecond())
}

// durationFromTokens returns how long it takes to add tokens at perSec
// tokens per second, rounded up to the nanosecond.
func durationFromTokens(tokens, perSec float64) time.Duration { return ramp.Duration(tokens, perSec) }

// maxLeaseFor returns the max lease size L under lim.
func (b *Leased) maxLeaseFor(lim limiter.Limit) int {
	if b.maxLease > 0 {
		return min(b.maxLease, lim.Burst)
	}
	return max(1, min(lim.Burst, int(math.Ceil(lim.PerSecond()*b.ahead.Seconds()))))
}

var _ limiter.Budget = (*Leased)(nil)
