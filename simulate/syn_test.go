package simulate

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSynQueuesOrder: retransmits pushed in time order per retransmit come
// out in time order across the queues (the lowest retransmit first among
// equal times), none is lost, and a push that would break a queue's order
// is refused so that the caller can use the event queue.
func TestSynQueuesOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	s := newSynQueues()
	cl := make([]client, 1)
	var last [synRetries]int64
	type pushed struct {
		at int64
		k  int
	}
	var want []pushed
	for range 20_000 {
		k := 1 + rng.IntN(synRetries)
		last[k-1] += rng.Int64N(3) // equal times too
		require.True(t, s.push(k, event{at: last[k-1], arg: uint8(k)}))
		want = append(want, pushed{last[k-1], k})
	}
	got := 0
	prev := pushed{math.MinInt64, 0}
	for s.next != math.MaxInt64 {
		e := s.pop(cl)
		cur := pushed{e.at, int(e.arg)}
		assert.True(t, cur.at > prev.at || cur.at == prev.at && cur.k >= prev.k, "out of order: %v after %v", cur, prev)
		prev = cur
		got++
	}
	assert.Equal(t, len(want), got)
	for k := 1; k <= synRetries; k++ {
		assert.Empty(t, s.q[k-1].ev[s.q[k-1].head:])
	}

	require.True(t, s.push(2, event{at: 100}))
	assert.False(t, s.push(2, event{at: 99}), "a push before the queue's tail is refused")
	assert.True(t, s.push(3, event{at: 99}), "another queue is independent")
	assert.Equal(t, int64(99), s.next)
}
