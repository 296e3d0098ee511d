package simulate

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQueueOrder: events come out in time order, whatever the order and
// spread they were pushed in (inside the ring, beyond its horizon, into
// the bucket being drained; into a coarse bucket not yet spread and into
// the fine buckets of the one being drained), and none is lost.
func TestQueueOrder(t *testing.T) {
	for _, c := range []struct{ bits, fbits uint }{{4, 4}, {6, 2}, {6, 0}} {
		rng := rand.New(rand.NewPCG(1, 2))
		// Buckets of 1 µs, a small ring, so the far heap works too.
		q := newLadder(1000, c.bits, c.fbits)
		var want []int64
		now := int64(0)
		push := func(d int64) {
			e := event{at: now + d, id: uint32(len(want))}
			q.push(e)
			want = append(want, e.at)
		}
		for range 2000 {
			push(rng.Int64N(100_000))
		}
		var got []int64
		for q.len() > 0 {
			e, ok := q.pop()
			require.True(t, ok)
			require.GreaterOrEqual(t, e.at, now, "%+v: time never runs backwards", c)
			now = e.at
			got = append(got, e.at)
			if len(want) < 6000 {
				// Push while draining: into the current bucket, the
				// current coarse bucket's fine ones, the coarse ring and
				// the far heap.
				push([]int64{0, 1, rng.Int64N(4_000), rng.Int64N(64_000), rng.Int64N(1_000_000)}[rng.IntN(5)])
			}
		}
		_, ok := q.pop()
		assert.False(t, ok)
		slices.Sort(want)
		assert.Equal(t, want, got, "%+v", c)
	}
}

// TestQueueLadderIsCalendar: the ladder gives events in exactly the order
// a single-level calendar of its fine buckets gives them (a ladder of one
// fine bucket a coarse bucket is one), ties and the far heap included:
// the order a run's results depend on, byte for byte.
func TestQueueLadderIsCalendar(t *testing.T) {
	run := func(fbits uint) (out []event, peak int) {
		rng := rand.New(rand.NewPCG(11, 12))
		q := newLadder(1000, 8, fbits) // 256 buckets of 1 µs
		var id uint32
		push := func(at int64) {
			// Times on a coarse grid, so that ties are common.
			q.push(event{at: at / 50 * 50, id: id})
			id++
		}
		for range 3000 {
			push(rng.Int64N(2_000_000))
		}
		now := int64(0)
		for q.len() > 0 {
			peak = max(peak, q.len())
			e, ok := q.pop()
			require.True(t, ok, "the queue holds q.len() events")
			now = e.at
			e.fine = 0 // the queue's own note
			out = append(out, e)
			for range rng.IntN(3) {
				if id < 20_000 {
					d := []int64{0, rng.Int64N(2_000), rng.Int64N(40_000), rng.Int64N(256_000), 200_000 + rng.Int64N(2_000_000)}[rng.IntN(5)]
					push(now + d)
				}
			}
		}
		return out, peak
	}
	want, peak := run(0)
	require.Len(t, want, 20_000)
	assert.Greater(t, peak, 3000, "the queue grew while draining")
	for _, fbits := range []uint{3, 5, 8} {
		got, _ := run(fbits)
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		if !assert.Len(t, got, len(want), "fbits %d", fbits) || i < len(want) {
			t.Errorf("fbits %d: event %d is %+v, want %+v", fbits, i, got[i], want[i])
		}
	}
}

// TestQueueJumpsGaps: an event far beyond the ring is reached without
// walking the buckets in between one by one forever, and the ring's
// coarse buckets go on from there: events near it, within the horizon or
// beyond it again, come out in order.
func TestQueueJumpsGaps(t *testing.T) {
	for _, q := range []*queue{newQueue(10, 2), newLadder(10, 4, 2)} {
		far := int64(1) << 50
		want := []int64{5, far, far + 7, far + 25, far + 90, far + 200, far + 5000}
		for _, i := range []int{1, 0, 4, 2, 6, 3, 5} {
			q.push(event{at: want[i]})
		}
		var got []int64
		for q.len() > 0 {
			e, ok := q.pop()
			require.True(t, ok, "the queue holds q.len() events")
			got = append(got, e.at)
		}
		assert.Equal(t, want, got, "fbits %d", q.fbits)
	}
}

// TestQueueNoAllocs: in steady state push and pop reuse their buffers.
func TestQueueNoAllocs(t *testing.T) {
	q := newQueue(1000, 8)
	rng := rand.New(rand.NewPCG(3, 4))
	now := int64(0)
	for range 10_000 {
		q.push(event{at: rng.Int64N(1_000_000)})
	}
	step := func() {
		e, _ := q.pop()
		now = e.at
		q.push(event{at: now + rng.Int64N(1_000_000)})
	}
	for range 200_000 { // let every bucket grow to its size
		step()
	}
	assert.Zero(t, testing.AllocsPerRun(10_000, step))
}

func BenchmarkQueue(b *testing.B) {
	q := newQueue(int64(10e6), 14)
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1_000_000 {
		q.push(event{at: int64(rng.ExpFloat64() * 60e9)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e, _ := q.pop()
		q.push(event{at: e.at + int64(rng.ExpFloat64()*60e9)})
	}
}

// TestQueueStableFIFO: events of the same time come out in the order they
// were pushed, whether the bucket is sorted by insertion (a few events) or
// by the radix sort (many, over several 8-bit passes of a wide bucket),
// whether they reached their fine bucket directly or through a coarse
// bucket spread into it, and an event pushed into the bucket being drained
// goes after those of its time already there. (Events beyond the ring's
// horizon pass through the far heap, whose order among equal times is
// deterministic but not FIFO: this test keeps to the ring.)
func TestQueueStableFIFO(t *testing.T) {
	for _, n := range []int{5, 31, 32, 5000} {
		rng := rand.New(rand.NewPCG(uint64(n), 9))
		// 2^20 ns a bucket: three radix passes; coarse buckets of 4.
		q := newLadder(1<<20, 4, 2)
		var id uint32
		// Few distinct times, so that ties are common, whose offsets in
		// their bucket differ in every byte (so that each of the three
		// radix passes sorts), spread over the ring's first 9 buckets
		// from the bucket b.
		at := func(b int64) int64 { return (b+rng.Int64N(9))<<20 + rng.Int64N(8)*0x10101 }
		for range n {
			q.push(event{at: at(0), id: id})
			id++
		}
		var last event
		first := true
		for q.len() > 0 {
			e, ok := q.pop()
			require.True(t, ok)
			if !first {
				require.GreaterOrEqual(t, e.at, last.at, "n=%d: time order", n)
				if e.at == last.at {
					require.Greater(t, e.id, last.id, "n=%d: same time, push order", n)
				}
			}
			if id < uint32(3*n) {
				switch rng.IntN(3) {
				case 0:
					// Into the current bucket, at the time just popped:
					// after the events of that time still queued.
					q.push(event{at: e.at, id: id})
					id++
				case 1:
					// Into a later bucket, directly or through its coarse
					// bucket: after the events of its time pushed before.
					q.push(event{at: max(at(e.at>>20), e.at), id: id})
					id++
				}
			}
			last, first = e, false
		}
	}
}

// TestQueuePoolFollowsEvents: the chunks a queue makes follow the events
// it holds at once, not the buckets they passed through: bursts of one
// size, spread over every bucket, cost a chunk per 128 events plus at most
// one partly filled chunk per bucket, however many bursts pass.
func TestQueuePoolFollowsEvents(t *testing.T) {
	q := newQueue(1000, 10) // 1,024 buckets of 1 µs
	rng := rand.New(rand.NewPCG(7, 8))
	const burst = 20_000
	now := int64(0)
	wave := func() {
		for range burst {
			q.push(event{at: now + rng.Int64N(1_000_000)})
		}
		for q.len() > 0 {
			e, ok := q.pop()
			require.True(t, ok, "the queue holds q.len() events")
			now = e.at
		}
	}
	wave()
	made := len(q.next)
	assert.LessOrEqual(t, made, burst/chunkLen+1024, "a chunk per 128 events, plus at most one partial chunk per bucket")
	assert.Len(t, q.free, made, "every chunk is back in the pool once the queue is empty")
	for range 10 {
		wave()
	}
	assert.LessOrEqual(t, len(q.next), burst/chunkLen+1024, "later bursts reuse the pool")
	assert.Len(t, q.free, len(q.next))
}

// pop removes and returns the earliest event, as the run loop takes it
// (peek, then skip); ok is false when the queue is empty.
func (q *queue) pop() (event, bool) {
	e, ok := q.peek()
	if ok {
		q.skip()
	}
	return e, ok
}

// TestDivider: the multiply gives the quotient for every divisor shape
// (1, powers of two, odd, the simulator's 10 ms, the largest) and
// dividends up to the largest int64, the edges around multiples included.
func TestDivider(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, d := range []int64{1, 2, 3, 7, 10, 1000, 1 << 20, 10_000_000, 1<<62 + 1, math.MaxInt64 - 1, math.MaxInt64} {
		v := newDivider(d)
		check := func(n int64) {
			if n >= 0 {
				require.Equal(t, n/d, v.of(n), "%d / %d", n, d)
			}
		}
		for _, n := range []int64{0, 1, d - 1, d, d + 1, math.MaxInt64, math.MaxInt64 - 1} {
			check(n)
		}
		for range 20_000 {
			n := rng.Int64()
			check(n)
			check(n / d * d)
			check(n/d*d - 1)
			check(rng.Int64N(1 << 40))
		}
	}
	q := newQueue(10, 2)
	assert.Equal(t, int64(-1), q.bucketOf(-10), "before the run: divided as before")
}
