package simulate

import (
	"math"
	"unsafe"
)

// synQueues hold the pending SYN retransmits out of the event queue, one
// first-in first-out queue per retransmit k. A retransmit k is scheduled
// when retransmit k-1 (or the first SYN) of the same connect attempt is
// dropped, a fixed 2^(k-1) s later; drops happen in time order, so each
// queue is in time order by construction and appending keeps it sorted.
// In a congested fleet retransmits are a third of all events: this spares
// them the calendar queue's scattered writes and sorting. The run loop
// takes the earliest of the queues' heads and the event queue's next
// event, the event queue's first at the same time.
type synQueues struct {
	q     [synRetries]synQueue
	next  int64 // the earliest head, math.MaxInt64 when all are empty
	nextK int   // the queue holding it (the lowest of equal heads)
}

// synQueue is one retransmit's queue: ev[head:] pending, in time order.
type synQueue struct {
	ev   []event
	head int
}

func newSynQueues() synQueues { return synQueues{next: math.MaxInt64} }

// push appends e, retransmit k (from 1); ok is false when e would break
// the queue's order (it never does; the caller then uses the event queue).
func (s *synQueues) push(k int, e event) (ok bool) {
	q := &s.q[k-1]
	if n := len(q.ev); n > q.head && q.ev[n-1].at > e.at {
		return false
	}
	q.ev = append(q.ev, e)
	if e.at < s.next || e.at == s.next && k-1 < s.nextK {
		s.next, s.nextK = e.at, k-1
	}
	return true
}

// pop removes and returns the earliest head, prefetching the state of
// the clients its queue holds next (cl); the caller checked that s.next is
// not math.MaxInt64.
func (s *synQueues) pop(cl []client) event {
	q := &s.q[s.nextK]
	e := q.ev[q.head]
	q.head++
	q.prefetch(cl)
	switch {
	case q.head == len(q.ev):
		q.ev, q.head = q.ev[:0], 0
	case q.head >= 4096 && 2*q.head >= len(q.ev):
		n := copy(q.ev, q.ev[q.head:])
		q.ev, q.head = q.ev[:n], 0
	}
	s.next = math.MaxInt64
	for k := range s.q {
		if q := &s.q[k]; q.head < len(q.ev) && q.ev[q.head].at < s.next {
			s.next, s.nextK = q.ev[q.head].at, k
		}
	}
	return e
}

// prefetch asks for the client state of the retransmits prefetchAhead
// to prefetchAhead + prefetchBatch places after q's head (see
// sim.prefetch): every prefetchBatch retransmits taken from q.
func (q *synQueue) prefetch(cl []client) {
	if from := q.head + prefetchAhead; q.head%prefetchBatch == 0 && from < len(q.ev) {
		n := min(prefetchBatch, len(q.ev)-from)
		prefetchEvents(&q.ev[from], n, unsafe.Pointer(unsafe.SliceData(cl)), unsafe.Sizeof(client{}))
	}
}
