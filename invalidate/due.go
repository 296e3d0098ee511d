package invalidate

import (
	"context"
	"errors"
	"math"
	"sync/atomic"

	"github.com/herdcap/herdcap/limiter"
)

// view is a node's cached released-wave state: immutable but for fetched.
type view struct {
	ver     version
	recs    []record // by epoch
	items   []item   // recs[i] as Due reads it
	head    uint64   // the highest epoch
	fetched atomic.Int64
}

// item is what Due needs of one rollout.
type item struct {
	id, scope string
	epoch     uint64
	cohorts   int
	released  int
	aborted   bool
}

func newView(recs []record, ver version, fetched int64) *view {
	sortRecords(recs)
	v := &view{ver: ver, recs: recs, items: make([]item, len(recs))}
	for i := range recs {
		r := &recs[i]
		v.items[i] = item{id: r.r.ID, scope: r.r.Scope, epoch: r.st.epoch, cohorts: r.st.cohorts,
			released: r.st.released, aborted: r.st.phase == Aborted}
		v.head = max(v.head, r.st.epoch)
	}
	v.fetched.Store(fetched)
	return v
}

// errEmptyClient is preallocated: AppendDue is a hot path.
var errEmptyClient error = wrapped{msg: "invalidate: invalid argument: the client ID is empty", err: ErrInvalidArgument}

// wrapped is an error with a fixed message that wraps a sentinel.
type wrapped struct {
	msg string
	err error
}

func (w wrapped) Error() string { return w.msg }
func (w wrapped) Unwrap() error { return w.err }

// AppendDue appends to dst the notices client clientID must apply now,
// given applied, the highest epoch it has applied (0 for none), and
// returns the extended slice. It is the per-request hot path: from the
// cache it makes no store call and, when dst has room, allocates nothing
// (pass nil to have it allocate). An empty clientID is ErrInvalidArgument.
//
// The notices are those of the rollouts with an epoch above applied, in
// epoch order, whose cohort for this client is released, up to the first
// rollout that is still pending for it: a later rollout is never delivered
// before an earlier one, so after applying every notice the client records
// the highest Epoch among them, and never misses one. Rollouts aborted
// before this client's cohort was released are skipped (the client is
// never told of them); finished rollouts are answered until they leave the
// store (Config.Retention).
//
// The answer comes from the released-wave state this node read within the
// cache TTL (Config.CacheTTL); when it is older, AppendDue reads the store
// once (one round trip) first. Concurrent callers do not queue behind that
// read: they answer from the older state. If the store cannot be read,
// AppendDue answers from the last state read; with none, it fails with
// ErrUnavailable (or the context's error). AppendDue also records clientID
// in this node's population sketch (see Config.PopulationWindow).
func (c *Coordinator) AppendDue(ctx context.Context, dst []Notice, clientID string, applied uint64) ([]Notice, error) {
	if clientID == "" {
		return dst, errEmptyClient
	}
	if c.cfg.window > 0 {
		c.seen.add(clientID)
	}
	v, err := c.current(ctx)
	if err != nil {
		return dst, err
	}
	return v.appendDue(dst, clientID, applied), nil
}

// Head returns the highest epoch of the rollouts the namespace holds, from
// the cache as AppendDue reads it (0 when there are none). A client that starts
// with an empty cache may record it as applied.
func (c *Coordinator) Head(ctx context.Context) (uint64, error) {
	v, err := c.current(ctx)
	if err != nil {
		return 0, err
	}
	return v.head, nil
}

func (v *view) appendDue(dst []Notice, clientID string, applied uint64) []Notice {
	items := v.items
	lo, hi := 0, len(items)
	for lo < hi { // the first item with an epoch above applied
		m := int(uint(lo+hi) >> 1)
		if items[m].epoch <= applied {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo; i < len(items); i++ {
		it := &items[i]
		if it.released >= it.cohorts ||
			(it.released > 0 && limiter.Cohort(it.id, clientID, it.cohorts) < it.released) {
			dst = append(dst, Notice{RolloutID: it.id, Scope: it.scope, Epoch: it.epoch})
			continue
		}
		if !it.aborted {
			break // pending for this client: later rollouts wait behind it
		}
	}
	return dst
}

// current returns the cached view, reading the store first when it is
// older than the TTL.
func (c *Coordinator) current(ctx context.Context) (*view, error) {
	v := c.view.Load()
	now := c.tick()
	if v != nil && now-v.fetched.Load() < int64(c.cfg.cacheTTL) {
		return v, nil
	}
	if v == nil {
		if v, err := c.coldRead(ctx, now); v != nil || err != nil {
			return v, err
		}
		// A view appeared meanwhile (this node started or controlled a
		// rollout): refresh it as any stale one.
		if v = c.view.Load(); now-v.fetched.Load() < int64(c.cfg.cacheTTL) {
			return v, nil
		}
	}
	if !c.refreshing.CompareAndSwap(false, true) {
		return v, nil // another caller is reading the store
	}
	defer c.refreshing.Store(false)
	s, err := c.store.snapshot(ctx, v.ver)
	if err != nil {
		v.fetched.Store(now) // answer from what we know; retry after the TTL
		c.log.Debug("herdcap: invalidation state read failed; answering from the last one", "node", c.cfg.node, "err", err)
		return v, nil
	}
	return c.install(s, now), nil
}

// coldFlight is the first read of the store, shared by the callers that
// arrive while it is in flight. v and err are written before done is
// closed.
type coldFlight struct {
	done chan struct{}
	v    *view
	err  error
}

// coldRead makes the first read of the store, single-flight: one caller
// reads, the others wait for its answer (or their context). No lock is held
// across the read or the install (which may log: a slog handler is user
// code). It returns (nil, nil) when a view appeared without a read.
func (c *Coordinator) coldRead(ctx context.Context, now int64) (*view, error) {
	for {
		c.coldMu.Lock()
		if c.view.Load() != nil {
			c.coldMu.Unlock()
			return nil, nil
		}
		f, leader := c.cold, false
		if f == nil {
			f, leader = &coldFlight{done: make(chan struct{})}, true
			c.cold = f
		}
		c.coldMu.Unlock()
		if leader {
			s, err := c.store.snapshot(ctx, version{})
			if err == nil {
				f.v = c.install(s, now)
			} else {
				f.err = err
			}
			c.coldMu.Lock()
			c.cold = nil
			c.coldMu.Unlock()
			close(f.done)
			return f.v, f.err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.done:
		}
		if f.err == nil {
			return f.v, nil
		}
		if ctx.Err() == nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) &&
			!errors.Is(f.err, ErrUnavailable) {
			continue // the reader's own context ended, not ours: read again
		}
		return nil, f.err
	}
}

// install makes s the cached view, and returns the view now in force.
//
// It also notices when the store lost rollouts this node knows: all of
// them, when the store's gen changed (Redis restarted empty, or was
// written again since); or an unfinished one that is gone or no longer
// decodes (only finished rollouts are purged). Those are re-registered at
// the next advance, and until then Due keeps answering from this node's
// copy merged with the store's.
func (c *Coordinator) install(s snapshot, now int64) *view {
	if s.corrupt > 0 {
		c.log.Warn("herdcap: invalidation store holds records that do not decode; skipped", "node", c.cfg.node, "count", s.corrupt)
	}
	nv, lost, reset := c.installLocked(s, now)
	if lost > 0 { // logged outside the lock: a slog handler is user code
		c.log.Warn("herdcap: invalidation store lost rollouts this node knows; answering from its copy until they are re-registered",
			"node", c.cfg.node, "lost", lost, "store_reset", reset, "store_has", len(s.recs))
	}
	c.obs.report(nv, "")
	return nv
}

func (c *Coordinator) installLocked(s snapshot, now int64) (nv *view, nlost int, reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.view.Load()
	switch {
	case old == nil:
		if !s.changed {
			s.recs = nil
		}
		nv := newView(s.recs, s.ver, now)
		c.view.Store(nv)
		return nv, 0, false
	case !s.changed:
		old.fetched.Store(now)
		return old, 0, false
	case s.ver.gen == old.ver.gen && s.ver.ver < old.ver.ver:
		old.fetched.Store(now) // an older reply overtaken by a newer one
		return old, 0, false
	}
	reset = old.ver.gen != "" && s.ver.gen != old.ver.gen
	if reset || c.tried == nil {
		c.tried = map[string]bool{}
	}
	for _, r := range s.recs {
		delete(c.tried, r.r.ID)
	}
	var lost []record
	if reset {
		lost = old.recs
	} else {
		lost = unfinishedMissing(old.recs, s.recs, c.tried)
	}
	if len(lost) > 0 {
		for _, r := range lost {
			c.tried[r.r.ID] = true
		}
		c.lost = mergeRecords(c.lost, lost)
		c.lostGen++
		c.restore.Store(true)
	}
	recs := s.recs
	if c.restore.Load() {
		recs = mergeRecords(recs, c.lost)
	}
	nv = newView(recs, s.ver, now)
	c.view.Store(nv)
	return nv, len(lost), reset
}

// unfinishedMissing returns the unfinished rollouts of known that fresh
// lacks and that were not already re-registered once (tried): a finished
// rollout may have been purged, an unfinished one never is.
func unfinishedMissing(known, fresh []record, tried map[string]bool) []record {
	have := make(map[string]bool, len(fresh))
	for _, r := range fresh {
		have[r.r.ID] = true
	}
	var out []record
	for _, k := range known {
		if !k.st.phase.Finished() && !tried[k.r.ID] && !have[k.r.ID] {
			out = append(out, k)
		}
	}
	return out
}

// learn puts a record this node just wrote (start, pause, resume, abort)
// into its view at once, so that its own Due answers and its restore
// knowledge never lag its own actions.
func (c *Coordinator) learn(rec record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.view.Load()
	var recs []record
	ver, fetched := version{}, int64(staleTick) // a first view is read again by the next Due
	if old != nil {
		ver, fetched = old.ver, old.fetched.Load()
		recs = make([]record, 0, len(old.recs)+1)
		for _, r := range old.recs {
			if r.r.ID != rec.r.ID {
				recs = append(recs, r)
			}
		}
	}
	c.view.Store(newView(append(recs, rec), ver, fetched))
}

// staleTick is a fetched time older than any TTL, without overflow.
const staleTick = math.MinInt64 / 2

// mergeRecords returns the union of a and b: for a rollout in both (same
// content and epoch), the released count only grows and an abort is kept.
func mergeRecords(a, b []record) []record {
	out := append([]record(nil), a...)
	idx := make(map[string]int, len(out))
	for i, r := range out {
		idx[r.r.ID] = i
	}
	for _, r := range b {
		i, ok := idx[r.r.ID]
		if !ok {
			idx[r.r.ID] = len(out)
			out = append(out, r)
			continue
		}
		if out[i].r == r.r && out[i].st.epoch == r.st.epoch {
			out[i].st.merge(&r.st, max(out[i].st.updated, r.st.updated))
		}
	}
	return out
}
