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

	"github.com/herdcap/herdcap/internal/pace"
	"github.com/herdcap/herdcap/limiter"
)

// Coordinator runs the rollouts of one namespace on one node: it starts
// them (Start), pauses, resumes and aborts them on behalf of whoever asks
// (By), advances them (Run, or Advance at the clock's time), and answers
// the per-client question AppendDue from a short-lived cache of the
// released-wave state. Every node of a fleet has its own Coordinator on a
// store shared by the fleet (one RedisStore each on the same Redis and
// namespace, or one MemoryStore in a process); any of them may start,
// control or advance any rollout, and the store makes each of those one
// atomic operation.
//
// Every time it uses comes from Config.Clock (nil: the system clock), and
// Run waits on the clock's timers, so a fleet runs in virtual time when
// given a virtual clock. Errors wrap the package's sentinels: the store
// being unreachable is ErrUnavailable (AppendDue then answers from the
// last state read), a refused guarded start a *StartRefusedError.
//
// A Coordinator starts no goroutine of its own (Run runs in the caller's),
// holds nothing that needs closing, and is safe for concurrent use.
type Coordinator struct {
	store Store
	cfg   settings
	guard Guard
	gen   string // random: written as the store's gen when this node creates its metadata
	log   *slog.Logger

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
	held       atomic.Bool  // the last health check failed
	room       *pace.Reader // nil without Config.Headroom

	storeStarts bool // guard.Starts is nil: the store's budget counts guarded starts

	obs observer // Config.Observe's rollout events
}

// monoBase anchors the monotonic time of the Due cache when no clock is
// injected.
var monoBase = time.Now()

// NewCoordinator returns a coordinator of the rollouts in s, configured by
// cfg (the zero Config is the default configuration). A bad field of cfg,
// or a nil s, is an error wrapping ErrInvalidConfig that names it.
func NewCoordinator(s Store, cfg Config) (*Coordinator, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: NewCoordinator's store is nil", ErrInvalidConfig)
	}
	st, err := cfg.resolve(s)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	c := &Coordinator{store: s, cfg: st, gen: hex.EncodeToString(b[:]), log: st.log}
	c.guard = st.guard
	c.storeStarts = c.guard.Starts == nil
	if rs, ok := s.(*RedisStore); ok && cfg.Logger != nil {
		rs.attachLogger(cfg.Logger)
	}
	if cfg.Observe != nil {
		c.obs.on = cfg.Observe.Rollout
		if rs, ok := s.(*RedisStore); ok {
			rs.guard.Attach(rs.r.Name, cfg.Observe.Breaker)
		}
	}
	c.seenWindow.Store(-1)
	if st.headroom != nil {
		c.room = &pace.Reader{H: st.headroom, Per: st.perClient, Log: st.log, What: "invalidation", Attrs: []any{"node", st.node}}
	}
	return c, nil
}

// Node returns this node's name (Config.Node, or the random name it was
// given).
func (c *Coordinator) Node() string { return c.cfg.node }

// now returns the clock's time.
func (c *Coordinator) now() time.Time { return c.cfg.clock.Now() }

// tick returns the time of the Due cache in ns: the injected clock's, or the
// monotonic clock's.
func (c *Coordinator) tick() int64 {
	if c.cfg.injected {
		return c.cfg.clock.Now().UnixNano()
	}
	return int64(time.Since(monoBase))
}

// stamp is the time passed to the store for t, a reading of the clock: t
// itself when a clock is injected; otherwise the store's own clock (Redis
// TIME; the memory store uses t).
func (c *Coordinator) stamp(t time.Time) stamp {
	return stamp{us: t.UnixMicro(), server: !c.cfg.injected}
}

// Start starts r, or does nothing if a rollout with the same ID and content
// was started before (ErrConflict if the content differs). It returns the
// rollout's status, whose Rollout.Epoch is the epoch it runs under.
//
// A guarded rollout (see Guard) gets the guard's pace, needs at least
// Guard.MinCohorts cohorts, and takes a token from the start budget of
// this node and one from that of its requester (Rollout.By): when either
// has none left, Start fails with a *StartRefusedError (wrapping
// ErrStartRefused) that says which and when to retry. An explicit Epoch
// not above the namespace's highest fails with ErrEpochBackwards, one too
// far ahead with ErrEpochTooFar (see Config.MaxEpochJump). A rollout of
// unknown population (Clients 0) is refused when this coordinator has no
// way to learn it (no population counting, no floor), and otherwise starts
// with a warm-up (Config.PopulationWarmup). Every start and refusal is
// logged with who asked ("by").
func (c *Coordinator) Start(ctx context.Context, r Rollout) (Status, error) {
	if err := r.Validate(); err != nil {
		return Status{}, err
	}
	if r.Clients == 0 && c.cfg.window == 0 && c.cfg.popFloor == 0 {
		err := fmt.Errorf("%w: Rollout.Clients is 0 (unknown), and this coordinator neither estimates the population (Config.PopulationWindow is negative) nor has a Config.PopulationFloor: no pace could be bounded; give Rollout.Clients",
			ErrInvalidRollout)
		c.log.Warn("herdcap: invalidation refused", "id", r.ID, "by", r.By, "node", c.cfg.node, "err", err)
		return Status{}, err
	}
	tmpl, err := c.guard.pace(&r)
	if err != nil {
		c.log.Warn("herdcap: invalidation refused", "id", r.ID, "by", r.By, "node", c.cfg.node, "err", err)
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
		r: r, st: tmpl, now: c.stamp(c.now()), floor: c.head(), jump: c.cfg.epochJump,
		max: c.cfg.maxRollouts, retention: c.cfg.retention.Microseconds(), gen: c.gen,
	}
	if r.Clients == 0 {
		req.holdUs = c.cfg.warmup.Microseconds()
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
				"by", r.By, "node", c.cfg.node, "err", err)
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
		err := fmt.Errorf("%w: Rollout.Epoch %d is above %d, the highest allowed now (the namespace's highest is %d; Config.MaxEpochJump allows %d above the store's clock in ms)",
			ErrEpochTooFar, r.Epoch, res.ceil, res.seq, c.cfg.epochJump)
		c.log.Warn("herdcap: invalidation refused", "id", r.ID, "by", r.By, "node", c.cfg.node, "err", err)
		return Status{}, err
	case startTooMany:
		return Status{}, fmt.Errorf("%w: the namespace holds %d (Config.MaxRollouts); finished ones leave after %v", ErrTooManyRollouts, c.cfg.maxRollouts, c.cfg.retention)
	case startWouldCreate:
		return Status{}, fmt.Errorf("%w: the store answered a start with a dry run's reply", ErrCorrupt)
	}
	st := res.rec.st.status(res.rec.r)
	c.learn(res.rec)
	c.obs.report(c.view.Load(), "")
	attrs := []any{"id", r.ID, "scope", truncate(r.Scope, 256), "epoch", st.Rollout.Epoch,
		"by", r.By, "node", c.cfg.node, "guarded", st.Guarded, "cohorts", r.Cohorts,
		"rate", st.Rate, "min_duration", st.MinDuration, "population", st.Population}
	if !st.HoldUntil.IsZero() {
		attrs = append(attrs, "warm_until", st.HoldUntil)
	}
	c.log.Info("herdcap: invalidation started", append(attrs, "store", c.store.name())...)
	return st, nil
}

// takeStartTokens takes a guarded start's tokens: one under this node's key
// and one under its requester's. Both budgets are looked at first (n = 0 takes
// nothing), so that a start refused by one spends nothing from the other.
func (c *Coordinator) takeStartTokens(ctx context.Context, r Rollout) error {
	b := c.guard.Starts
	if c.storeStarts {
		// The store's budget is shared by coordinators that may each have
		// their own clock: it takes this one's (without an injected clock,
		// its own: the system clock, or Redis TIME).
		var clk limiter.Clock
		if c.cfg.injected {
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
	keys := [2]string{"node:" + c.cfg.node, "by:" + r.By}
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
	e := &StartRefusedError{By: r.By, Node: c.cfg.node, NodeSpent: spent[0], BySpent: spent[1], RetryAfter: retry, Limit: lim}
	c.log.Warn("herdcap: invalidation refused by the guard", "id", r.ID, "scope", truncate(r.Scope, 256),
		"by", r.By, "node", c.cfg.node, "by_spent", e.BySpent, "node_spent", e.NodeSpent,
		"retry_after", e.RetryAfter, "limit", lim.String())
	return e
}

func (c *Coordinator) startBudgetFailed(r Rollout, err error) error {
	c.log.Warn("herdcap: invalidation refused: guard start budget failed", "id", r.ID, "by", r.By, "node", c.cfg.node, "err", err)
	return fmt.Errorf("invalidate: guard start budget for node %q, by %q: %w", c.cfg.node, r.By, err)
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
		c.log.Warn("herdcap: invalidation refused: ID taken", "id", r.ID, "by", r.By, "node", c.cfg.node, "first_by", rec.r.By)
		return Status{}, fmt.Errorf("%w: rollout %q was started by %q with scope %q, %d cohorts, rate %v",
			ErrConflict, r.ID, rec.r.By, truncate(rec.r.Scope, 64), rec.r.Cohorts, rec.r.Rate)
	}
	c.log.Debug("herdcap: invalidation already started", "id", r.ID, "by", r.By, "node", c.cfg.node)
	return rec.st.status(rec.r), nil
}

// Status returns the stored status of rollout id, or ErrUnknownRollout. It
// reads the store (one round trip), not AppendDue's cache.
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
// with the action (the incident's lesson: every change that can spread
// must say where it came from). The zero value means this node
// (Config.Node), no reason.
type By struct {
	// Who names who asked: an operator, a tool, a node; at most 256 bytes.
	// Empty means this node.
	Who string
	// Reason says why, at most 1024 bytes; may be empty.
	Reason string
}

// maxReasonLen is the longest By.Reason, in bytes.
const maxReasonLen = 1024

func (b By) check() error {
	switch {
	case len(b.Who) > maxByLen:
		return fmt.Errorf("%w: By.Who must be at most %d bytes, got %d", ErrInvalidArgument, maxByLen, len(b.Who))
	case len(b.Reason) > maxReasonLen:
		return fmt.Errorf("%w: By.Reason must be at most %d bytes, got %d", ErrInvalidArgument, maxReasonLen, len(b.Reason))
	}
	return nil
}

// Pause stops releasing cohorts of rollout id, fleet-wide, from the moment
// the store records it, on behalf of by (logged with the action); the
// paused time does not count toward progress. Pausing a paused rollout
// does nothing; a finished one fails with ErrFinished, an unknown one with
// ErrUnknownRollout, a By out of range with ErrInvalidArgument.
func (c *Coordinator) Pause(ctx context.Context, id string, by By) error {
	return c.control(ctx, id, actPause, by)
}

// Resume lets a paused rollout continue, counting progress from now, on
// behalf of by. Resuming a running rollout does nothing; see Pause for
// errors.
func (c *Coordinator) Resume(ctx context.Context, id string, by By) error {
	return c.control(ctx, id, actResume, by)
}

// Abort stops rollout id for good, on behalf of by: no further cohort is
// ever released. Clients of the cohorts released before the abort are
// still told (they may have been already); clients of the others never
// are. It takes effect in the store at once, in this node's AppendDue
// answers at once, and in other nodes' within their cache TTL or next
// advance, whichever is sooner. Aborting an aborted rollout does nothing;
// a done one fails with ErrFinished; see Pause for other errors.
func (c *Coordinator) Abort(ctx context.Context, id string, by By) error {
	return c.control(ctx, id, actAbort, by)
}

func (c *Coordinator) control(ctx context.Context, id string, act action, by By) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := by.check(); err != nil {
		return err
	}
	who := by.Who
	if who == "" {
		who = c.cfg.node
	}
	rec, changed, err := c.store.control(ctx, id, act, c.stamp(c.now()), c.gen)
	if err != nil && !errors.Is(err, ErrFinished) {
		c.log.Warn("herdcap: invalidation "+act.String()+" failed", "id", id, "by", who, "node", c.cfg.node, "reason", by.Reason, "err", err)
		return err
	}
	c.learn(rec)
	c.obs.report(c.view.Load(), by.Reason)
	if err != nil {
		c.log.Warn("herdcap: invalidation "+act.String()+" refused: finished", "id", id, "by", who, "node", c.cfg.node,
			"reason", by.Reason, "phase", rec.st.phase.String())
		return fmt.Errorf("%w: rollout %q is %v", err, id, rec.st.phase)
	}
	c.log.Info("herdcap: invalidation "+act.String(), "id", id, "by", who, "node", c.cfg.node, "reason", by.Reason, "changed", changed,
		"phase", rec.st.phase.String(), "released", rec.st.released, "cohorts", rec.st.cohorts, "epoch", rec.st.epoch)
	return nil
}

func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: rollout ID must be 1 to %d bytes, got %d", ErrUnknownRollout, maxIDLen, len(id))
	}
	return nil
}

// Advance advances every running rollout to the clock's time: in one store
// call it releases the cohorts the pace allows (never faster than the
// budget, never more than one wave at once), merges this node's population
// sketch, purges expired rollouts and refreshes this node's AppendDue
// cache. While the health input (Config.Health) reports trouble, it holds
// the rollouts instead. If the store lost its data, the rollouts this node
// knew are re-registered first. Any number of nodes may advance; the store
// keeps it atomic. Run calls it every advance interval; call it directly
// to drive a coordinator on a virtual clock.
func (c *Coordinator) Advance(ctx context.Context) error {
	return c.advance(ctx, c.now())
}

func (c *Coordinator) advance(ctx context.Context, t time.Time) error {
	now := c.stamp(t)
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
	p := pace.None
	if c.room != nil {
		p = c.room.Read()
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
		now: now, holdUs: hold, waveUs: c.cfg.every.Microseconds(), pace: p, retention: c.cfg.retention.Microseconds(),
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
		// knew less (see Config.RestoreGrace).
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

// Run advances the rollouts (Advance) every Config.AdvanceInterval until
// ctx is done, and returns ctx.Err(). It waits on Config.Clock's timers, so
// a virtual clock drives it. Failed advances are logged and retried at the
// next tick. Run one loop per node: progress does not depend on which
// nodes run.
func (c *Coordinator) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	ring := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	for {
		if err := c.advance(ctx, c.now()); err != nil && ctx.Err() == nil {
			c.log.Warn("herdcap: invalidation advance failed", "node", c.cfg.node, "store", c.store.name(), "err", err)
		}
		tm := c.cfg.clock.AfterFunc(c.cfg.every, ring)
		select {
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-wake:
		}
	}
}

// restoreLost re-registers what this node knew after the store lost it.
func (c *Coordinator) restoreLost(ctx context.Context, now stamp) {
	c.mu.Lock()
	lost, gen := c.lost, c.lostGen
	c.mu.Unlock()
	n, err := c.store.restore(ctx, lost, now, c.cfg.grace.Microseconds(), c.gen)
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
