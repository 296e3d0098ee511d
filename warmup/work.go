package warmup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/observe"
)

// Run works on the warms this node has started (Start, before or during
// Run) until ctx ends, with Config.Workers workers, and returns ctx's
// error once every worker has stopped. Each worker claims a chunk, warms
// its keys in order, and marks it done; with nothing to claim it polls
// every Config.Interval. While the store cannot be reached no chunk is
// claimed; a chunk finished meanwhile is marked done once the store
// answers again. When ctx ends, claims are kept until they expire (a node
// that stops mid-chunk is a node that died): run Run until the warms are
// finished (Status) to leave nothing behind.
func (wr *Warmer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range wr.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := worker{wr: wr, cursors: map[*local]*cursor{}, offset: i}
			wk.run(ctx)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// worker is one of a Run's workers. Its buffers are reused chunk after
// chunk: a worker holds at most one chunk's items.
type worker struct {
	wr      *Warmer
	cursors map[*local]*cursor
	items   []Item
	seen    map[string]struct{}
	failed  []string
	offset  int
	renewed time.Time // the last renewal of the chunk worked on
}

func (wk *worker) run(ctx context.Context) {
	defer func() {
		for _, c := range wk.cursors {
			c.close()
		}
	}()
	for ctx.Err() == nil {
		if !wk.once(ctx) {
			_ = wk.wr.sleep(ctx, wk.wr.cfg.Interval)
		}
	}
}

// once tries each warm in turn (starting at the worker's offset, so that
// workers spread over warms) and works on one chunk; false when none had
// one to hand out.
func (wk *worker) once(ctx context.Context) bool {
	wr := wk.wr
	wr.mu.Lock()
	warms := append([]*local(nil), wr.order...)
	wr.mu.Unlock()
	for i := range warms {
		l := warms[(i+wk.offset)%len(warms)]
		l.mu.Lock()
		finished := l.phase.Finished()
		l.mu.Unlock()
		if finished {
			continue
		}
		res, err := wr.cfg.Store.claim(ctx, wr.claimReq(l))
		if err != nil {
			wr.storeFailed(ctx, l, "claim", err)
			continue
		}
		if !wr.learn(ctx, l, res) || res.chunk < 0 {
			continue
		}
		wk.chunk(ctx, l, res.chunk)
		return true
	}
	return false
}

func (wr *Warmer) claimReq(l *local) claimReq {
	return claimReq{id: l.w.ID, node: wr.cfg.Node, now: wr.nowUs(), ttlUs: wr.cfg.ClaimTTL.Microseconds()}
}

// storeFailed logs a failed store call, about once a second at most: in
// an outage every worker fails every Interval.
func (wr *Warmer) storeFailed(ctx context.Context, l *local, op string, err error) {
	if ctx.Err() != nil {
		return
	}
	if n, ok := wr.logs.Allow(); ok {
		wr.cfg.log.Warn("herdcap: warm store call failed", "id", l.w.ID, "op", op, "node", wr.cfg.Node, "err", err, "suppressed", n)
	}
}

// learn takes in the store's answer about l: its phase, and whether the
// store lost it (or wrote it back without this node's knowledge), in which
// case this node restores what it knows. It reports whether the answer can
// be acted on.
func (wr *Warmer) learn(ctx context.Context, l *local, res claimRes) bool {
	l.mu.Lock()
	if res.missing || res.gen != l.gen {
		known, staged := l.gen, l.rec.staged
		l.mu.Unlock()
		// One worker restores at a time; the others leave it to it.
		l.restoring.Lock()
		defer l.restoring.Unlock()
		if l.genNow() != known {
			return false
		}
		if staged && l.w.Source != nil {
			// This node staged the items: copy them again, in case the
			// store lost them with the warm.
			if _, err := wr.stage(ctx, l.w.ID, l.w.Source); err != nil {
				wr.storeFailed(ctx, l, "stage", err)
				return false
			}
		}
		l.mu.Lock()
		req := restoreReq{rec: l.rec, done: append([]byte(nil), l.done...), node: wr.cfg.Node,
			ttlUs: wr.cfg.ClaimTTL.Microseconds(), holdUs: 2 * wr.cfg.Interval.Microseconds(), known: l.gen, now: wr.nowUs(),
			maxFailed: wr.cfg.MaxFailedKeys}
		req.rec.phase = l.phase
		req.rec.failed, req.rec.failedKeys = l.failed, append([]string(nil), l.failedKeys...)
		for c := range l.held {
			req.held = append(req.held, c)
		}
		l.mu.Unlock()
		gen, err := wr.cfg.Store.restore(ctx, req)
		if err != nil {
			wr.storeFailed(ctx, l, "restore", err)
			return false
		}
		wr.cfg.log.Warn("herdcap: warm restored into the store", "id", l.w.ID, "node", wr.cfg.Node, "lost", res.missing, "gen", gen)
		l.mu.Lock()
		l.gen = gen
		l.mu.Unlock()
		return false
	}
	was := l.phase
	l.phase = res.phase
	l.mu.Unlock()
	if was != res.phase {
		wr.observe(observe.Warmup{Kind: observe.WarmupPhase, ID: l.w.ID, Phase: res.phase.String()})
	}
	return true
}

// observe reports e to Config.Observe's Warmup hook. The caller holds no
// lock.
func (wr *Warmer) observe(e observe.Warmup) {
	if wr.cfg.onWarm != nil {
		wr.cfg.onWarm(e)
	}
}

// chunk warms chunk c of l.
func (wk *worker) chunk(ctx context.Context, l *local, c int64) {
	wr := wk.wr
	l.mu.Lock()
	l.held[c] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.held, c)
		l.mu.Unlock()
	}()
	cur := wk.cursors[l]
	if cur == nil {
		cur = &cursor{src: l.read}
		wk.cursors[l] = cur
	}
	from := c * int64(l.chunkSize)
	n := int(min(int64(l.chunkSize), l.keys-from))
	var err error
	wk.items, err = cur.read(ctx, from, n, wk.items)
	if err != nil {
		// The claim is left to expire: the chunk is tried again later.
		if k, ok := wr.logs.Allow(); ok {
			wr.cfg.log.Warn("herdcap: warm source failed", "id", l.w.ID, "chunk", c, "node", wr.cfg.Node, "err", err, "suppressed", k)
		}
		_ = wr.sleep(ctx, wr.cfg.Interval)
		return
	}
	if wk.seen == nil {
		wk.seen = make(map[string]struct{}, len(wk.items))
	}
	clear(wk.seen)
	wk.failed = wk.failed[:0]
	// Items the source no longer has (it changed since it was counted)
	// are reported failed: counted, not silently dropped.
	nFailed := int64(n - len(wk.items))
	if nFailed > 0 {
		wr.cfg.log.Warn("herdcap: warm source ended early", "id", l.w.ID, "chunk", c, "node", wr.cfg.Node,
			"at", from+int64(len(wk.items)), "keys", l.keys)
	}
	wk.renewed = wr.cfg.clock.Now()
	gate := func() bool { return wk.gate(ctx, l, c) }
	prev := math.Inf(1)
	if from > 0 {
		prev = math.MaxFloat64 // the previous item is in another chunk
	}
	for i, it := range wk.items {
		if err := checkItem(from+int64(i), it, prev); err != nil {
			nFailed++
			wk.fail(l, it.Key, err)
			continue
		}
		prev = it.Weight
		if _, dup := wk.seen[it.Key]; dup {
			l.stats.duplicates.Add(1)
			continue
		}
		wk.seen[it.Key] = struct{}{}
		if err := wr.warmKey(ctx, l, it.Key, gate); err != nil {
			if ctx.Err() != nil || err == errLeave {
				return
			}
			nFailed++
			wk.fail(l, it.Key, err)
		}
	}
	wk.complete(ctx, l, c, nFailed)
}

func (wk *worker) fail(l *local, key string, err error) {
	wr := wk.wr
	if len(wk.failed) < wr.cfg.MaxFailedKeys {
		wk.failed = append(wk.failed, key)
	}
	wr.cfg.log.Debug("herdcap: warm key failed", "id", l.w.ID, "key", key, "node", wr.cfg.Node, "err", err)
	if wr.cfg.onWarm != nil {
		wr.observe(observe.Warmup{Kind: observe.WarmupKeyFailed, ID: l.w.ID, Keys: 1, Phase: l.phaseNow().String(), Reason: err.Error()})
	}
}

// errLeave: the chunk must be left (aborted, taken over, ctx ended).
var errLeave = errors.New("warmup: chunk left")

// gate is called before every origin call of chunk c: once Interval has
// passed since the last renewal it renews the claim (waiting while the
// warm is paused), so that every node sees a pause or an abort before its
// next call at most Interval after the store recorded it. False: leave
// the chunk.
func (wk *worker) gate(ctx context.Context, l *local, c int64) bool {
	if ctx.Err() != nil {
		return false
	}
	if t := wk.wr.cfg.clock.Now(); t.Sub(wk.renewed) < wk.wr.cfg.Interval {
		return true
	}
	ok := wk.renew(ctx, l, c)
	wk.renewed = wk.wr.cfg.clock.Now()
	return ok
}

// renew renews the claim on c, waiting while the warm is paused; false
// when the chunk must be left (aborted, lost, ctx ended).
func (wk *worker) renew(ctx context.Context, l *local, c int64) bool {
	wr := wk.wr
	for ctx.Err() == nil {
		res, err := wr.cfg.Store.renew(ctx, wr.claimReq(l), c)
		switch {
		case err != nil:
			// Keep working through an outage: the chunk is marked done
			// once the store answers (see complete).
			wr.storeFailed(ctx, l, "renew", err)
			return true
		case res.missing || res.gen != l.genNow():
			wr.learn(ctx, l, res)
			return true
		case !res.held:
			return false // taken over by another node after our claim expired
		}
		wr.learn(ctx, l, res)
		switch res.phase {
		case Running:
			return true
		case Paused:
			_ = wr.sleep(ctx, wr.cfg.Interval)
		default:
			return false
		}
	}
	return false
}

func (l *local) phaseNow() Phase {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.phase
}

func (l *local) genNow() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen
}

// complete marks c done, retrying every Interval while the store cannot
// be reached, until ctx ends.
func (wk *worker) complete(ctx context.Context, l *local, c int64, nFailed int64) {
	wr := wk.wr
	l.mu.Lock()
	l.done.set(c)
	l.failed += nFailed
	l.failedKeys = pushFailed(l.failedKeys, wk.failed, wr.cfg.MaxFailedKeys)
	l.mu.Unlock()
	l.stats.chunks.Add(1)
	if wr.cfg.onWarm != nil {
		from := c * int64(l.chunkSize)
		keys := min(int64(l.chunkSize), l.keys-from) - nFailed
		wr.observe(observe.Warmup{Kind: observe.WarmupChunkDone, ID: l.w.ID, Keys: int(keys), Phase: l.phaseNow().String()})
	}
	for ctx.Err() == nil {
		res, err := wr.cfg.Store.complete(ctx, wr.claimReq(l), c, wk.failed, nFailed, wr.cfg.MaxFailedKeys)
		if err == nil {
			// A store that lost the warm gets it back with c among the
			// done chunks.
			wr.learn(ctx, l, res)
			return
		}
		wr.storeFailed(ctx, l, "complete", err)
		_ = wr.sleep(ctx, wr.cfg.Interval)
	}
}

// warmKey fetches key (paced, retried) and stores it (retried), unless
// held off. The error is the last attempt's.
// gate is checked before every fetch attempt (see worker.gate).
func (wr *Warmer) warmKey(ctx context.Context, l *local, key string, gate func() bool) error {
	var (
		val    any
		readAt time.Time
		err    error
	)
	backoff := wr.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		h, perr := wr.pace(ctx, l, gate)
		if perr != nil {
			return perr
		}
		start := wr.cfg.clock.Now()
		val, readAt, err = wr.fetch(ctx, l, key, start)
		if wr.cfg.Guard != nil { // the guard counts the call's latency
			if isPanic(err) {
				h.RecordOutcome(origin.Failure, wr.cfg.clock.Now().Sub(start))
			} else {
				h.Record(err, wr.cfg.clock.Now().Sub(start))
			}
		}
		if err == nil || attempt >= wr.cfg.Retries || ctx.Err() != nil || isPanic(err) {
			break
		}
		l.stats.retries.Add(1)
		if err := wr.sleep(ctx, backoff); err != nil {
			return err
		}
		backoff *= 2
	}
	if err != nil {
		return err
	}
	l.stats.fetched.Add(1)
	if wr.holdoff.holds(key, readAt) {
		l.stats.heldOff.Add(1)
		return nil
	}
	backoff = wr.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		err = wr.store(ctx, l, key, val, readAt)
		if err == nil {
			l.stats.stored.Add(1)
			return nil
		}
		if attempt >= wr.cfg.Retries || ctx.Err() != nil || isPanic(err) {
			return err
		}
		l.stats.retries.Add(1)
		if err := wr.sleep(ctx, backoff); err != nil {
			return err
		}
		backoff *= 2
	}
}

// pace waits for the right to make one origin call: through the guard's
// background lane, or a token of the budget. Refusals are waited out
// (their RetryAfter, at most Interval at a time), never given up on.
// With a guard, the Hold must be ended with the call's outcome; with a
// budget it is the zero Hold, whose Record does nothing.
func (wr *Warmer) pace(ctx context.Context, l *local, gate func() bool) (origin.Hold, error) {
	for {
		if !gate() {
			return origin.Hold{}, errLeave
		}
		var wait time.Duration
		if wr.cfg.Guard != nil {
			h, err := wr.cfg.Guard.Reserve(ctx, time.Time{}, origin.Background)
			switch {
			case err != nil:
				wait = wr.cfg.Interval
			case h.Allowed:
				// Background calls are never held (Wait is 0).
				return h, nil
			default:
				wait = h.RetryAfter
			}
		} else {
			// A token in hand first (on a Leased budget, from the lease,
			// with no round trip); else book one up to Interval ahead and
			// wait for it, so that refused workers do not race each other
			// for the refill.
			d, err := wr.cfg.Budget.Take(ctx, limiter.Request{Key: wr.cfg.BudgetKey, N: 1})
			if err == nil && !d.Allowed {
				d, err = wr.cfg.Budget.Take(ctx, limiter.Request{Key: wr.cfg.BudgetKey, N: 1, Wait: wr.cfg.Interval})
				if err == nil && d.Allowed {
					l.stats.refused.Add(1)
					if err := wr.sleep(ctx, d.RetryAfter); err != nil {
						return origin.Hold{}, err // the booked token is spent
					}
					return origin.Hold{}, nil
				}
			}
			switch {
			case err != nil:
				wait = max(d.RetryAfter, wr.cfg.Interval/10)
			case d.Allowed:
				return origin.Hold{}, nil
			default:
				wait = d.RetryAfter
			}
		}
		l.stats.refused.Add(1)
		if err := wr.sleep(ctx, min(max(wait, time.Millisecond), wr.cfg.Interval)); err != nil {
			return origin.Hold{}, err
		}
	}
}

type panicError struct{ v any }

func (e panicError) Error() string { return fmt.Sprintf("panic: %v", e.v) }

func isPanic(err error) bool { _, ok := err.(panicError); return ok }

// fetch calls Fetch, made at before, recovering a panic.
func (wr *Warmer) fetch(ctx context.Context, l *local, key string, before time.Time) (val any, readAt time.Time, err error) {
	defer func() {
		if v := recover(); v != nil {
			l.stats.panics.Add(1)
			err = panicError{v}
		}
	}()
	val, readAt, err = l.w.Fetch(ctx, key)
	if readAt.IsZero() {
		readAt = before
	}
	return val, readAt, err
}

func (wr *Warmer) store(ctx context.Context, l *local, key string, val any, readAt time.Time) (err error) {
	defer func() {
		if v := recover(); v != nil {
			l.stats.panics.Add(1)
			err = panicError{v}
		}
	}()
	return l.w.Store(ctx, key, val, readAt)
}

// sleep waits d on the clock, or until ctx ends.
func (wr *Warmer) sleep(ctx context.Context, d time.Duration) error {
	return sysclock.Sleep(ctx, wr.cfg.clock, d)
}
