package fleet

// The Redis side of Leased: exchanges with the shared bucket, the blocking
// first fetch, refills (in the background and on the clock) and
// give-backs.

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/herdcap/herdcap/internal/bucketlua"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// exchange runs the bucket script for c on rkey: n tokens in mode (see
// bucketScript), within what is left of c's time limit.
func (b *Leased) exchange(c *call, rkey string, n, mode int) (limiter.Decision, error) {
	left := c.timeLeft()
	if left <= 0 {
		return limiter.Decision{}, context.DeadlineExceeded
	}
	ctx, cancel := context.WithDeadline(c.ctx, c.deadline)
	defer cancel()
	return b.script(ctx, rkey, n, mode, c.t, c.pass, c.lim)
}

// script runs the bucket script: n tokens in mode at t, under lim, with
// neither a denial tail nor a carried limit in Redis (this node keeps
// those).
//
// It reports a lease exchange (mode 0 or 1 for tokens) to the Lease hook,
// and Redis's answer to the Fallback hook: its callers hold no lock.
func (b *Leased) script(ctx context.Context, rkey string, n, mode int, t time.Time, pass bool, lim limiter.Limit) (limiter.Decision, error) {
	var start time.Time
	if b.s.onLease != nil {
		start = b.s.clock.Now()
	}
	v, err := b.s.link.Eval(ctx, bucketScript, []string{rkey}, lim.PerSecond()/1e6, lim.Burst, n, mode,
		bucketlua.NowArg(t, pass), 0, "", "")
	if err != nil {
		return limiter.Decision{}, err
	}
	b.s.answered()
	d, err := parseBucketReply(v, lim, limiter.ViaRedis)
	if err == nil && b.s.onLease != nil && n > 0 && mode <= 1 {
		b.s.onLease(observe.Lease{Policy: b.s.name, Tokens: d.Taken, Latency: b.s.clock.Now().Sub(start)})
	}
	return d, err
}

// exchangeLocked makes an exchange for c that changes nothing but l's
// view: n = 0 reads the bucket. It returns with l locked, or with l
// unlocked and an error.
func (b *Leased) exchangeLocked(l *lease, c *call, n, mode int) error {
	l.startFetchLocked()
	l.mu.Unlock()
	rep, err := b.exchange(c, l.rkey, n, mode)
	l.mu.Lock()
	l.endFetchLocked()
	if err != nil {
		l.mu.Unlock()
		return err
	}
	l.noteViewLocked(rep.Remaining, c.t, c.pass, c.lim)
	return nil
}

// acquireLocked serves c, which the lease cannot, with one round trip: it
// holds the lease's tokens for c, asks the bucket for the rest (topping the
// lease up to its target too, unless c asks for more than the target: then
// all or nothing), and decides. It unlocks l.
func (b *Leased) acquireLocked(l *lease, c *call) (limiter.Decision, error) {
	target := b.target(l, c.lim, c.t)
	held := l.tokens
	mode, want := 1, max(c.n, target)-held
	if !c.upTo && c.n > target {
		mode, want = 0, c.n-held
	}
	l.tokens = 0 // held for c: other requests wait for this fetch
	l.startFetchLocked()
	l.mu.Unlock()
	rep, err := b.exchange(c, l.rkey, want, mode)
	l.mu.Lock()
	if err == nil && !l.gone && mode == 1 && rep.Taken < want {
		armLocked(b, l, b.scheduleLocked(l, c.t, wait1(rep, c.lim), c.lim))
	}
	l.endFetchLocked()
	if err != nil {
		it := giveBackItem{rkey: l.rkey, tokens: held, at: l.viewAt, pass: l.pass, lim: l.viewLim}
		if !l.gone {
			l.tokens += held
			it.tokens = 0
		}
		l.mu.Unlock()
		b.giveBack(it) // dropped or closed meanwhile: what c held goes back
		return b.fail(c, err)
	}
	have := held + rep.Taken
	if l.gone {
		// Dropped or closed meanwhile: decide c on what it has, and give
		// the rest back.
		take := 0
		if have >= c.n || (c.upTo && have > 0) {
			take = min(have, c.n)
		}
		it := giveBackItem{rkey: l.rkey, tokens: have - take, at: c.t, pass: c.pass, lim: c.lim}
		l.mu.Unlock()
		b.giveBack(it)
		if b.closed.Load() && take == 0 {
			return limiter.Decision{Limit: c.lim, Via: limiter.ViaRedis}, limiter.ErrClosed
		}
		d := limiter.Decision{Allowed: take > 0, Taken: take, Remaining: rep.Remaining, ResetAfter: rep.ResetAfter, Limit: c.lim, Via: limiter.ViaRedis}
		if take == 0 {
			d.RetryAfter = max(rep.RetryAfter, c.lim.Interval())
		}
		return d, nil
	}
	l.tokens += have
	l.noteViewLocked(rep.Remaining, c.t, c.pass, c.lim)
	if mode == 0 && !rep.Allowed {
		l.shortNeed, l.shortUntil, l.shortLim = want, c.t.Add(rep.RetryAfter), c.lim
	}
	if l.tokens >= c.n || (c.upTo && l.tokens > 0) {
		return b.spendLocked(l, c, min(l.tokens, c.n), limiter.ViaRedis), nil
	}
	d := limiter.Decision{Limit: c.lim, Via: limiter.ViaRedis}
	if mode == 0 {
		d.RetryAfter = rep.RetryAfter
	} else {
		d.RetryAfter = b.retryLocked(l, c)
	}
	fillDecision(&d, l.tokens+l.remote, c.lim)
	b.refusedLocked(l, c, &d)
	l.mu.Unlock()
	return d, nil
}

// wait1 returns, from a short fetch's reply, how long until the bucket holds
// one token again: Redis reports it when it gave nothing; when it gave what
// it had, the fraction left is read off its reset time.
func wait1(rep limiter.Decision, lim limiter.Limit) time.Duration {
	if rep.RetryAfter > 0 {
		return rep.RetryAfter
	}
	w := rep.ResetAfter - durationFromTokens(float64(lim.Burst-1), lim.PerSecond())
	return min(max(w, 0), lim.Interval())
}

// retryLocked returns how long c must wait, by l's view, until its tokens
// (one, for UpTo) could be had: not before the bucket holds them, nor
// before this node's next fetch is due.
func (b *Leased) retryLocked(l *lease, c *call) time.Duration {
	need := c.n - l.tokens
	if c.upTo {
		need = 1
	}
	wait := l.retryAt.Sub(c.t) + durationFromTokens(float64(need-1), c.lim.PerSecond())
	if l.scheduled() {
		wait = max(wait, l.due.Sub(c.t))
	}
	return max(wait, time.Microsecond)
}

// target returns the lease size l should hold, from its observed demand.
// The caller holds l.mu.
func (b *Leased) target(l *lease, lim limiter.Limit, t time.Time) int {
	if el := t.Sub(l.sampleAt); el >= min(b.ahead/4, 25*time.Millisecond) {
		rate := float64(l.asked) / el.Seconds()
		if l.demand == 0 {
			l.demand = rate
		} else {
			l.demand = 0.5*l.demand + 0.5*rate
		}
		l.asked, l.sampleAt = 0, t
	}
	want := int(math.Ceil(l.demand * b.ahead.Seconds()))
	return max(1, min(want, b.maxLeaseFor(lim)))
}

// fetch tops l up in the background, at time t (the time of the decision
// that started it). The caller has marked l fetching.
func (b *Leased) fetch(l *lease, t time.Time, pass bool) {
	l.mu.Lock()
	b.fetchLocked(l, t, pass)
}

// fetchTimer is the scheduled fetch of generation gen, run by its timer on
// the clock.
func (b *Leased) fetchTimer(l *lease, gen uint64) {
	t := b.s.clock.Now() // before locking: a clock is user code
	l.mu.Lock()
	if l.timerGen != gen || l.due.IsZero() {
		l.mu.Unlock() // cancelled, or taken over by a request
		return
	}
	l.cancelScheduleLocked() // its timer is this one, which has fired
	if l.fetching() {
		l.mu.Unlock() // a request's exchange is under way
		return
	}
	l.startFetchLocked()
	b.fetchLocked(l, t, b.s.injected)
}

// fetchLocked runs the fetch l is marked for; it is called with l.mu held
// and releases it.
func (b *Leased) fetchLocked(l *lease, t time.Time, pass bool) {
	lim := b.limitLocked(l, t)
	want := b.target(l, lim, t) - l.tokens
	if l.gone || want <= 0 {
		l.endFetchLocked()
		l.mu.Unlock()
		return
	}
	rkey := l.rkey
	l.mu.Unlock()
	rep, err := b.script(context.Background(), rkey, want, 1, t, pass, lim)
	l.mu.Lock()
	if err == nil && !l.gone && rep.Taken < want {
		armLocked(b, l, b.scheduleLocked(l, t, wait1(rep, lim), lim))
	}
	l.endFetchLocked()
	if err != nil { // the next request retries, or falls back
		l.mu.Unlock()
		return
	}
	if l.gone {
		l.mu.Unlock()
		b.giveBack(giveBackItem{rkey: rkey, tokens: rep.Taken, at: t, pass: pass, lim: lim})
		return
	}
	l.tokens += rep.Taken
	l.noteViewLocked(rep.Remaining, t, pass, lim)
	l.mu.Unlock()
}

// timer is a scheduled fetch to arm once l is unlocked: its generation (0:
// none) and its delay, and the timer of a schedule it replaced, to stop.
type timer struct {
	gen   uint64
	delay time.Duration
	stale limiter.Timer
}

// scheduleLocked arranges the next fetch for l, whose bucket was short at t
// and will hold a token after wait: when about half a lease has accrued (or
// one token, if the lease is tiny), but at most the lead time later, rather
// than polling Redis. It returns the timer for the caller to arm
// (armLocked); the first decision at or after the due time makes the fetch
// too, if the timer has not run by then. The caller holds l.mu.
func (b *Leased) scheduleLocked(l *lease, t time.Time, wait time.Duration, lim limiter.Limit) timer {
	delay := wait
	if half := b.target(l, lim, t) / 2; half > 1 {
		delay = max(delay, durationFromTokens(float64(half), lim.PerSecond()))
	}
	delay = min(delay, b.ahead)
	stale := l.cancelScheduleLocked()
	l.retryAt = t.Add(wait)
	l.due = t.Add(delay)
	// At least a millisecond between fetches of one key: never poll Redis
	// in a tight loop, whatever the bucket reports.
	return timer{gen: l.timerGen, delay: max(delay, time.Millisecond), stale: stale}
}

// armLocked arms tm for l, whose fetch is under way and whose lock the
// caller holds: it unlocks l to call the clock (user code), and locks it
// again. The fetch ends only after that, so a decision that waited for it
// goes on with the next fetch armed (and a test that moves a fake clock
// next sees it fire).
func armLocked(b *Leased, l *lease, tm timer) {
	l.mu.Unlock()
	b.arm(l, tm)
	l.mu.Lock()
}

// arm sets tm's timer on the clock and keeps it in l, with no lock held
// while it calls the clock (user code), unless Close has begun; and stops
// the timer of the schedule tm replaced. If the schedule was cancelled
// while the timer was being set (a decision made the fetch, the lease was
// dropped, Close began), nobody else will stop the timer: arm stops it.
func (b *Leased) arm(l *lease, tm timer) {
	stopTimer(tm.stale)
	if tm.gen == 0 || b.closed.Load() {
		return
	}
	t := b.s.clock.AfterFunc(tm.delay, func() {
		if !b.track() {
			return
		}
		defer b.wg.Done()
		b.fetchTimer(l, tm.gen)
	})
	l.mu.Lock()
	if l.timerGen == tm.gen && !l.gone {
		l.timer = t
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	t.Stop()
}

// giveBack returns unspent tokens to their bucket, at the time of the
// lease's last exchange (Redis TIME if that was real time) and under its
// limit, so a give-back never moves a bucket's clock.
func (b *Leased) giveBack(it giveBackItem) {
	if it.tokens <= 0 {
		return
	}
	if it.lim == (limiter.Limit{}) { // no exchange recorded its limit
		it.lim, _ = b.s.own(it.at)
	}
	_, err := b.script(context.Background(), it.rkey, it.tokens, 2, it.at, it.pass, it.lim)
	if err != nil {
		b.s.link.Logger().Warn("herdcap: could not give leased tokens back", "name", b.s.link.Name, "tokens", strconv.Itoa(it.tokens), "err", err)
	}
}
