package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/herdcap/herdcap/internal/bucketkey"
)

// Leased is a fleet-wide Budget whose hot path makes no round trip: each node
// leases tokens from the shared Redis bucket (the same bucket and script as
// Redis) in batches, spends them in process, and refills a key's lease in
// the background before it runs dry.
//
// The lease of a key is sized from the demand this node observes for it:
// about WithLease's lead time worth of demand (default 100 ms), at least one
// token, and at most the max lease size L (by default the limit's tokens per
// lead time, capped at the burst). A request the lease cannot serve, while
// no refill is under way, makes one round trip: it takes what it lacks from
// the bucket (with a top-up of the lease, if it asked for no more than the
// lease's size), and a request for more than that takes the difference all
// at once or not at all, so a refused request never grows a lease. While a
// refill is under way, a request the lease cannot serve waits for it. When a
// refill comes back short (the bucket is empty), the next one is due when
// about half a lease has accrued, or one token, at most the lead time later;
// until then this node refuses what its lease cannot serve, without a round
// trip, and remembers a refused large request the same way.
//
// A request waits again for a refill only while the bucket is known to hold
// what it lacks: if the refill it waited for was answered, left the bucket
// short of what the request lacks (its tokens went to other requests), and
// another refill is under way when it ends, the request is refused, with a
// RetryAfter from that answer, rather than wait again (a peek answers from
// the view that refill brought). A refill that failed does not count: the
// request waits for the next one, within its time budget, or the failure
// policy answers. So a decision does not spend its time budget queueing
// behind one refill after another while Redis answers each.
//
// # Overshoot bound
//
// Every token a node spends was taken from the shared bucket, so over any
// period the fleet admits no more than the bucket grants. Tokens may be spent
// a little after they were granted, so over any trailing window of length W
//
//	admitted(W) <= Rate·W + Burst + N·L
//
// for N nodes with max lease size L: a lease never holds more than L unspent
// tokens (a request for more than the lease holds takes the difference and
// spends it at once), so at most L tokens per node are held unspent at the
// start of any window. With the defaults L is a tenth of a second of the
// limit, so four nodes overshoot by at most 0.4 s worth of tokens in any
// window, and not at all over the long run.
//
// # Time budget
//
// Failure handling is that of Redis: the breaker, the time budget and the
// failure policy. No decision waits longer than one time budget
// (WithTimeout) in all, whether it waits for a refill under way, for its own
// round trip, or both: once the budget is spent, the failure policy answers.
// While Redis cannot be reached a node spends its lease first, then answers
// from the failure policy.
//
// # Decisions
//
// Leased passes the conformance suite that Local and Redis pass, with one
// stated difference: Remaining is this node's view, its unspent lease plus
// what the shared bucket held at this node's last exchange with Redis, so a
// decision served from the lease does not count refill since then (nor other
// nodes' takes). A peek (n = 0) reads the shared bucket, without taking
// anything, unless this node exchanged with it at the peek's time already,
// or the peek waited for an exchange under way: then it answers from that
// exchange's view.
// TakeUpTo takes up to n from the lease when the bucket is known to be empty
// (or Redis unreachable), and otherwise tops the lease up first.
//
// With an injected clock or explicit times (AllowNAt), the Leased runs no
// timers: a fetch that is due is made by the first decision at or after its
// due time, on that decision's timeline. Refills run at the time of the
// decision that started them. A Leased is safe for concurrent use; Close it
// to return its leases and stop its background work.
type Leased struct {
	r        *remote
	limit    limitState
	clock    Clock
	injected bool
	ahead    time.Duration
	maxLease int // 0: derived from the limit at each refill
	keys     *keyMap[lease]

	closed    atomic.Bool // set when Close begins; decisions then fail with ErrClosed
	closeOnce sync.Once

	mu      sync.Mutex // guards closing, late and wg.Add against Close
	closing bool
	late    []giveBackItem // give-backs that arrived once Close had begun
	wg      sync.WaitGroup
}

// giveBackItem is a lease's unspent tokens, to go back to the bucket at rkey
// at time at (passed to Redis when pass, else Redis TIME).
type giveBackItem struct {
	rkey   string
	tokens int
	at     time.Time
	pass   bool
}

// lease is one key's tokens on this node. A lease is in one of three
// states: settled, fetching (an exchange with Redis is on the wire; fetched
// is closed when it ends) or scheduled (the bucket was short, and a fetch is
// due at due: made by timer, or with virtual time by the first decision at
// or after due). All fields are guarded by mu.
type lease struct {
	mu      sync.Mutex
	rkey    string // the Redis key (bounded: see bucketkey)
	tokens  int    // leased and unspent
	fetched chan struct{}

	// The node's view of the shared bucket, from its last exchange.
	remote int       // the bucket's whole tokens left at viewAt
	viewAt time.Time // decision time of the latest exchange; zero: none yet
	pass   bool      // whether that time was passed to Redis
	views  uint64    // exchanges recorded: a wait can tell one answered

	due      time.Time   // scheduled: when the next fetch is due; zero: none
	retryAt  time.Time   // when the bucket will hold one token, as last reported
	timer    *time.Timer // the scheduled fetch, with real time only
	timerGen uint64      // identifies the scheduled fetch; a stale timer does nothing

	// A refused all-or-nothing request: a deficit of at least shortNeed
	// cannot be had before shortUntil under shortLim.
	shortNeed  int
	shortUntil time.Time
	shortLim   Limit

	demand   float64 // tokens asked for per second, smoothed
	asked    int     // tokens asked for since sampleAt
	sampleAt time.Time
	gone     bool // dropped or closed: give back what comes in
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

// cancelScheduleLocked cancels a scheduled fetch, and reports whether its
// timer's callback will never run (so its WaitGroup count is the caller's
// to release). A callback already under way finds itself stale and does
// nothing.
func (l *lease) cancelScheduleLocked() bool {
	l.due = time.Time{}
	l.timerGen++
	if l.timer == nil {
		return false
	}
	stopped := l.timer.Stop()
	l.timer = nil
	return stopped
}

// noteViewLocked records an exchange at t.
func (l *lease) noteViewLocked(remaining int, t time.Time, pass bool) {
	l.remote = remaining
	l.views++
	if l.viewAt.IsZero() || t.After(l.viewAt) {
		l.viewAt = t
	}
	l.pass = pass
}

// WithLease tunes the Leased backend: a lease holds about ahead worth of
// observed demand (default 100 ms), and never more than maxSize tokens
// (0, the default, means the limit's tokens per ahead, capped at the burst).
// maxSize is the L of the overshoot bound.
func WithLease(ahead time.Duration, maxSize int) Option {
	return Option{name: "WithLease", scope: kindLeased, apply: func(o *options) error {
		if ahead < time.Millisecond || ahead > time.Minute {
			return fmt.Errorf("ahead must be between 1ms and 1m, got %v", ahead)
		}
		if maxSize < 0 {
			return fmt.Errorf("maxSize must be >= 0, got %d", maxSize)
		}
		o.leaseAhead, o.leaseMax = ahead, maxSize
		return nil
	}}
}

// NewLeased returns a leasing budget enforcing l per key on Redis. It starts
// the live-node heartbeat (see FailLocal); call Close when done.
func NewLeased(c redis.UniversalClient, l Limit, opts ...Option) (*Leased, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	r, err := newRemote(c, kindLeased, opts)
	if err != nil {
		return nil, err
	}
	if r.o.leaseMax > l.Burst {
		return nil, fmt.Errorf("%w: WithLease: maxSize %d exceeds the burst %d", ErrInvalidOption, r.o.leaseMax, l.Burst)
	}
	b := &Leased{r: r, clock: r.o.clock, injected: r.o.clockSet, ahead: r.o.leaseAhead, maxLease: r.o.leaseMax}
	b.limit.init(l, r.o.ramp)
	b.keys = newKeyMap(r.o.maxKeys, leaseIdle, b.dropLease)
	if r.o.failure == FailLocal {
		r.startHeartbeat()
	}
	return b, nil
}

// leaseIdle reports whether dropping l loses nothing: it holds no tokens and
// nothing is under way.
func leaseIdle(l *lease, _ time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tokens == 0 && l.fetched == nil && l.timer == nil
}

// dropLease is called when l leaves the key map, under the map's shard lock:
// so it only takes l's tokens, and hands them to a goroutine to give back
// (or, once Close has begun, to Close).
func (b *Leased) dropLease(l *lease) {
	l.mu.Lock()
	l.gone = true
	it := giveBackItem{rkey: l.rkey, tokens: l.tokens, at: l.viewAt, pass: l.pass}
	l.tokens = 0
	stopped := l.cancelScheduleLocked()
	l.mu.Unlock()
	if stopped {
		b.wg.Done() // the scheduled refill will not run
	}
	if it.tokens <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		b.late = append(b.late, it)
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.giveBack(it)
	}()
}

// AllowN takes n tokens for key if all n are available. See Budget.
func (b *Leased) AllowN(ctx context.Context, key string, n int) (Decision, error) {
	return b.decide(ctx, key, b.clock.Now(), b.injected, n, false)
}

// AllowNAt is AllowN at time t.
func (b *Leased) AllowNAt(ctx context.Context, key string, t time.Time, n int) (Decision, error) {
	return b.decide(ctx, key, t, true, n, false)
}

// TakeUpTo takes as many of n tokens as are available, at least one.
func (b *Leased) TakeUpTo(ctx context.Context, key string, n int) (Decision, error) {
	return b.decide(ctx, key, b.clock.Now(), b.injected, n, true)
}

// TakeUpToAt is TakeUpTo at time t.
func (b *Leased) TakeUpToAt(ctx context.Context, key string, t time.Time, n int) (Decision, error) {
	return b.decide(ctx, key, t, true, n, true)
}

// Limit returns the limit in force now.
func (b *Leased) Limit() Limit {
	l, _ := b.limit.at(b.clock.Now())
	return l
}

// SetLimit ramps this node's limit to l over the WithRamp window. The limit
// travels with each call to Redis, so nodes that should agree must be set
// alike.
func (b *Leased) SetLimit(l Limit) error { return b.SetLimitAt(b.clock.Now(), l) }

// SetLimitAt is SetLimit with the ramp starting at t.
func (b *Leased) SetLimitAt(t time.Time, l Limit) error { return b.limit.set(t, l) }

// LiveNodes returns the number of nodes last seen in the heartbeat set.
func (b *Leased) LiveNodes() int { return int(b.r.live.Load()) }

// Close stops background refills, gives every unspent token back to its
// bucket, and leaves the live-node set. Decisions made once Close has begun
// fail with ErrClosed. Close is idempotent and safe to call concurrently;
// every call returns once the first has finished.
func (b *Leased) Close() error {
	b.closeOnce.Do(b.close)
	return nil
}

func (b *Leased) close() {
	b.closed.Store(true)
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	var back []giveBackItem
	b.keys.each(func(s *slot[lease]) {
		l := &s.v
		l.mu.Lock()
		l.gone = true
		if l.cancelScheduleLocked() {
			b.wg.Done()
		}
		if n := l.tokens; n > 0 {
			l.tokens = 0
			back = append(back, giveBackItem{rkey: l.rkey, tokens: n, at: l.viewAt, pass: l.pass})
		}
		l.mu.Unlock()
	})
	b.wg.Wait() // refills under way give their tokens back themselves
	b.mu.Lock()
	back = append(back, b.late...)
	b.late = nil
	b.mu.Unlock()
	for _, it := range back {
		b.giveBack(it)
	}
	b.r.close()
}

// goBackground runs f on a tracked goroutine and reports true, unless Close
// has begun: then it reports false and does nothing.
func (b *Leased) goBackground(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

func (b *Leased) decide(ctx context.Context, key string, t time.Time, passTime bool, n int, upTo bool) (Decision, error) {
	if b.closed.Load() {
		return Decision{Source: SourceLease}, ErrClosed
	}
	if err := checkArgs(key, n); err != nil {
		return Decision{Source: SourceLease}, err
	}
	lim, rp := b.limit.at(t)
	if n > lim.Burst && !upTo {
		return Decision{Limit: lim, Source: SourceLease}, errOverBurst(n, lim)
	}
	s := b.keys.get(bucketkey.Local(key), t, func(l *lease) {
		l.rkey = bucketkey.Redis(b.r.o.prefix, b.r.o.name, key)
		l.sampleAt = t
	})
	l := &s.v
	c := call{ctx: ctx, key: key, t: t, pass: passTime, n: n, upTo: upTo, lim: lim, rp: rp, timeout: b.r.o.timeout}
	l.mu.Lock()
	l.asked += n
	waited := false // a fetch this decision waited for was answered by Redis
	for {
		if n > 0 && l.tokens >= n {
			// The hot path: spend from the lease.
			return b.spendLocked(l, &c, n, SourceLease), nil
		}
		if l.fetching() {
			if waited && (n == 0 || l.remote < c.lacking(l.tokens)) {
				// The fetch this decision waited for has ended, found the
				// bucket short of what the decision lacks, and its tokens
				// went to other requests; another fetch is under way
				// already. Answer from what the lease knows rather than
				// wait again: under saturation each fetch's end starts the
				// next, and waits for one after another would add up to
				// the time budget, so the failure policy would answer
				// although Redis answers every call.
				return b.afterWaitLocked(l, &c), nil
			}
			// Tokens are on their way: wait for them, within the time
			// budget, rather than refuse a request the bucket can serve.
			views := l.views
			ended, err := b.awaitLocked(l, &c)
			if err != nil {
				return b.fail(&c, err)
			}
			// Only an answered fetch counts: one that failed brought no
			// view, and the next wait (or the failure policy, once the
			// budget is spent) decides.
			waited = ended && l.views != views
			continue
		}
		if !l.due.IsZero() && !t.Before(l.due) && l.cancelScheduleLocked() {
			// The scheduled fetch is due (with virtual time, or its timer
			// starved of CPU): make it now rather than refuse meanwhile.
			b.wg.Done()
		}
		if l.gone {
			l.mu.Unlock()
			return b.direct(&c)
		}
		open := b.r.guard.Open()
		if n == 0 {
			if !l.viewAt.IsZero() && !t.After(l.viewAt) {
				d := Decision{Allowed: true, Limit: lim, Source: SourceLease}
				fillDecision(&d, l.tokens+l.remote, lim)
				l.mu.Unlock()
				return d, nil
			}
			if open {
				l.mu.Unlock()
				return b.fail(&c, gobreaker.ErrOpenState)
			}
			if err := b.exchangeLocked(l, &c, 0, 0); err != nil {
				return b.fail(&c, err)
			}
			d := Decision{Allowed: true, Limit: lim, Source: SourceRedis}
			fillDecision(&d, l.tokens+l.remote, lim)
			l.mu.Unlock()
			return d, nil
		}
		if upTo && l.tokens > 0 && (open || l.scheduled()) {
			// The bucket is known to be empty, or out of reach: what the
			// lease holds is what there is.
			return b.spendLocked(l, &c, l.tokens, SourceLease), nil
		}
		switch {
		case open:
			l.mu.Unlock()
			return b.fail(&c, gobreaker.ErrOpenState)
		case l.scheduled():
			// The bucket is short; a fetch is due when tokens accrue.
			d := Decision{RetryAfter: b.retryLocked(l, &c), Limit: lim, Source: SourceLease}
			fillDecision(&d, l.tokens+l.remote, lim)
			l.mu.Unlock()
			return d, nil
		case !upTo && l.shortNeed > 0 && n-l.tokens >= l.shortNeed && t.Before(l.shortUntil) && lim == l.shortLim:
			// A refusal Redis gave already: it holds until shortUntil.
			wait := l.shortUntil.Sub(t) + durationFromTokens(float64(n-l.tokens-l.shortNeed), lim.PerSecond())
			d := Decision{RetryAfter: wait, Limit: lim, Source: SourceLease}
			fillDecision(&d, l.tokens+l.remote, lim)
			l.mu.Unlock()
			return d, nil
		}
		return b.acquireLocked(l, &c)
	}
}

// call is one decision's arguments, passed down the slow path.
type call struct {
	ctx      context.Context
	key      string
	t        time.Time
	pass     bool
	n        int
	upTo     bool
	lim      Limit
	rp       *ramp
	timeout  time.Duration // the time budget of the whole decision
	deadline time.Time     // its end, set when the decision first waits
}

// budget returns what is left of c's time budget, starting it at the first
// call: every wait of one decision draws on the same budget.
func (c *call) budget() time.Duration {
	if c.deadline.IsZero() {
		c.deadline = time.Now().Add(c.timeout)
	}
	return time.Until(c.deadline)
}

// spendLocked takes k tokens from l for c, starts a background refill when
// the lease has fallen to half its target, and unlocks l.
func (b *Leased) spendLocked(l *lease, c *call, k int, src Source) Decision {
	l.tokens -= k
	d := Decision{Allowed: true, Taken: k, Limit: c.lim, Source: src}
	refill := false
	if l.fetched == nil && !l.gone && l.tokens <= b.target(l, c.lim, c.t)/2 {
		switch {
		case l.due.IsZero():
			refill = true
		case l.timer == nil && !c.t.Before(l.due):
			// Due, with virtual time: refill now, in the background.
			l.cancelScheduleLocked()
			refill = true
		}
	}
	if refill {
		l.startFetchLocked()
	}
	fillDecision(&d, l.tokens+l.remote, c.lim)
	l.mu.Unlock()
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
// what is left of c's time budget. It returns with l locked, reporting
// whether the fetch ended (rather than the budget), or with l unlocked and
// an error: the caller's cancellation, or context.DeadlineExceeded once the
// budget is spent (Redis did not answer in time).
func (b *Leased) awaitLocked(l *lease, c *call) (bool, error) {
	wait := c.budget()
	if wait <= 0 {
		l.mu.Unlock()
		return false, context.DeadlineExceeded
	}
	ch := l.fetched
	l.mu.Unlock()
	tm := time.NewTimer(wait)
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
// AllowN lacks, or one for TakeUpTo.
func (c *call) lacking(held int) int {
	if c.upTo {
		return 1
	}
	return c.n - held
}

// afterWaitLocked answers c, which waited for a fetch that Redis answered,
// from the lease alone, while another fetch is under way: a peek reads this
// node's view (just refreshed), TakeUpTo spends what the lease holds, and
// a request the lease cannot serve is refused, with RetryAfter from the
// view: when the bucket will have refilled what it lacked for c (the
// tokens c waited for went to other requests on this node). It unlocks l.
func (b *Leased) afterWaitLocked(l *lease, c *call) Decision {
	if c.n > 0 && c.upTo && l.tokens > 0 {
		return b.spendLocked(l, c, min(l.tokens, c.n), SourceLease)
	}
	d := Decision{Allowed: c.n == 0, Limit: c.lim, Source: SourceLease}
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
	l.mu.Unlock()
	return d
}

// fail answers c after err: the failure policy for a store failure, or the
// error itself.
func (b *Leased) fail(c *call, err error) (Decision, error) {
	if errors.Is(err, ErrUnexpectedReply) {
		return Decision{Limit: c.lim, Source: SourceRedis}, err
	}
	d, err, _ := b.r.failed(c.ctx, err, c.key, c.t, c.n, c.upTo, c.lim, c.rp.gen, c.rp.active(c.t))
	return d, err
}

// direct decides c on the shared bucket alone, as Redis does: for a key
// whose lease was dropped while the decision was under way.
func (b *Leased) direct(c *call) (Decision, error) {
	if b.closed.Load() {
		return Decision{Limit: c.lim, Source: SourceLease}, ErrClosed
	}
	mode := 0
	if c.upTo {
		mode = 1
	}
	rep, err := b.exchange(c, bucketkey.Redis(b.r.o.prefix, b.r.o.name, c.key), c.n, mode)
	if err != nil {
		return b.fail(c, err)
	}
	return rep, nil
}
