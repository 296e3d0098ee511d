package invalidate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/herdcap/herdcap/limiter"
)

// Session is one client connected to this node over a push channel (a
// websocket, a gRPC stream). Implementations must be safe for concurrent
// use; a Pusher calls them without holding any lock.
type Session interface {
	// ClientID is the client's stable ID, the one its cohort is computed
	// from.
	ClientID() string
	// Applied is the highest epoch the client has applied (0 for none).
	Applied() uint64
	// Notify delivers one notice. When it returns nil the session must
	// count n.Epoch as applied from then on (or once the client
	// acknowledges): a later Push must not send it again.
	Notify(ctx context.Context, n Notice) error
}

// ErrSessionPanic is wrapped by the *SessionPanicError that Push returns
// when a Session method (or the push budget) panicked.
var ErrSessionPanic = errors.New("invalidate: session panicked during push")

// SessionPanicError reports a panic that Push recovered: in a Session
// method, or in the push budget while it was asked for that session's
// token. The session counts as failed; the other sessions are still
// handled.
type SessionPanicError struct {
	// Index is the session's position in the slice given to Push.
	Index int
	// ClientID is the session's client ID ("" if ClientID itself
	// panicked).
	ClientID string
	// Call names what panicked: "ClientID", "Applied", "Notify" or
	// "push budget".
	Call string
	// Value is the value the panic was called with.
	Value any
}

// Error names the session, the call and the panic value.
func (e *SessionPanicError) Error() string {
	return fmt.Sprintf("invalidate: push: session %d (client %q): %s panicked: %v", e.Index, e.ClientID, e.Call, e.Value)
}

// Unwrap returns ErrSessionPanic.
func (e *SessionPanicError) Unwrap() error { return ErrSessionPanic }

// PushResult counts what one Push did.
type PushResult struct {
	// Sessions is the number of sessions looked at.
	Sessions int
	// Due is the number that had at least one notice due.
	Due int
	// Notified is the number told everything due to them.
	Notified int
	// Notices is the number of notices delivered.
	Notices int
	// Deferred is the number with notices due that the push budget did not
	// let through this time: the next Push tries them again.
	Deferred int
	// Failed is the number whose Notify returned an error, or whose
	// Session methods or push budget panicked (see SessionPanicError).
	Failed int
}

// Pusher sends the due notices to the sessions connected to this node: the
// push counterpart of clients polling AppendDue, answering from the same
// coordinator and cache. Each notified client draws one token from the
// push budget (PushConfig.Budget), if any; at most PushConfig.Concurrency
// sessions are notified at once. Failures and recovered panics are logged
// through the coordinator's Config.Logger. A Pusher is safe for concurrent
// use; call Push after each advance, or on a timer.
//
// A node with many sessions need not hand every one of them to every Push:
// AppendWaves reports the cohorts released since it last looked, so the
// node can pass Push only the sessions those waves make due (and the ones
// the last Push deferred).
type Pusher struct {
	c   *Coordinator
	cfg PushConfig

	mu   sync.Mutex          // guards seen
	seen map[string]waveMark // by rollout ID: what AppendWaves reported
}

// waveMark is how far AppendWaves has reported one rollout.
type waveMark struct {
	epoch    uint64
	released int
}

// NewPusher returns a pusher answering from c, configured by cfg (the zero
// PushConfig is the default configuration). A bad field of cfg, or a nil
// c, is an error wrapping ErrInvalidConfig that names it.
func NewPusher(c *Coordinator, cfg PushConfig) (*Pusher, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: NewPusher's coordinator is nil", ErrInvalidConfig)
	}
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	return &Pusher{c: c, cfg: cfg, seen: map[string]waveMark{}}, nil
}

// Push notifies every session in sessions of the notices due to it (as
// AppendDue answers), in epoch order, stopping a session at its first failed
// Notify. When the push budget refuses a client, that client and every later
// one with notices due are deferred to the next Push. Push returns when
// every session is handled or ctx is done.
//
// A panic in a Session method or in the push budget is recovered: that
// session counts as failed and the others are still handled. The error is
// the first AppendDue failure (which stops the push), else the context's,
// else a *SessionPanicError (wrapping ErrSessionPanic) for the first session
// that panicked; the PushResult is valid with any of them.
//
// At PushConfig.Concurrency 1 Push starts no goroutine: it handles the
// sessions in the caller's goroutine, one after another in the order given,
// so that with the coordinator and the push budget on one injected clock (a
// virtual clock in a simulation) its outcome is deterministic.
func (p *Pusher) Push(ctx context.Context, sessions []Session) (PushResult, error) {
	st := &pushState{sessions: sessions}
	workers := min(p.cfg.Concurrency, len(sessions))
	if workers <= 1 {
		p.work(ctx, st)
	} else {
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.work(ctx, st)
			}()
		}
		wg.Wait()
	}
	res := PushResult{
		Sessions: len(sessions), Due: int(st.due.Load()), Notified: int(st.notified.Load()),
		Notices: int(st.notices.Load()), Deferred: int(st.deferred.Load()), Failed: int(st.failed.Load()),
	}
	if err := st.dueErr.Load(); err != nil {
		return res, *err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if pe := st.panicked.Load(); pe != nil {
		return res, pe
	}
	return res, nil
}

// pushState is one Push, shared by its workers.
type pushState struct {
	sessions                                 []Session
	next                                     atomic.Int64
	due, notified, notices, deferred, failed atomic.Int64
	exhausted                                atomic.Bool
	dueErr                                   atomic.Pointer[error]
	panicked                                 atomic.Pointer[SessionPanicError]
}

// work handles sessions until none is left, ctx is done or Due fails.
func (p *Pusher) work(ctx context.Context, st *pushState) {
	var buf []Notice
	for {
		i := int(st.next.Add(1) - 1)
		if i >= len(st.sessions) || ctx.Err() != nil || st.dueErr.Load() != nil {
			return
		}
		var err error
		if buf, err = p.one(ctx, st, i, buf[:0]); err != nil {
			st.dueErr.CompareAndSwap(nil, &err)
			return
		}
	}
}

// one handles session i: its due notices, the budget, Notify. A panic in
// user code (the Session, the budget) is recovered into st. The error is
// a Due failure.
func (p *Pusher) one(ctx context.Context, st *pushState, i int, buf []Notice) (out []Notice, err error) {
	s := st.sessions[i]
	pe := SessionPanicError{Index: i, Call: "ClientID"}
	defer func() {
		if v := recover(); v != nil {
			pe.Value = v
			st.failed.Add(1)
			st.panicked.CompareAndSwap(nil, &pe)
			p.c.log.Warn("herdcap: invalidation push: session panicked", "client", pe.ClientID, "call", pe.Call, "panic", v)
			out, err = buf[:0], nil
		}
	}()
	pe.ClientID = s.ClientID()
	pe.Call = "Applied"
	applied := s.Applied()
	buf, err = p.c.AppendDue(ctx, buf, pe.ClientID, applied)
	if err != nil || len(buf) == 0 {
		return buf, err
	}
	st.due.Add(1)
	pe.Call = "push budget"
	if !p.allow(ctx, &st.exhausted) {
		st.deferred.Add(1)
		return buf, nil
	}
	pe.Call = "Notify"
	for _, n := range buf {
		if err := s.Notify(ctx, n); err != nil {
			p.c.log.Debug("herdcap: invalidation notify failed", "client", pe.ClientID, "id", n.RolloutID, "err", err)
			st.failed.Add(1)
			return buf, nil
		}
		st.notices.Add(1)
	}
	st.notified.Add(1)
	return buf, nil
}

// allow takes one token from the push budget. Once the budget refuses, it
// refuses every later client of this push without asking again.
func (p *Pusher) allow(ctx context.Context, exhausted *atomic.Bool) bool {
	if p.cfg.Budget == nil {
		return true
	}
	if exhausted.Load() {
		return false
	}
	d, err := p.cfg.Budget.Take(ctx, limiter.Request{Key: p.cfg.BudgetKey, N: 1})
	if err != nil || !d.Allowed {
		exhausted.Store(true)
		return false
	}
	return true
}

// Wave is a run of cohorts of one rollout released since a Pusher last
// reported that rollout (AppendWaves): the clients of cohorts From to
// To-1 now have its notice due, unless they have applied its epoch.
type Wave struct {
	// RolloutID is the rollout's ID, Epoch the epoch it runs under and
	// Cohorts its number of cohorts.
	RolloutID string
	Epoch     uint64
	Cohorts   int
	// From and To bound the cohorts released since the last report:
	// cohorts From to To-1 (0 <= From < To <= Cohorts).
	From, To int
}

// Cohort returns clientID's cohort in the wave's rollout,
// limiter.Cohort(RolloutID, clientID, Cohorts): the placement AppendDue uses.
func (w Wave) Cohort(clientID string) int { return limiter.Cohort(w.RolloutID, clientID, w.Cohorts) }

// Contains reports whether clientID's cohort is one of the wave's.
func (w Wave) Contains(clientID string) bool {
	c := w.Cohort(clientID)
	return c >= w.From && c < w.To
}

// AppendWaves appends to dst the waves released since the previous
// AppendWaves on this Pusher, one per rollout that released cohorts
// meanwhile (the first call reports every cohort released so far), in
// epoch order, and returns the extended slice. It answers from the same
// cached state as AppendDue (no store call within the cache TTL), so the
// clients of a reported wave are due when Push asks right after.
//
// It lets a node with many sessions hand Push only its candidates: index the
// sessions by Wave.Cohort once per rollout, and after each advance push the
// sessions of the new waves, plus the ones the last Push deferred. Sessions
// that connect later learn their notices from AppendDue (or a Push of every
// session). Calls are serialised; a wave is reported once per Pusher.
func (p *Pusher) AppendWaves(ctx context.Context, dst []Wave) ([]Wave, error) {
	v, err := p.c.current(ctx)
	if err != nil {
		return dst, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range v.items {
		it := &v.items[i]
		rel := min(it.released, it.cohorts)
		m, ok := p.seen[it.id]
		if !ok || m.epoch != it.epoch {
			m = waveMark{epoch: it.epoch}
		}
		if rel > m.released {
			dst = append(dst, Wave{RolloutID: it.id, Epoch: it.epoch, Cohorts: it.cohorts, From: m.released, To: rel})
			m.released = rel
		}
		p.seen[it.id] = m
	}
	if len(p.seen) > len(v.items) {
		// Rollouts that left the store are forgotten.
		live := make(map[string]bool, len(v.items))
		for i := range v.items {
			live[v.items[i].id] = true
		}
		for id := range p.seen {
			if !live[id] {
				delete(p.seen, id)
			}
		}
	}
	return dst, nil
}
