package invalidate

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	// Failed is the number whose Notify returned an error.
	Failed int
}

// Pusher sends the due notices to the sessions connected to this node: the
// push counterpart of clients polling Due. Each notified client draws one
// token from the push budget (WithPushBudget), if any; at most
// WithConcurrency sessions are notified at once. A Pusher is safe for
// concurrent use; call Push after each advance, or on a timer.
type Pusher struct {
	c   *Coordinator
	cfg config
}

// NewPusher returns a pusher answering from c. It accepts WithPushBudget,
// WithConcurrency and WithLogger.
func NewPusher(c *Coordinator, opts ...Option) (*Pusher, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: coordinator is nil", ErrInvalidOption)
	}
	cfg, err := buildConfig(forPusher, opts)
	if err != nil {
		return nil, err
	}
	return &Pusher{c: c, cfg: cfg}, nil
}

// Push notifies every session in sessions of the notices due to it (as Due
// answers), in epoch order, stopping a session at its first failed Notify.
// When the push budget refuses a client, that client and every later one
// with notices due are deferred to the next Push. Push returns when every
// session is handled or ctx is done; the error is the context's, or the
// first Due failure.
func (p *Pusher) Push(ctx context.Context, sessions []Session) (PushResult, error) {
	var (
		next                                     atomic.Int64
		due, notified, notices, deferred, failed atomic.Int64
		exhausted                                atomic.Bool
		errOnce                                  sync.Once
		firstErr                                 error
		wg                                       sync.WaitGroup
	)
	workers := min(p.cfg.concurrency, len(sessions))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []Notice
			for {
				i := int(next.Add(1) - 1)
				if i >= len(sessions) || ctx.Err() != nil {
					return
				}
				s := sessions[i]
				var err error
				buf, err = p.c.AppendDue(ctx, buf[:0], s.ClientID(), s.Applied())
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if len(buf) == 0 {
					continue
				}
				due.Add(1)
				if !p.allow(ctx, &exhausted) {
					deferred.Add(1)
					continue
				}
				ok := true
				for _, n := range buf {
					if err := s.Notify(ctx, n); err != nil {
						p.cfg.logger.Debug("herdcap: invalidation notify failed", "client", s.ClientID(), "id", n.RolloutID, "err", err)
						failed.Add(1)
						ok = false
						break
					}
					notices.Add(1)
				}
				if ok {
					notified.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res := PushResult{
		Sessions: len(sessions), Due: int(due.Load()), Notified: int(notified.Load()),
		Notices: int(notices.Load()), Deferred: int(deferred.Load()), Failed: int(failed.Load()),
	}
	if firstErr != nil {
		return res, firstErr
	}
	return res, ctx.Err()
}

// allow takes one token from the push budget. Once the budget refuses, it
// refuses every later client of this push without asking again.
func (p *Pusher) allow(ctx context.Context, exhausted *atomic.Bool) bool {
	if p.cfg.pushBudget == nil {
		return true
	}
	if exhausted.Load() {
		return false
	}
	d, err := p.cfg.pushBudget.AllowN(ctx, p.cfg.pushKey, 1)
	if err != nil || !d.Allowed {
		exhausted.Store(true)
		return false
	}
	return true
}
