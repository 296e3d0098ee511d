package wire

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/herdcap/herdcap/invalidate"
)

// NoticeQueue applies notices to a client's callback one at a time, in
// epoch order, each once, without holding a lock during the callback: a
// goroutine with notices queues them, and if no other goroutine is
// applying, applies the queue until it is empty. The zero value is an empty
// queue; it is safe for concurrent use and must not be copied after first
// use.
type NoticeQueue struct {
	mu      sync.Mutex
	pending []invalidate.Notice // guarded by mu
	running bool                // guarded by mu: a goroutine is applying
}

// Deliver queues notices and applies the queue unless another goroutine is
// already applying it, in which case that goroutine applies them before it
// returns. A notice whose epoch is not above *applied is skipped; after f
// returns for a notice, *applied is its epoch. If f panics, the panic goes
// on up through this Deliver and the notices of its batch not yet applied
// are dropped; *applied still names the last one applied, so a server
// sends the rest again and a later Deliver applies them.
func (q *NoticeQueue) Deliver(notices []invalidate.Notice, applied *atomic.Uint64, f func(invalidate.Notice)) {
	if len(notices) == 0 {
		return
	}
	q.mu.Lock()
	q.pending = append(q.pending, notices...)
	if q.running {
		q.mu.Unlock()
		return
	}
	q.running = true
	finished := false
	defer func() {
		if !finished { // f panicked: let the next delivery apply the rest
			q.mu.Lock()
			q.running = false
			q.mu.Unlock()
		}
	}()
	for {
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		slices.SortStableFunc(batch, func(a, b invalidate.Notice) int {
			switch {
			case a.Epoch < b.Epoch:
				return -1
			case a.Epoch > b.Epoch:
				return 1
			}
			return 0
		})
		for _, n := range batch {
			if n.Epoch <= applied.Load() {
				continue
			}
			f(n)
			applied.Store(n.Epoch)
		}
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running = false
			finished = true
			q.mu.Unlock()
			return
		}
	}
}
