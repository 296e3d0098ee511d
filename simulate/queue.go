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
	// fine is the queue's own: the event's fine bucket within its coarse
	// bucket, noted at push (in what was padding) so that spreading a
	// coarse bucket divides nothing.
	fine uint16
}

// before orders events by time alone. Events at the same nanosecond come
// out in an order that depends only on the order they were pushed in (the
// ring's sort is stable; the far heap is deterministic), and a run pushes
// in the same order every time: the run stays deterministic, and a
// comparison is one integer compare on the hot path.
func (e event) before(o event) bool { return e.at < o.at }

// queue is a two-level calendar queue (a ladder): a ring of fine buckets,
// each holding the events of one width of virtual time in push order; the
// current bucket is gathered and sorted when it is reached (a stable radix
// sort on the time within the bucket). Fine buckets are grouped by
// 2^coarseBits into coarse buckets: an event for a coarse bucket the ring
// has not reached yet is appended to that coarse bucket, which is spread
// into its fine buckets, in push order, when the ring enters it; an event
// for the coarse bucket being drained goes to its fine bucket directly.
// Either way a fine bucket holds its events in push order, as a single
// ring of fine buckets would, and the pushes' scattered stores land on a
// few hundred bucket tails (the coarse ring's and the current coarse
// bucket's fine ones) that stay in cache, not on a tail per fine bucket of
// the horizon. Events beyond the horizon (2^bits fine buckets) wait in a
// 4-ary heap and move into the ring as it turns. Push and pop are O(1)
// amortised plus the sort of one small bucket.
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
	width   int64    // ns of virtual time per fine bucket
	div     divider  // divides by width
	mask    int64    // the horizon: events up to cur+mask fine buckets stay out of the far heap
	fbits   uint     // log2 of the fine buckets per coarse bucket
	fine    []bucket // the fine buckets of coarse bucket spread, by index & fmask
	fmask   int64
	coarse  []bucket // the coarse ring, by coarse index & cmask
	cmask   int64
	spread  int64         // the coarse bucket spread into fine: the one holding cur
	pages   [][]chunkData // chunk storage, pageChunks chunks each
	next    []uint32      // per chunk: the next chunk of its bucket
	free    []uint32      // chunks not in use
	inRing  int           // events in the fine and coarse buckets (not counting cur)
	cur     int64         // absolute index of the current fine bucket
	now     []event
	pos     int
	far     []event // 4-ary min-heap
	scratch []event // the radix sort's second buffer
	n       int
}

// bucket is one slot of the ring: n events in a list of chunks from head
// to tail, every chunk full but the tail; last is the tail's storage (a
// push stores through it, with no lookup of the chunk's page).
type bucket struct {
	head, tail uint32
	n          uint32
	last       *chunkData
}

// chunkData is a chunk's storage.
type chunkData [chunkLen]event

const (
	// chunkLen is the events a chunk holds (2 KiB): small enough that the
	// buckets' partly filled tails cost little, large enough that
	// following a bucket's list is a small part of gathering it.
	chunkLen = 128
	// pageChunks is the chunks allocated at once.
	pageChunks = 256
	// coarseBits is log2 of the fine buckets in a coarse bucket (at most
	// 16, for event.fine): 512 of 10 ms, 5.12 s, in the simulator's
	// queue, so that its commonest delays (a naive client's 1 s retry, a
	// handshake within a 1 s accept backlog) mostly land in a fine bucket
	// directly, and the 512 fine tails and 32 coarse ones stay in cache
	// (the unprotected incident at 300,000 clients, the least CPU time of
	// three runs on a loaded 2-core machine, against a single ring of
	// 16,384 buckets: 128 a coarse bucket saved 6%, 512 19%, 1,024 11%).
	coarseBits = 9
)

// maxKeptCap is the largest gathering buffer (in events) kept for reuse
// when it is much larger than what it is given to hold.
const maxKeptCap = 4096

// newQueue returns a queue of fine buckets of width ns each and a horizon
// of 2^bits of them, grouped into coarse buckets of 2^coarseBits (or all
// in one when bits is smaller).
func newQueue(width int64, bits uint) *queue { return newLadder(width, bits, min(bits, coarseBits)) }

// newLadder is newQueue with 2^fbits fine buckets a coarse bucket, fbits
// at most bits and 16.
func newLadder(width int64, bits, fbits uint) *queue {
	// Coarse buckets not yet spread run from the one after cur's to the
	// horizon's: at most 2^(bits-fbits) of them.
	nc := int64(1) << (bits - fbits)
	return &queue{
		width: width, div: newDivider(width), mask: int64(1)<<bits - 1,
		fbits: fbits, fine: make([]bucket, 1<<fbits), fmask: int64(1)<<fbits - 1,
		coarse: make([]bucket, nc), cmask: nc - 1,
	}
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
	b := q.bucketOf(e.at)
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

// bucketOf returns the fine bucket of time at: at / q.width, by a
// multiply for a time not before the run (a 64-bit division, on every
// push, takes several times a multiply's latency).
func (q *queue) bucketOf(at int64) int64 {
	if at < 0 {
		return at / q.width
	}
	return q.div.of(at)
}

// divider divides by a constant d >= 1 with a multiply and a shift
// (Granlund and Montgomery's method): m is 2^(63+l) / d rounded up, l is
// log2 d rounded up, and n / d is n·m / 2^(63+l) for 0 <= n < 2^63 (m·d
// exceeds 2^(63+l) by less than d, at most 2^l, so the rounding never
// reaches the next integer below 2^63).
type divider struct {
	m uint64
	l uint
}

func newDivider(d int64) divider {
	l := uint(bits.Len64(uint64(d - 1)))
	hi, lo := uint64(0), uint64(1)<<63 // 2^(63+l), l = 0
	if l > 0 {
		hi, lo = 1<<(l-1), 0
	}
	m, r := bits.Div64(hi, lo, uint64(d)) // hi < d: the quotient fits
	if r != 0 {
		m++
	}
	return divider{m: m, l: l}
}

// of returns n / d for 0 <= n.
func (v divider) of(n int64) int64 {
	hi, lo := bits.Mul64(uint64(n), v.m)
	return int64((hi<<1 | lo>>63) >> v.l)
}

// ringPush appends e, of fine bucket b within the horizon, to its fine
// bucket if its coarse bucket is spread, else to its coarse bucket.
func (q *queue) ringPush(b int64, e event) {
	q.inRing++
	e.fine = uint16(b & q.fmask)
	if c := b >> q.fbits; c != q.spread {
		q.appendTo(&q.coarse[c&q.cmask], e)
		return
	}
	q.appendTo(&q.fine[e.fine], e)
}

// appendTo appends e to bucket bk's list.
func (q *queue) appendTo(bk *bucket, e event) {
	k := bk.n % chunkLen
	if k == 0 {
		c := q.chunk()
		if bk.n == 0 {
			bk.head = c
		} else {
			q.next[bk.tail] = c
		}
		bk.tail = c
		bk.last = q.chunkAt(c)
	}
	bk.last[k] = e
	bk.n++
}

// spreadTo spreads coarse bucket c into the fine buckets, in push order,
// returning its chunks to the pool, when it is not spread yet. The ring
// enters the coarse buckets one by one, or jumps when it holds nothing
// (so over empty coarse buckets only).
func (q *queue) spreadTo(c int64) {
	if q.spread < c {
		q.spread = c
		bk := &q.coarse[q.spread&q.cmask]
		n := int(bk.n)
		ch := bk.head
		for off := 0; off < n; off += chunkLen {
			m := min(chunkLen, n-off)
			for _, e := range q.chunkAt(ch)[:m] {
				q.appendTo(&q.fine[e.fine], e)
			}
			q.free = append(q.free, ch)
			ch = q.next[ch]
		}
		*bk = bucket{}
	}
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
		q.pages = append(q.pages, make([]chunkData, pageChunks))
	}
	q.next = append(q.next, 0)
	return c
}

// chunkAt returns chunk c's storage.
func (q *queue) chunkAt(c uint32) *chunkData { return &q.pages[c/pageChunks][c%pageChunks] }

// gather copies bucket bk's events into dst (len bk.n), in push order,
// and returns its chunks to the pool.
func (q *queue) gather(bk *bucket, dst []event) {
	c := bk.head
	for off := 0; off < len(dst); off += chunkLen {
		m := min(chunkLen, len(dst)-off)
		copy(dst[off:off+m], q.chunkAt(c)[:m])
		q.free = append(q.free, c)
		c = q.next[c]
	}
	*bk = bucket{}
}

// sized returns buf with length n: buf's own array when it is large
// enough and not much larger than needed, else a new one (grown to this
// bucket, or released after a burst).
func sized(buf []event, n int) []event {
	if cap(buf) < n || cap(buf) > maxKeptCap && cap(buf) > 4*n {
		return make([]event, n, max(n, 64))
	}
	return buf[:n]
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
			q.cur = max(q.cur+1, q.bucketOf(q.far[0].at)-q.mask)
		} else {
			q.cur++
		}
		q.spreadTo(q.cur >> q.fbits)
		for len(q.far) > 0 && q.bucketOf(q.far[0].at) <= q.cur+q.mask {
			f := q.farPop()
			q.ringPush(q.bucketOf(f.at), f)
		}
		if bk := &q.fine[q.cur&q.fmask]; bk.n > 0 {
			q.inRing -= int(bk.n)
			q.now = sized(q.now, int(bk.n))
			q.gather(bk, q.now)
			q.sortNow(q.cur * q.width)
		}
	}
	return true
}

// sortNow sorts q.now, the events of the bucket starting at base, by time
// and stably: a least-significant-digit radix sort of their offsets in the
// bucket, 8 bits a pass (a pass where every event has the same digit is
// skipped); insertion sort for a few events. (A first pass reading the
// bucket's chunks instead of their copy, with one counting pass for every
// digit, measured 5-10% slower in all.)
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
	q.scratch = sized(q.scratch, len(ev))
	src, dst := ev, q.scratch
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
