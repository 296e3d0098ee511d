package simulate

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQueueOrder: events come out in time order, whatever the order and
// spread they were pushed in (inside the ring, beyond its horizon, into
// the bucket being drained), and none is lost.
func TestQueueOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	q := newQueue(1000, 4) // 16 buckets of 1 µs: a small ring, so the far heap works too
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
		require.GreaterOrEqual(t, e.at, now, "time never runs backwards")
		now = e.at
		got = append(got, e.at)
		if len(want) < 6000 {
			// Push while draining: into the current bucket, the ring and
			// the far heap.
			push([]int64{0, 1, rng.Int64N(16_000), rng.Int64N(1_000_000)}[rng.IntN(4)])
		}
	}
	_, ok := q.pop()
	assert.False(t, ok)
	slices.Sort(want)
	assert.Equal(t, want, got)
}

// TestQueueJumpsGaps: an event far beyond the ring is reached without
// walking the buckets in between one by one forever.
func TestQueueJumpsGaps(t *testing.T) {
	q := newQueue(10, 2)
	q.push(event{at: 1 << 50})
	q.push(event{at: 5})
	e, _ := q.pop()
	assert.Equal(t, int64(5), e.at)
	e, _ = q.pop()
	assert.Equal(t, int64(1<<50), e.at)
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
