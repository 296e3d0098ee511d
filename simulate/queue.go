package simulate

import (
	"cmp"
	"math/bits"
	"slices"
)

// event is one scheduled happening: 16 bytes, no pointers, so the queue's
// buffers are invisible to the garbage collector.
type event struct {
	at   int64  // virtual nanoseconds since the run started
	id   uint32 // the client (or node, for node events)
	kind uint8
	arg  uint8
}

// before orders events by time alone. Events at the same nanosecond come
// out in an order that depends only on the order they were pushed in (the
// ring's sort is stable; the far heap is deterministic), and a run pushes
// in the same order every time: the run stays deterministic, and a
// comparison is one integer compare on the hot path.
func (e event) before(o event) bool { return e.at < o.at }

// queue is a calendar queue: a ring of buckets, each holding the events of
// one width of virtual time in push order; the current bucket is gathered
// and sorted when it is reached (a stable radix sort on the time within
// the bucket). Events beyond the ring's horizon wait in a 4-ary heap and
// move into the ring as it turns. Push and pop are O(1) amortised plus the
// sort of one small bucket.
//
// A bucket is a list of fixed-size chunks drawn from one pool shared by
// every bucket, so a push never copies a bucket to grow it, and the
// memory the ring holds follows the events queued (at its peak), not the
// largest bucket times the number of buckets: with a slice per bucket, a
// run whose buckets each once held a few thousand events kept that much
// room in every one of the 16,384, a gigabyte at 1,000,000 clients. Chunks
// live in pages that never move; buffers are reused, so a run in steady
// state allocates nothing per event.
type queue struct {
	width   int64 // ns of virtual time per bucket
	mask    int64
	buckets []bucket
	pages   [][]event // chunk storage, pageChunks chunks each
	next    []uint32  // per chunk: the next chunk of its bucket
	free    []uint32  // chunks not in use
	inRing  int       // events in the ring's buckets (not counting cur)
	cur     int64     // absolute index of the current bucket
	now     []event
	pos     int
	far     []event // 4-ary min-heap
	scratch []event // the radix sort's second buffer
	n       int
}

// bucket is one slot of the ring: n events in a list of chunks from head
// to tail, every chunk full but the tail.
type bucket struct {
	head, tail uint32
	n          uint32
}

const (
	// chunkLen is the events a chunk holds (2 KiB): small enough that the
	// ring's 16,384 partly filled tails cost little, large enough that
	// following a bucket's list is a small part of gathering it.
	chunkLen = 128
	// pageChunks is the chunks allocated at once.
	pageChunks = 256
)

// maxKeptCap is the largest gathering buffer (in events) kept for reuse
// when it is much larger than what it is given to hold.
const maxKeptCap = 4096

// newQueue returns a queue of 2^bits buckets of width ns each.
func newQueue(width int64, bits uint) *queue {
	nb := int64(1) << bits
	return &queue{width: width, mask: nb - 1, buckets: make([]bucket, nb)}
}

func (q *queue) len() int { return q.n }

// ahead returns up to n events of the current bucket from d places after
// the next one: a view of what comes soon, to be read, not kept.
func (q *queue) ahead(d, n int) []event {
	from := min(q.pos+d, len(q.now))
	return q.now[from:min(from+n, len(q.now))]
}

// push schedules e; e.at must not be before the last popped event.
func (q *queue) push(e event) {
	q.n++
	b := e.at / q.width
	switch {
	case b <= q.cur:
		// Into the sorted current bucket, after what has been popped.
		// After the events of the same time: they were pushed first.
		rest := q.now[q.pos:]
		i, _ := slices.BinarySearchFunc(rest, e.at+1, func(x event, t int64) int { return cmp.Compare(x.at, t) })
		q.now = slices.Insert(q.now, q.pos+i, e)
	case b <= q.cur+q.mask:
		q.ringPush(b, e)
	default:
		q.farPush(e)
	}
}

// ringPush appends e to bucket b's list.
func (q *queue) ringPush(b int64, e event) {
	bk := &q.buckets[b&q.mask]
	k := bk.n % chunkLen
	if k == 0 {
		c := q.chunk()
		if bk.n == 0 {
			bk.head = c
		} else {
			q.next[bk.tail] = c
		}
		bk.tail = c
	}
	q.pages[bk.tail/pageChunks][bk.tail%pageChunks*chunkLen+k] = e
	bk.n++
	q.inRing++
}

// chunk takes a chunk from the pool, growing it by a page when empty.
func (q *queue) chunk() uint32 {
	if k := len(q.free); k > 0 {
		c := q.free[k-1]
		q.free = q.free[:k-1]
		return c
	}
	c := uint32(len(q.next))
	if c%pageChunks == 0 {
		q.pages = append(q.pages, make([]event, pageChunks*chunkLen))
	}
	q.next = append(q.next, 0)
	return c
}

// gather moves bucket bk's events into q.now, in push order, and returns
// its chunks to the pool.
func (q *queue) gather(bk *bucket) {
	n := int(bk.n)
	if cap(q.now) < n || cap(q.now) > maxKeptCap && cap(q.now) > 4*n {
		// Grown to this bucket, or released after a burst.
		q.now = make([]event, n, max(n, 64))
	}
	q.now = q.now[:n]
	c := bk.head
	for off := 0; off < n; off += chunkLen {
		m := min(chunkLen, n-off)
		p := q.pages[c/pageChunks]
		copy(q.now[off:off+m], p[c%pageChunks*chunkLen:])
		q.free = append(q.free, c)
		c = q.next[c]
	}
	*bk = bucket{}
}

// peek returns the earliest event without removing it; ok is false when
// the queue is empty.
func (q *queue) peek() (e event, ok bool) {
	if !q.load() {
		return event{}, false
	}
	return q.now[q.pos], true
}

// skip removes the event peek returned.
func (q *queue) skip() {
	q.pos++
	q.n--
}

// load makes q.now[q.pos] the earliest event, turning the ring as far as
// needed; it reports false when the queue is empty.
func (q *queue) load() bool {
	for q.pos >= len(q.now) {
		if q.n == 0 {
			return false
		}
		q.now, q.pos = q.now[:0], 0
		if q.inRing == 0 && len(q.far) > 0 {
			// Nothing in the ring: jump to the first far event.
			q.cur = max(q.cur+1, q.far[0].at/q.width-q.mask)
		} else {
			q.cur++
		}
		for len(q.far) > 0 && q.far[0].at/q.width <= q.cur+q.mask {
			f := q.farPop()
			q.ringPush(f.at/q.width, f)
		}
		if bk := &q.buckets[q.cur&q.mask]; bk.n > 0 {
			q.inRing -= int(bk.n)
			q.gather(bk)
			q.sortNow(q.cur * q.width)
		}
	}
	return true
}

// sortNow sorts q.now, the events of the bucket starting at base, by time
// and stably: a least-significant-digit radix sort of their offsets in the
// bucket, 8 bits a pass (a pass where every event has the same digit is
// skipped); insertion sort for a few events.
func (q *queue) sortNow(base int64) {
	ev := q.now
	if len(ev) < 32 {
		for i := 1; i < len(ev); i++ {
			for j := i; j > 0 && ev[j].at < ev[j-1].at; j-- {
				ev[j], ev[j-1] = ev[j-1], ev[j]
			}
		}
		return
	}
	if cap(q.scratch) < len(ev) || cap(q.scratch) > maxKeptCap && cap(q.scratch) > 4*len(ev) {
		// Grown to this bucket, or released after a burst (as the
		// bucket buffers are).
		q.scratch = make([]event, len(ev))
	}
	src, dst := ev, q.scratch[:len(ev)]
	passes := (bits.Len64(uint64(q.width-1)) + 7) / 8
	var cnt [256]int
	for p := range passes {
		shift := uint(8 * p)
		clear(cnt[:])
		for _, e := range src {
			cnt[uint64(e.at-base)>>shift&0xff]++
		}
		if cnt[uint64(src[0].at-base)>>shift&0xff] == len(src) {
			continue
		}
		sum := 0
		for k, c := range cnt {
			cnt[k] = sum
			sum += c
		}
		for _, e := range src {
			d := uint64(e.at-base) >> shift & 0xff
			dst[cnt[d]] = e
			cnt[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &ev[0] {
		copy(ev, src)
	}
}

func (q *queue) farPush(e event) {
	q.far = append(q.far, e)
	i := len(q.far) - 1
	for i > 0 {
		p := (i - 1) / 4
		if !q.far[i].before(q.far[p]) {
			break
		}
		q.far[i], q.far[p] = q.far[p], q.far[i]
		i = p
	}
}

func (q *queue) farPop() event {
	h := q.far
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	i := 0
	for {
		c := 4*i + 1
		if c >= len(h) {
			break
		}
		m := c
		for j := c + 1; j < c+4 && j < len(h); j++ {
			if h[j].before(h[m]) {
				m = j
			}
		}
		if !h[m].before(h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	q.far = h
	return top
}
