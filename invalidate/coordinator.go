package invalidate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Coordinator runs the rollouts of one namespace on one node: it starts
// and controls them, advances them (Run or AdvanceAt), and answers the
// per-client question Due from a short-lived cache of the released-wave
// state. Every node of a fleet has its own Coordinator on a store shared by
// the fleet; any of them may start, control or advance any rollout.
//
// A Coordinator starts no goroutine of its own (Run runs in the caller's),
// holds nothing that needs closing, and is safe for concurrent use.
type Coordinator struct {
	store Store
	cfg   config
	guard Guard
	gen   string // random: written as the store's gen when this node creates its metadata
	log   *slog.Logger
	after func(time.Duration) <-chan time.Time // the clock's After, or nil

	view       atomic.Pointer[view]
	refreshing atomic.Bool // a stale-cache refresh is in flight
	coldMu     sync.Mutex  // guards cold; never held across a store call
	cold       *coldFlight // the first read of the store, while in flight

	mu      sync.Mutex      // serialises view installs; guards lost, lostGen and tried
	lost    []record        // what to re-register after the store lost it
	lostGen uint64          // bumped when lost grows
	tried   map[string]bool // IDs re-registered under the current gen
	restore atomic.Bool     // lost is not empty

	seen       sketch
	seenWindow atomic.Int64
	lastPop    atomic.Int64
	held       atomic.Bool // the last health check failed

	storeStarts bool          // guard.Starts is nil: the store's budget counts guarded starts
	warmup      time.Duration // the hold of a rollout of unknown population; 0 with counting off
	grace       time.Duration // the hold of a rollout re-registered anew
}

// monoBase anchors the monotonic time of the Due cache when no clock is
// injected.
var monoBase = time.Now()

// NewCoordinator returns a coordinator on store. It accepts WithClock,
// WithNode, WithLogger, WithCacheTTL, WithAdvanceInterval, WithHealth,
// WithGuard, WithRetention, WithMaxRollouts, WithPopulationWindow,
// WithPopulationFloor, WithWarmup, WithMaxEpochJump and WithRestoreGrace.
func NewCoordinator(store Store, opts ...Option) (*Coordinator, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: store is nil", ErrInvalidOption)
	}
	cfg, err := buildConfig(forCoordinator, opts)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	c := &Coordinator{store: store, cfg: cfg, gen: hex.EncodeToString(b[:]), log: cfg.logger}
	if c.cfg.node == "" {
		c.cfg.node = "node-" + c.gen[:8]
	}
	if w, ok := cfg.clock.(interface {
		After(time.Duration) <-chan time.Time
	}); ok && cfg.clockSet {
		c.after = w.After
	}
	c.guard = cfg.guard.withDefaults()
	c.storeStarts = c.guard.Starts == nil
	if cfg.window > 0 {
		c.warmup = cfg.warmup
		if c.warmup == 0 {
			c.warmup = max(DefaultWarmup, 2*cfg.every)
		} else if c.warmup < cfg.every {
			return nil, fmt.Errorf("%w: WithWarmup: warm-up %v is shorter than the advance interval %v: no node could have merged its count of clients by then",
				ErrInvalidOption, c.warmup, cfg.every)
		}
	}
	c.grace = cfg.grace
	if !cfg.graceSet {
		c.grace = 3 * cfg.every
		if rs, ok := store.(*RedisStore); ok {
			c.grace += rs.breakerOpen()
		}
	}
	c.seenWindow.Store(-1)
	return c, nil
}

// Node returns this node's name (WithNode).
func (c *Coordinator) Node() string { return c.cfg.node }

// now returns the clock's time.
func (c *Coordinator) now() time.Time {
	if c.cfg.clockSet {
		return c.cfg.clock.Now()
	}
	return time.Now()
}

// tick returns the time of the Due cache in ns: the injected clock's, or the
// monotonic clock's.
func (c *Coordinator) tick() int64 {
	if c.cfg.clockSet {
		return c.cfg.clock.Now().UnixNano()
	}
	return int64(time.Since(monoBase))
}

// stamp is the time passed to the store: explicit when the caller gave one
// or a clock is injected; otherwise the store's own clock (Redis TIME).
func (c *Coordinator) stamp(t time.Time, explicit bool) stamp {
	return stamp{us: t.UnixMicro(), server: !explicit && !c.cfg.clockSet}
}

// Start starts r, or does nothing if a rollout with the same ID and content
// was started before (ErrConflict if the content differs). It returns the
// rollout's status, whose Rollout.Epoch is the epoch it runs under.
//
// A guarded rollout (see Guard) gets the guard's pace, needs at least
// Guard.MinCohorts cohorts, and takes a token from the start budget of
// this node and one from that of its source: when either has none left,
// Start fails with a *StartRefusedError (wrapping ErrStartRefused) that
// says which and when to retry. An explicit Epoch not above the
// namespace's highest fails with ErrEpochBackwards, one too far ahead with
// ErrEpochTooFar (see WithMaxEpochJump). A rollout of unknown population
// (Clients 0) is refused when this coordinator has no way to learn it (no
// population counting, no floor), and otherwise starts with a warm-up (see
// WithWarmup). Every start and refusal is logged with its source.
func (c *Coordinator) Start(ctx context.Context, r Rollout) (Status, error) {
	if err := r.Validate(); err != nil {
		return Status{}, err
	}
	if r.Clients == 0 && c.cfg.window == 0 && c.cfg.popFloor == 0 {
		err := fmt.Errorf("%w: Rollout.Clients is 0 (unknown), and this coordinator neither estimates the population (WithPopulationWindow(0)) nor has a WithPopulationFloor: no pace could be bounded; give Rollout.Clients",
			ErrInvalidRollout)
		c.log.Warn("herdcap: invalidation refused", "id", r.ID, "source", r.Source, "node", c.cfg.node, "err", err)
		return Status{}, err
	}
	tmpl, err := c.guard.pace(&r)
	if err != nil {
		c.log.Warn("herdcap: invalidation refused", "id", r.ID, "source", r.Source, "node", c.cfg.node, "err", err)
		return Status{}, err
	}
	tmpl.pop = max(tmpl.clients, int64(c.cfg.popFloor))
	// Idempotency first, so that a repeated start spends no guard token.
	switch rec, err := c.store.get(ctx, r.ID); {
	case err == nil:
		return c.existing(rec, nil, r)
	case !errors.Is(err, ErrUnknownRollout):
		return Status{}, err
	}
	req := startReq{
		r: r, st: tmpl, now: c.stamp(c.now(), false), floor: c.head(), jump: c.cfg.epochJump,
		max: c.cfg.maxRollouts, retention: c.cfg.retention.Microseconds(), gen: c.gen,
	}
	if r.Clients == 0 {
		req.holdUs = c.warmup.Microseconds()
	}
	if tmpl.guarded {
		// The store checks first (one more round trip, for guarded starts
		// only), so that a start it would refuse spends no token.
		req.dryRun = true
		res, err := c.store.start(ctx, req)
		if err != nil {
			return Status{}, err
		}
		if res.code != startWouldCreate {
			return c.started(res, r)
		}
		if err := c.takeStartTokens(ctx, r); err != nil {
			return Status{}, err
		}
		req.dryRun = false
	}
	res, err := c.store.start(ctx, req)
	if err != nil {
		if tmpl.guarded {
			c.log.Warn("herdcap: invalidation start failed after its guard tokens were taken", "id", r.ID,
				"source", r.Source, "node", c.cfg.node, "err", err)
		}
		return Status{}, err
	}
	return c.started(res, r)
}

// started turns the store's answer to a start into Start's.
func (c *Coordinator) started(res startRes, r Rollout) (Status, error) {
	switch res.code {
	case startExists:
		return c.existing(res.rec, res.err, r)
	case startBackwards:
		return Status{}, fmt.Errorf("%w: Rollout.Epoch %d is not above %d, the namespace's highest", ErrEpochBackwards, r.Epoch, res.seq)
	case startTooFar:
		err := fmt.Errorf("%w: Rollout.Epoch %d is above %d, the highest allowed now (the namespace's highest is %d; WithMaxEpochJump allows %d above the store's clock in ms)",
			ErrEpochTooFar, r.Epoch, res.ceil, res.seq, c.cfg.epochJump)
		c.log.Warn("herdcap: invalidation refused", "id", r.ID, "source", r.Source, "node", c.cfg.node, "err", err)
		return Status{}, err
	case startTooMany:
		return Status{}, fmt.Errorf("%w: the namespace holds %d (WithMaxRollouts); finished ones leave after %v", ErrTooManyRollouts, c.cfg.maxRollouts, c.cfg.retention)
	case startWouldCreate:
		return Status{}, fmt.Errorf("%w: the store answered a start with a dry run's reply", ErrCorrupt)
	}
	st := res.rec.st.status(res.rec.r)
	c.learn(res.rec)
	attrs := []any{"id", r.ID, "scope", truncate(r.Scope, 256), "epoch", st.Rollout.Epoch,
		"source", r.Source, "node", c.cfg.node, "guarded", st.Guarded, "cohorts", r.Cohorts,
		"rate", st.Rate, "min_duration", st.MinDuration, "population", st.Population}
	if !st.HoldUntil.IsZero() {
		attrs = append(attrs, "warm_until", st.HoldUntil)
	}
	c.log.Info("herdcap: invalidation started", append(attrs, "store", c.store.name())...)
	return st, nil
}

// takeStartTokens takes a guarded start's tokens: one under this node's key
// and one under its source's. Both budgets are looked at first (n = 0 takes
// nothing), so that a start refused by one spends nothing from the other.
func (c *Coordinator) takeStartTokens(ctx context.Context, r Rollout) error {
	b := c.guard.Starts
	if c.storeStarts {
		// The store's budget is shared by coordinators that may each have
		// their own clock: it takes this one's (without an injected clock,
		// its own: the system clock, or Redis TIME).
		var clk limiter.Clock
		if c.cfg.clockSet {
			clk = c.cfg.clock
		}
		sb, done, err := c.store.startBudget(clk)
		if err != nil {
			return c.startBudgetFailed(r, err)
		}
		defer done()
		b = sb
	}
	allow := func(key string, n int) (limiter.Decision, error) {
		return b.Take(ctx, limiter.Request{Key: key, N: n})
	}
	keys := [2]string{"node:" + c.cfg.node, "source:" + r.Source}
	var spent [2]bool
	var retry time.Duration
	var lim limiter.Limit
	for i, k := range keys {
		d, err := allow(k, 0)
		if err != nil {
			return c.startBudgetFailed(r, err)
		}
		lim = d.Limit
		if d.Remaining < 1 {
			// Ask for the token to learn how long until it comes; if it has
			// come meanwhile, it is taken, and needed below anyway.
			if d, err = allow(k, 1); err != nil {
				return c.startBudgetFailed(r, err)
			}
			if d.Allowed {
				keys[i] = "" // taken
				continue
			}
			spent[i], retry = true, max(retry, d.RetryAfter)
		}
	}
	if !spent[0] && !spent[1] {
		for i, k := range keys {
			if k == "" {
				continue
			}
			d, err := allow(k, 1)
			if err != nil {
				return c.startBudgetFailed(r, err)
			}
			if !d.Allowed { // taken by a concurrent start since the look
				spent[i], retry, lim = true, max(retry, d.RetryAfter), d.Limit
				break
			}
		}
	}
	if !spent[0] && !spent[1] {
		return nil
	}
	e := &StartRefusedError{Source: r.Source, Node: c.cfg.node, NodeSpent: spent[0], SourceSpent: spent[1], RetryAfter: retry, Limit: lim}
	c.log.Warn("herdcap: invalidation refused by the guard", "id", r.ID, "scope", truncate(r.Scope, 256),
		"source", r.Source, "node", c.cfg.node, "source_spent", e.SourceSpent, "node_spent", e.NodeSpent,
		"retry_after", e.RetryAfter, "limit", lim.String())
	return e
}

func (c *Coordinator) startBudgetFailed(r Rollout, err error) error {
	c.log.Warn("herdcap: invalidation refused: guard start budget failed", "id", r.ID, "source", r.Source, "node", c.cfg.node, "err", err)
	return fmt.Errorf("invalidate: guard start budget for node %q, source %q: %w", c.cfg.node, r.Source, err)
}

// existing answers a start whose ID is taken.
func (c *Coordinator) existing(rec record, decodeErr error, r Rollout) (Status, error) {
	if decodeErr != nil {
		return Status{}, decodeErr
	}
	if r.Epoch != 0 && r.Epoch == rec.st.epoch {
		r.Epoch = rec.r.Epoch // the epoch the store assigned, passed back: the same request
	}
	if !sameContent(rec.r, r) {
		c.log.Warn("herdcap: invalidation refused: ID taken", "id", r.ID, "source", r.Source, "node", c.cfg.node, "first_source", rec.r.Source)
		return Status{}, fmt.Errorf("%w: rollout %q was started by %q with scope %q, %d cohorts, rate %v",
			ErrConflict, r.ID, rec.r.Source, truncate(rec.r.Scope, 64), rec.r.Cohorts, rec.r.Rate)
	}
	c.log.Debug("herdcap: invalidation already started", "id", r.ID, "source", r.Source, "node", c.cfg.node)
	return rec.st.status(rec.r), nil
}

// Status returns the stored status of rollout id, or ErrUnknownRollout. It
// reads the store (one round trip), not the Due cache.
func (c *Coordinator) Status(ctx context.Context, id string) (Status, error) {
	if err := checkID(id); err != nil {
		return Status{}, err
	}
	rec, err := c.store.get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	return rec.st.status(rec.r), nil
}

// Rollouts returns the status of every rollout the namespace holds, in
// epoch order (one round trip).
func (c *Coordinator) Rollouts(ctx context.Context) ([]Status, error) {
	s, err := c.store.snapshot(ctx, version{ver: 1<<64 - 1, gen: "\x00"}) // a version no store has
	if err != nil {
		return nil, err
	}
	sortRecords(s.recs)
	out := make([]Status, len(s.recs))
	for i := range s.recs {
		out[i] = s.recs[i].st.status(s.recs[i].r)
	}
	return out, nil
}

// By says who asks for a Pause, Resume or Abort, and why: both are logged
// with the action (the incident's lesson: every change that can spread must
// say where it came from). The zero value means this node, no reason.
type By struct {
	// Source names who asked: an operator, a tool, a node; at most
	// MaxSourceLen bytes. Empty means this node (WithNode).
	Source string
	// Reason says why, at most MaxReasonLen bytes; may be empty.
	Reason string
}

// MaxReasonLen is the longest By.Reason, in bytes.
const MaxReasonLen = 1024

func (b By) check() error {
	switch {
	case len(b.Source) > MaxSourceLen:
		return fmt.Errorf("%w: By.Source must be at most %d bytes, got %d", ErrInvalidControl, MaxSourceLen, len(b.Source))
	case len(b.Reason) > MaxReasonLen:
		return fmt.Errorf("%w: By.Reason must be at most %d bytes, got %d", ErrInvalidControl, MaxReasonLen, len(b.Reason))
	}
	return nil
}

// Pause stops releasing cohorts of rollout id, fleet-wide, from the moment
// the store records it; the paused time does not count toward progress.
// Pausing a paused rollout does nothing; a finished one fails with
// ErrFinished, an unknown one with ErrUnknownRollout. Logged with this
// node's name as source; PauseBy says who asked.
func (c *Coordinator) Pause(ctx context.Context, id string) error {
	return c.control(ctx, id, actPause, By{})
}

// PauseBy is Pause on behalf of by, which is logged with it.
func (c *Coordinator) PauseBy(ctx context.Context, id string, by By) error {
	return c.control(ctx, id, actPause, by)
}

// Resume lets a paused rollout continue, counting progress from now.
// Resuming a running rollout does nothing; see Pause for errors.
func (c *Coordinator) Resume(ctx context.Context, id string) error {
	return c.control(ctx, id, actResume, By{})
}

// ResumeBy is Resume on behalf of by, which is logged with it.
func (c *Coordinator) ResumeBy(ctx context.Context, id string, by By) error {
	return c.control(ctx, id, actResume, by)
}

// Abort stops rollout id for good: no further cohort is ever released.
// Clients of the cohorts released before the abort are still told (they
// may have been already); clients of the others never are. It takes effect
// in the store at once, in this node's Due answers at once, and in other
// nodes' within their cache TTL or next advance, whichever is sooner.
// Aborting an aborted rollout does nothing; a done one fails with
// ErrFinished. Logged with this node's name as source; AbortBy says who
// asked.
func (c *Coordinator) Abort(ctx context.Context, id string) error {
	return c.control(ctx, id, actAbort, By{})
}

// AbortBy is Abort on behalf of by, which is logged with it.
func (c *Coordinator) AbortBy(ctx context.Context, id string, by By) error {
	return c.control(ctx, id, actAbort, by)
}

func (c *Coordinator) control(ctx context.Context, id string, act action, by By) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := by.check(); err != nil {
		return err
	}
	source := by.Source
	if source == "" {
		source = c.cfg.node
	}
	rec, changed, err := c.store.control(ctx, id, act, c.stamp(c.now(), false), c.gen)
	if err != nil && !errors.Is(err, ErrFinished) {
		c.log.Warn("herdcap: invalidation "+act.String()+" failed", "id", id, "source", source, "node", c.cfg.node, "reason", by.Reason, "err", err)
		return err
	}
	c.learn(rec)
	if err != nil {
		c.log.Warn("herdcap: invalidation "+act.String()+" refused: finished", "id", id, "source", source, "node", c.cfg.node,
			"reason", by.Reason, "phase", rec.st.phase.String())
		return fmt.Errorf("%w: rollout %q is %v", err, id, rec.st.phase)
	}
	c.log.Info("herdcap: invalidation "+act.String(), "id", id, "source", source, "node", c.cfg.node, "reason", by.Reason, "changed", changed,
		"phase", rec.st.phase.String(), "released", rec.st.released, "cohorts", rec.st.cohorts, "epoch", rec.st.epoch)
	return nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: rollout ID must be 1 to %d bytes, got %d", ErrUnknownRollout, MaxIDLen, len(id))
	}
	return nil
}

// AdvanceAt advances every running rollout to time t: in one store call it
// releases the cohorts the pace allows (never faster than the budget, never
// more than one wave at once), merges this node's population sketch,
// purges expired rollouts and refreshes this node's Due cache. While the
// health input (WithHealth) reports trouble, it holds the rollouts instead.
// If the store lost its data, the rollouts this node knew are re-registered
// first. Any number of nodes may advance; the store keeps it atomic.
func (c *Coordinator) AdvanceAt(ctx context.Context, t time.Time) error {
	return c.advance(ctx, t, true)
}

func (c *Coordinator) advance(ctx context.Context, t time.Time, explicit bool) error {
	now := c.stamp(t, explicit)
	if c.restore.Load() {
		c.restoreLost(ctx, now)
	}
	var hold int64
	if h := c.cfg.health; h != nil {
		if !h.Healthy(ctx) {
			hold = c.cfg.every.Microseconds()
			if !c.held.Swap(true) {
				c.log.Warn("herdcap: invalidation rollouts held: origin unhealthy", "node", c.cfg.node)
			}
		} else if c.held.Swap(false) {
			c.log.Info("herdcap: invalidation rollouts released from hold: origin healthy", "node", c.cfg.node)
		}
	}
	win := int64(-1)
	var sk []byte
	if c.cfg.window > 0 {
		win = t.UnixNano() / int64(c.cfg.window)
		if old := c.seenWindow.Swap(win); old != win && old >= 0 {
			c.seen.reset()
		}
		if c.seen.dirty.Swap(false) {
			var r [hllRegisters]uint8
			c.seen.registers(&r)
			sk = encodeDense(&r)
		}
	}
	var known version
	if v := c.view.Load(); v != nil {
		known = v.ver
	}
	res, err := c.store.advance(ctx, advanceReq{
		now: now, holdUs: hold, waveUs: c.cfg.every.Microseconds(), retention: c.cfg.retention.Microseconds(),
		window: win, windowTTL: (2*c.cfg.window + c.cfg.every).Milliseconds(), sketch: sk, known: known, gen: c.gen,
	})
	if err != nil {
		if sk != nil {
			c.seen.dirty.Store(true)
		}
		return err
	}
	c.install(res.snap, c.tick())
	if c.restore.Load() {
		// The store lost rollouts this node knows: re-register them now,
		// not an advance later, so that an abort this node knows reaches
		// the store within the grace of a re-registration by a node that
		// knew less (see WithRestoreGrace).
		c.restoreLost(ctx, now)
	}
	// A population that dropped below what this node alone has seen means
	// the store lost its sketch: send ours again.
	if prev := c.lastPop.Swap(res.pop); win >= 0 && res.pop < prev {
		if local := c.seen.estimate(); res.pop < local*9/10 {
			c.seen.dirty.Store(true)
		}
	}
	return nil
}

// Run advances the rollouts every advance interval (WithAdvanceInterval)
// until ctx is done, and returns ctx.Err(). It waits on the injected
// clock's After when it has one, so a virtual clock drives it; otherwise on
// real timers. Failed advances are logged and retried at the next tick.
// Run one loop per node: progress does not depend on which nodes run.
func (c *Coordinator) Run(ctx context.Context) error {
	for {
		if err := c.advance(ctx, c.now(), false); err != nil && ctx.Err() == nil {
			c.log.Warn("herdcap: invalidation advance failed", "node", c.cfg.node, "store", c.store.name(), "err", err)
		}
		if c.after != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.after(c.cfg.every):
			}
			continue
		}
		tm := time.NewTimer(c.cfg.every)
		select {
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-tm.C:
		}
	}
}

// restoreLost re-registers what this node knew after the store lost it.
func (c *Coordinator) restoreLost(ctx context.Context, now stamp) {
	c.mu.Lock()
	lost, gen := c.lost, c.lostGen
	c.mu.Unlock()
	n, err := c.store.restore(ctx, lost, now, c.grace.Microseconds(), c.gen)
	if err != nil {
		c.log.Warn("herdcap: invalidation re-register failed", "node", c.cfg.node, "rollouts", len(lost), "err", err)
		return
	}
	c.mu.Lock()
	if c.lostGen == gen {
		c.lost = nil
		c.restore.Store(false)
	}
	c.mu.Unlock()
	c.log.Warn("herdcap: invalidation store lost its rollouts; re-registered the ones this node knew",
		"node", c.cfg.node, "known", len(lost), "written", n)
}

// head returns the highest epoch this node knows.
func (c *Coordinator) head() uint64 {
	if v := c.view.Load(); v != nil {
		return v.head
	}
	return 0
}

func sortRecords(recs []record) {
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].st.epoch != recs[j].st.epoch {
			return recs[i].st.epoch < recs[j].st.epoch
		}
		return recs[i].r.ID < recs[j].r.ID
	})
}
