package limiter

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
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
// token, and at most the max lease size (by default the limit's tokens per
// lead time, capped at the burst). A key with no lease and no refill under
// way (a new or idle key) is served by one synchronous acquisition; a key
// whose lease is being refilled is answered from the lease alone. Leftover
// tokens go back to the bucket on Close, and when a lease is dropped from
// the bounded key map (WithMaxKeys).
//
// # Overshoot bound
//
// Every token a node spends was taken from the shared bucket, so over any
// period the fleet admits no more than the bucket grants. Tokens may be spent
// a little after they were granted, so over any trailing window of length W
//
//	admitted(W) <= Rate·W + Burst + N·L
//
// for N nodes with max lease size L: at most L tokens per node are held
// unspent at the start of any window. With the defaults L is a tenth of a
// second of the limit, so four nodes overshoot by at most 0.4 s worth of
// tokens in any window, and not at all over the long run.
//
// Failure handling is that of Redis: the breaker, the time budget and the
// failure policy. While Redis cannot be reached a node spends its lease
// first, then answers from the failure policy. A Leased is safe for
// concurrent use; Close it to return its leases and stop its background work.
type Leased struct {
	r        *remote
	limit    limitState
	clock    Clock
	injected bool
	ahead    time.Duration
	maxLease int // 0: derived from the limit at each refill
	keys     *keyMap[lease]

	mu      sync.Mutex // guards closing and wg.Add against Close
	closing bool
	wg      sync.WaitGroup
}

// lease is one key's tokens on this node. A lease is in one of three
// states: settled, fetching (an acquisition is on the wire; fetched is
// closed when it ends) or scheduled (the bucket was short, and timer will
// fetch again when tokens have accrued).
type lease struct {
	mu       sync.Mutex
	userKey  string // the key as given (for the fallback)
	rkey     string // its Redis key
	tokens   int    // leased and unspent
	fetched  chan struct{}
	timer    *time.Timer
	timerAt  time.Time
	timerGen uint64  // identifies the scheduled fetch; a stale timer does nothing
	remote   int     // the bucket's remaining tokens at the last fetch
	demand   float64 // tokens asked for per second, smoothed
	asked    int     // tokens asked for since sampleAt
	sampleAt time.Time
	gone     bool // dropped or closed: give back what comes in
}

func (l *lease) fetching() bool  { return l.fetched != nil }
func (l *lease) scheduled() bool { return l.timer != nil }
func (l *lease) settled() bool   { return l.fetched == nil && l.timer == nil }

// startFetchLocked marks l fetching.
func (l *lease) startFetchLocked() { l.fetched = make(chan struct{}) }

// endFetchLocked marks the fetch over and wakes its waiters.
func (l *lease) endFetchLocked() {
	close(l.fetched)
	l.fetched = nil
}

// stopTimerLocked cancels a scheduled fetch, and reports whether its
// callback will never run (so its WaitGroup count is the caller's to
// release). A callback already under way finds itself stale and does
// nothing.
func (l *lease) stopTimerLocked() bool {
	if l.timer == nil {
		return false
	}
	stopped := l.timer.Stop()
	l.timer = nil
	l.timerGen++
	return stopped
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

// NewLeased returns a leasing budget enforcing l per key on Redis.
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
	return l.tokens == 0 && l.settled()
}

// dropLease is called when l leaves the key map: its tokens go back.
func (b *Leased) dropLease(l *lease) {
	l.mu.Lock()
	l.gone = true
	n := l.tokens
	l.tokens = 0
	if l.stopTimerLocked() {
		b.wg.Done() // the scheduled refill will not run
	}
	l.mu.Unlock()
	if n > 0 {
		b.goBackground(func() { b.giveBack(l.rkey, n) })
	}
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

// SetLimit ramps this node's limit to l over the WithRamp window.
func (b *Leased) SetLimit(l Limit) error { return b.SetLimitAt(b.clock.Now(), l) }

// SetLimitAt is SetLimit with the ramp starting at t.
func (b *Leased) SetLimitAt(t time.Time, l Limit) error { return b.limit.set(t, l) }

// LiveNodes returns the number of nodes last seen in the heartbeat set.
func (b *Leased) LiveNodes() int { return int(b.r.live.Load()) }

// Close stops background refills, gives every unspent token back to its
// bucket, and leaves the live-node set.
func (b *Leased) Close() error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return nil
	}
	b.closing = true
	b.mu.Unlock()
	var back []func()
	b.keys.each(func(s *slot[lease]) {
		l := &s.v
		l.mu.Lock()
		l.gone = true
		if l.stopTimerLocked() {
			b.wg.Done()
		}
		if n := l.tokens; n > 0 {
			l.tokens = 0
			rkey := l.rkey
			back = append(back, func() { b.giveBack(rkey, n) })
		}
		l.mu.Unlock()
	})
	b.wg.Wait() // refills under way give their tokens back themselves
	for _, f := range back {
		f()
	}
	b.r.close()
	return nil
}

// goBackground runs f on a tracked goroutine unless the backend is closing,
// in which case it runs f inline.
func (b *Leased) goBackground(f func()) {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		f()
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		f()
	}()
}

func (b *Leased) decide(ctx context.Context, key string, t time.Time, passTime bool, n int, upTo bool) (Decision, error) {
	if b.r.closed() {
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
		l.userKey = key
		l.rkey = bucketkey.Redis(b.r.o.prefix, b.r.o.name, key)
		l.sampleAt = t
	})
	l := &s.v
	d := Decision{Limit: lim, Source: SourceLease}
	l.mu.Lock()
	l.asked += n
	synced := false
	var deadline time.Time // for waiting on a fetch: the time budget, once
	for {
		if take := b.takeLocked(l, n, upTo); take >= 0 {
			// The hot path: spend from the lease, and top it up in the
			// background when it falls to half its target.
			d.Allowed, d.Taken = true, take
			refill := l.settled() && !l.gone && l.tokens <= b.target(l, lim, t)/2
			if refill {
				l.startFetchLocked()
			}
			fillDecision(&d, l.tokens+l.remote, lim)
			l.mu.Unlock()
			if refill {
				b.goBackground(func() { b.fetch(l, passTime) })
			}
			return d, nil
		}
		if !synced && l.scheduled() && !t.Before(l.timerAt) && l.stopTimerLocked() {
			// The scheduled fetch is overdue (its goroutine starved of
			// CPU, say): do it now rather than refuse meanwhile.
			b.wg.Done()
		}
		switch {
		case synced || l.scheduled():
			// The bucket is short; a fetch is due when tokens accrue.
			d.RetryAfter = lim.Interval()
			if l.scheduled() {
				d.RetryAfter = max(d.RetryAfter, l.timerAt.Sub(t))
			}
			fillDecision(&d, l.tokens+l.remote, lim)
			l.mu.Unlock()
			return d, nil
		case l.fetching():
			// Tokens are on their way: wait for them, within the time
			// budget, rather than refuse a request the bucket can serve.
			if deadline.IsZero() {
				deadline = time.Now().Add(b.r.o.timeout)
			}
			wait := time.Until(deadline)
			if wait <= 0 {
				d.RetryAfter = lim.Interval()
				fillDecision(&d, l.tokens+l.remote, lim)
				l.mu.Unlock()
				return d, nil
			}
			ch := l.fetched
			l.mu.Unlock()
			if err := b.await(ctx, ch, wait); err != nil {
				return Decision{Limit: lim, Source: SourceLease}, err
			}
			l.mu.Lock()
			continue
		case b.r.guard.Open() || l.gone:
			l.mu.Unlock()
			d, err, _ := b.r.failed(ctx, gobreaker.ErrOpenState, key, t, n, upTo, lim, rp.gen, rp.active(t))
			return d, err
		}
		// A new or idle key: one synchronous acquisition, then take.
		want := max(n, b.target(l, lim, t))
		l.startFetchLocked()
		l.mu.Unlock()
		got, rep, err := b.acquire(ctx, l, want, t, passTime, lim)
		l.mu.Lock()
		l.endFetchLocked()
		if err != nil {
			l.mu.Unlock()
			d, err, _ := b.r.failed(ctx, err, key, t, n, upTo, lim, rp.gen, rp.active(t))
			return d, err
		}
		if l.gone {
			l.mu.Unlock()
			b.giveBack(l.rkey, got)
			return Decision{RetryAfter: max(rep.RetryAfter, lim.Interval()), Remaining: rep.Remaining, ResetAfter: rep.ResetAfter, Limit: lim, Source: SourceRedis}, nil
		}
		l.tokens += got
		l.remote = rep.Remaining
		d.Source = SourceRedis // this one waited on Redis
		synced = true
	}
}

// await waits for a fetch to end, for at most wait.
func (b *Leased) await(ctx context.Context, ch <-chan struct{}, wait time.Duration) error {
	tm := time.NewTimer(wait)
	defer tm.Stop()
	select {
	case <-ch:
	case <-tm.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// takeLocked takes n tokens (up to n when upTo) from l and returns how many,
// or -1 when it cannot. n = 0 takes 0.
func (b *Leased) takeLocked(l *lease, n int, upTo bool) int {
	switch {
	case n == 0:
		return 0
	case l.tokens >= n:
		l.tokens -= n
		return n
	case upTo && l.tokens > 0:
		n = l.tokens
		l.tokens = 0
		return n
	}
	return -1
}

func fillDecision(d *Decision, remaining int, lim Limit) {
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

// fetch tops l up, in the background. The caller has marked l fetching.
func (b *Leased) fetch(l *lease, passTime bool) {
	l.mu.Lock()
	b.fetchLocked(l, passTime)
}

// fetchTimer is the scheduled fetch of generation gen.
func (b *Leased) fetchTimer(l *lease, gen uint64, passTime bool) {
	l.mu.Lock()
	if l.timer == nil || l.timerGen != gen || l.fetching() {
		l.mu.Unlock() // cancelled, or taken over by a request
		return
	}
	l.timer = nil
	l.startFetchLocked()
	b.fetchLocked(l, passTime)
}

// fetchLocked runs the fetch l is marked for; it is called with l.mu held
// and releases it.
func (b *Leased) fetchLocked(l *lease, passTime bool) {
	t := b.clock.Now()
	lim, _ := b.limit.at(t)
	want := b.target(l, lim, t) - l.tokens
	if l.gone || want <= 0 {
		l.endFetchLocked()
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	got, rep, err := b.acquire(context.Background(), l, want, t, passTime, lim)
	l.mu.Lock()
	l.endFetchLocked()
	if err != nil { // the next request retries, or falls back
		l.mu.Unlock()
		return
	}
	if l.gone {
		l.mu.Unlock()
		b.giveBack(l.rkey, got)
		return
	}
	l.tokens += got
	l.remote = rep.Remaining
	if got < want {
		b.scheduleLocked(l, t, rep.RetryAfter, lim, passTime)
	}
	l.mu.Unlock()
}

// scheduleLocked arranges the next fetch for l, whose bucket was short: when
// about half a lease has accrued (or one token, if the lease is tiny),
// rather than polling Redis. Nothing is scheduled once Close has begun. The
// caller holds l.mu.
func (b *Leased) scheduleLocked(l *lease, t time.Time, retry time.Duration, lim Limit, passTime bool) {
	delay := retry
	if half := b.target(l, lim, t) / 2; half > 1 {
		delay = max(delay, durationFromTokens(float64(half), lim.PerSecond()))
	}
	delay = min(delay, b.ahead)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return
	}
	b.wg.Add(1)
	l.timerAt = t.Add(delay)
	l.timerGen++
	gen := l.timerGen
	l.timer = time.AfterFunc(delay, func() {
		defer b.wg.Done()
		b.fetchTimer(l, gen, passTime)
	})
}

// acquire takes up to want tokens from the shared bucket.
func (b *Leased) acquire(ctx context.Context, l *lease, want int, t time.Time, passTime bool, lim Limit) (int, Decision, error) {
	v, err := b.r.eval(ctx, bucketScript, []string{l.rkey}, lim.PerSecond()/1e6, lim.Burst, want, 1, nowArg(t, passTime))
	if err != nil {
		return 0, Decision{}, err
	}
	rep, err := parseBucketReply(v, lim, SourceRedis)
	if err != nil {
		return 0, Decision{}, err
	}
	return rep.Taken, rep, nil
}

// giveBack returns n unspent tokens to the bucket at rkey.
func (b *Leased) giveBack(rkey string, n int) {
	if n <= 0 {
		return
	}
	t := b.clock.Now()
	lim, _ := b.limit.at(t)
	_, err := b.r.eval(context.Background(), bucketScript, []string{rkey}, lim.PerSecond()/1e6, lim.Burst, n, 2, nowArg(t, b.injected))
	if err != nil {
		b.r.o.logger.Warn("herdcap: could not give leased tokens back", "name", b.r.o.name, "tokens", strconv.Itoa(n), "err", err)
	}
}
