package fleet

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redisguard"
	"github.com/herdcap/herdcap/limiter"
)

// batcher sends the bucket scripts of concurrent Redis decisions together.
//
// A decision made while fewer than batchInFlight round trips are under way
// (always, for a lone caller) runs its own script, as an unbatched client
// would: no hand-off, no added latency. Decisions that arrive while
// batchInFlight round trips are under way queue up, and the next free
// worker sends everything queued as one pipeline: one write and one read for
// the whole group instead of one each. Every decision is still one script,
// atomic on its own key; under load the kernel and network work per
// decision falls by the size of the group, which is where a loopback Redis
// client spends most of its time.
//
// A queued decision waits no longer than the Redis Timeout (or its
// context) from the moment it arrived, measured on the real clock like
// every call's Timeout; a decision whose batch overruns that is abandoned
// to the failure policy, exactly as a slow unbatched call would be.
type batcher struct {
	g       *redisguard.Guard
	timeout time.Duration

	mu       sync.Mutex
	queue    []*pending
	inflight int
	closed   bool
	started  bool // workers running: only once a decision first queued

	wake chan struct{} // buffered: a worker should look at the queue
	stop chan struct{}
	wg   sync.WaitGroup
}

const (
	// batchInFlight is the most round trips one budget has under way at
	// once; beyond it decisions queue and go out in batches.
	batchInFlight = 4
	// batchMax is the most decisions one pipeline carries.
	batchMax = 128
)

// pending is one queued decision. Its state is guarded by the batcher's mu.
type pending struct {
	call  redisguard.Call
	state pendingState
	done  chan struct{} // buffered(1): the reply is in call
	timer *time.Timer
}

type pendingState uint8

const (
	pendingQueued    pendingState = iota // in b.queue
	pendingSent                          // in a batch under way
	pendingAbandoned                     // in a batch; its caller gave up
	pendingDone                          // answered: the reply is in call
)

var pendingPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pending{done: make(chan struct{}, 1), timer: t}
}}

// newBatcher returns a batcher sending through g. Its workers start the
// first time a decision has to queue, so a budget used by one caller at a
// time runs no goroutine for batching.
func newBatcher(g *redisguard.Guard, timeout time.Duration) *batcher {
	return &batcher{g: g, timeout: timeout, wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// startLocked starts the workers; b.mu is held.
func (b *batcher) startLocked() {
	if b.started {
		return
	}
	b.started = true
	for range batchInFlight {
		b.wg.Add(1)
		go b.work()
	}
}

// errBatcherClosed is the answer of a decision queued when the budget was
// closed.
var errBatcherClosed = fmt.Errorf("%w while the decision was queued", limiter.ErrClosed)

// eval runs script for one decision: at once when a round trip is free,
// otherwise in the next batch.
func (b *batcher) eval(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	b.mu.Lock()
	if b.inflight < batchInFlight && len(b.queue) == 0 {
		b.inflight++
		b.mu.Unlock()
		v, err := b.g.Eval(ctx, s, keys, args...)
		b.release()
		return v, err
	}
	if b.closed {
		b.mu.Unlock()
		return nil, errBatcherClosed
	}
	if err := ctx.Err(); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	p := pendingPool.Get().(*pending)
	p.call = redisguard.Call{Script: s, Keys: keys, Args: args}
	p.state = pendingQueued
	b.queue = append(b.queue, p)
	b.startLocked()
	b.mu.Unlock()
	b.signal()

	wait := b.timeout
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	p.timer.Reset(wait)
	select {
	case <-p.done:
		p.timer.Stop()
		v, err := p.call.Val, p.call.Err
		p.call = redisguard.Call{}
		pendingPool.Put(p)
		return v, err
	case <-p.timer.C:
	case <-ctx.Done():
		p.timer.Stop()
	}
	// Gave up: take p out of the queue, or leave it to its batch; unless
	// the reply came in meanwhile, which is better than giving up.
	b.mu.Lock()
	switch p.state {
	case pendingDone:
		b.mu.Unlock()
		<-p.done
		v, err := p.call.Val, p.call.Err
		p.call = redisguard.Call{}
		pendingPool.Put(p)
		return v, err
	case pendingQueued:
		for i, q := range b.queue {
			if q == p {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		p.call = redisguard.Call{}
		pendingPool.Put(p)
	default:
		p.state = pendingAbandoned
		b.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("herdcap: queued redis call: %w", context.DeadlineExceeded)
}

// release ends a round trip, waking a worker when decisions are queued.
func (b *batcher) release() {
	b.mu.Lock()
	b.inflight--
	queued := len(b.queue) > 0
	b.mu.Unlock()
	if queued {
		b.signal()
	}
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// work sends queued decisions in batches until close.
func (b *batcher) work() {
	defer b.wg.Done()
	var batch []*pending
	var calls []*redisguard.Call
	for {
		select {
		case <-b.stop:
			return
		case <-b.wake:
		}
		for {
			b.mu.Lock()
			if len(b.queue) == 0 || b.inflight >= batchInFlight {
				b.mu.Unlock()
				break
			}
			n := min(len(b.queue), batchMax)
			batch = append(batch[:0], b.queue[:n]...)
			rest := copy(b.queue, b.queue[n:])
			clear(b.queue[rest:])
			b.queue = b.queue[:rest]
			for _, p := range batch {
				p.state = pendingSent
			}
			b.inflight++
			more := len(b.queue) > 0 && b.inflight < batchInFlight
			b.mu.Unlock()
			if more {
				b.signal() // another worker can take the rest
			}

			if len(batch) == 1 {
				c := &batch[0].call
				c.Val, c.Err = b.g.Eval(context.Background(), c.Script, c.Keys, c.Args...)
			} else {
				calls = calls[:0]
				for _, p := range batch {
					calls = append(calls, &p.call)
				}
				b.g.EvalBatch(calls)
				clear(calls)
			}

			b.mu.Lock()
			b.inflight--
			for i, p := range batch {
				if p.state == pendingAbandoned {
					p.call = redisguard.Call{}
					pendingPool.Put(p)
				} else {
					p.state = pendingDone
					p.done <- struct{}{}
				}
				batch[i] = nil
			}
			b.mu.Unlock()
		}
	}
}

// close stops the workers; decisions still queued are answered with
// ErrClosed.
func (b *batcher) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	b.wg.Wait()
	b.mu.Lock()
	for _, p := range b.queue {
		p.state = pendingDone
		p.call.Err = errBatcherClosed
		p.done <- struct{}{}
	}
	b.queue = nil
	b.mu.Unlock()
}
