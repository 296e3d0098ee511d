package limiter

// The Redis side of Leased: exchanges with the shared bucket, the blocking
// first fetch, background refills and give-backs.

import (
	"context"
	"math"
	"strconv"
	"time"
)

// exchange runs the bucket script for c on rkey: n tokens in mode (see
// bucketScript), within what is left of c's time budget.
func (b *Leased) exchange(c *call, rkey string, n, mode int) (Decision, error) {
	left := c.budget()
	if left <= 0 {
		return Decision{}, context.DeadlineExceeded
	}
	ctx, cancel := context.WithDeadline(c.ctx, c.deadline)
	defer cancel()
	return b.script(ctx, rkey, n, mode, c.t, c.pass, c.lim)
}

// script runs the bucket script: n tokens in mode at t, under lim.
func (b *Leased) script(ctx context.Context, rkey string, n, mode int, t time.Time, pass bool, lim Limit) (Decision, error) {
	v, err := b.r.eval(ctx, bucketScript, []string{rkey}, lim.PerSecond()/1e6, lim.Burst, n, mode, nowArg(t, pass))
	if err != nil {
		return Decision{}, err
	}
	return parseBucketReply(v, lim, SourceRedis)
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
	l.noteViewLocked(rep.Remaining, c.t, c.pass)
	return nil
}

// acquireLocked serves c, which the lease cannot, with one round trip: it
// holds the lease's tokens for c, asks the bucket for the rest (topping the
// lease up to its target too, unless c asks for more than the target: then
// all or nothing), and decides. It unlocks l.
func (b *Leased) acquireLocked(l *lease, c *call) (Decision, error) {
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
	l.endFetchLocked()
	if err != nil {
		it := giveBackItem{rkey: l.rkey, tokens: held, at: l.viewAt, pass: l.pass}
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
		it := giveBackItem{rkey: l.rkey, tokens: have - take, at: c.t, pass: c.pass}
		l.mu.Unlock()
		b.giveBack(it)
		if b.closed.Load() && take == 0 {
			return Decision{Limit: c.lim, Source: SourceRedis}, ErrClosed
		}
		d := Decision{Allowed: take > 0, Taken: take, Remaining: rep.Remaining, ResetAfter: rep.ResetAfter, Limit: c.lim, Source: SourceRedis}
		if take == 0 {
			d.RetryAfter = max(rep.RetryAfter, c.lim.Interval())
		}
		return d, nil
	}
	l.tokens += have
	l.noteViewLocked(rep.Remaining, c.t, c.pass)
	if mode == 1 && rep.Taken < want {
		b.scheduleLocked(l, c.t, c.pass, wait1(rep, c.lim), c.lim)
	}
	if mode == 0 && !rep.Allowed {
		l.shortNeed, l.shortUntil, l.shortLim = want, c.t.Add(rep.RetryAfter), c.lim
	}
	if l.tokens >= c.n || (c.upTo && l.tokens > 0) {
		return b.spendLocked(l, c, min(l.tokens, c.n), SourceRedis), nil
	}
	d := Decision{Limit: c.lim, Source: SourceRedis}
	if mode == 0 {
		d.RetryAfter = rep.RetryAfter
	} else {
		d.RetryAfter = b.retryLocked(l, c)
	}
	fillDecision(&d, l.tokens+l.remote, c.lim)
	l.mu.Unlock()
	return d, nil
}

// wait1 returns, from a short fetch's reply, how long until the bucket holds
// one token again: Redis reports it when it gave nothing; when it gave what
// it had, the fraction left is read off its reset time.
func wait1(rep Decision, lim Limit) time.Duration {
	if rep.RetryAfter > 0 {
		return rep.RetryAfter
	}
	w := rep.ResetAfter - durationFromTokens(float64(lim.Burst-1), lim.PerSecond())
	return min(max(w, 0), lim.Interval())
}

// retryLocked returns how long c must wait, by l's view, until its tokens
// (one, for TakeUpTo) could be had: not before the bucket holds them, nor
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

func fillDecision(d *Decision, remaining int, lim Limit) {
	remaining = min(remaining, lim.Burst)
	d.Remaining = remaining
	d.ResetAfter = durationFromTokens(float64(lim.Burst-remaining), lim.PerSecond())
}

// maxLeaseFor returns the max lease size L under lim.
func (b *Leased) maxLeaseFor(lim Limit) int {
	if b.maxLease > 0 {
		return min(b.maxLease, lim.Burst)
	}
	return max(1, min(lim.Burst, int(math.Ceil(lim.PerSecond()*b.ahead.Seconds()))))
}

// target returns the lease size l should hold, from its observed demand.
// The caller holds l.mu.
func (b *Leased) target(l *lease, lim Limit, t time.Time) int {
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

// fetchTimer is the scheduled fetch of generation gen (with real time).
func (b *Leased) fetchTimer(l *lease, gen uint64) {
	t := b.clock.Now() // before locking: a clock is user code
	l.mu.Lock()
	if l.timer == nil || l.timerGen != gen {
		l.mu.Unlock() // cancelled, or taken over by a request
		return
	}
	l.timer, l.due = nil, time.Time{}
	if l.fetching() {
		l.mu.Unlock() // a request's exchange is under way
		return
	}
	l.startFetchLocked()
	b.fetchLocked(l, t, false)
}

// fetchLocked runs the fetch l is marked for; it is called with l.mu held
// and releases it.
func (b *Leased) fetchLocked(l *lease, t time.Time, pass bool) {
	lim, _ := b.limit.at(t)
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
	l.endFetchLocked()
	if err != nil { // the next request retries, or falls back
		l.mu.Unlock()
		return
	}
	if l.gone {
		l.mu.Unlock()
		b.giveBack(giveBackItem{rkey: rkey, tokens: rep.Taken, at: t, pass: pass})
		return
	}
	l.tokens += rep.Taken
	l.noteViewLocked(rep.Remaining, t, pass)
	if rep.Taken < want {
		b.scheduleLocked(l, t, pass, wait1(rep, lim), lim)
	}
	l.mu.Unlock()
}

// scheduleLocked arranges the next fetch for l, whose bucket was short at t
// and will hold a token after wait: when about half a lease has accrued (or
// one token, if the lease is tiny), but at most the lead time later, rather
// than polling Redis. With real time a timer makes the fetch; with virtual
// time (pass) the first decision at or after the due time does. No timer is
// started once Close has begun. The caller holds l.mu.
func (b *Leased) scheduleLocked(l *lease, t time.Time, pass bool, wait time.Duration, lim Limit) {
	delay := wait
	if half := b.target(l, lim, t) / 2; half > 1 {
		delay = max(delay, durationFromTokens(float64(half), lim.PerSecond()))
	}
	delay = min(delay, b.ahead)
	l.retryAt = t.Add(wait)
	l.due = t.Add(delay)
	l.timerGen++
	if pass {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return
	}
	b.wg.Add(1)
	gen := l.timerGen
	// At least a millisecond between fetches of one key: never poll Redis
	// in a tight loop, whatever the bucket reports.
	l.timer = time.AfterFunc(max(delay, time.Millisecond), func() {
		defer b.wg.Done()
		b.fetchTimer(l, gen)
	})
}

// giveBack returns unspent tokens to their bucket, at the time of the
// lease's last exchange (Redis TIME if that was real time), so a give-back
// never moves a bucket's clock.
func (b *Leased) giveBack(it giveBackItem) {
	if it.tokens <= 0 {
		return
	}
	lim, _ := b.limit.at(it.at)
	_, err := b.script(context.Background(), it.rkey, it.tokens, 2, it.at, it.pass, lim)
	if err != nil {
		b.r.o.logger.Warn("herdcap: could not give leased tokens back", "name", b.r.o.name, "tokens", strconv.Itoa(it.tokens), "err", err)
	}
}
