package wire

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/herdcap/herdcap/invalidate"
)

func TestNoticeQueueOrderAndSkip(t *testing.T) {
	var q NoticeQueue
	var applied atomic.Uint64
	applied.Store(2)
	var got []uint64
	f := func(n invalidate.Notice) {
		assert.Greater(t, n.Epoch, applied.Load(), "applied is stored after f returns")
		got = append(got, n.Epoch)
	}
	q.Deliver([]invalidate.Notice{{Epoch: 5}, {Epoch: 1}, {Epoch: 3}, {Epoch: 3}, {Epoch: 2}, {Epoch: 4}}, &applied, f)
	assert.Equal(t, []uint64{3, 4, 5}, got, "sorted, each once, none at or below the applied epoch")
	assert.EqualValues(t, 5, applied.Load())
	q.Deliver(nil, &applied, f)
	q.Deliver([]invalidate.Notice{{Epoch: 5}}, &applied, f)
	assert.Equal(t, []uint64{3, 4, 5}, got)
}

func TestNoticeQueueSurvivesAPanickingCallback(t *testing.T) {
	var q NoticeQueue
	var applied atomic.Uint64
	boom := func(n invalidate.Notice) {
		if n.Epoch == 2 {
			panic("boom")
		}
	}
	ns := []invalidate.Notice{{Epoch: 1}, {Epoch: 2}, {Epoch: 3}}
	assert.Panics(t, func() { q.Deliver(ns, &applied, boom) })
	assert.EqualValues(t, 1, applied.Load(), "epoch 2 was not applied")
	var got []uint64
	q.Deliver(ns, &applied, func(n invalidate.Notice) { got = append(got, n.Epoch) })
	assert.Equal(t, []uint64{2, 3}, got, "the queue is not stuck, and resumes at the first unapplied notice")
}

// TestNoticeQueueConcurrent delivers overlapping notice lists from many
// goroutines, as concurrent responses do: every epoch is applied once, in
// ascending order, and the callback never runs twice at once. Like a server,
// which sends every notice above the epoch a request carries, each
// goroutine delivers every epoch from 1 up, in order (in windows that
// overlap), so none is skipped for being below one applied earlier.
func TestNoticeQueueConcurrent(t *testing.T) {
	const goroutines, epochs, window = 8, 200, 10
	var q NoticeQueue
	var applied atomic.Uint64
	var running atomic.Int32
	var overlap atomic.Bool
	var got []uint64 // written only by the callback, which never overlaps itself
	f := func(n invalidate.Notice) {
		if running.Add(1) != 1 {
			overlap.Store(true)
		}
		got = append(got, n.Epoch)
		running.Add(-1)
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		step := uint64(1 + g%window) // each goroutine overlaps its windows differently
		wg.Go(func() {
			for start := uint64(1); start <= epochs; start += step {
				var ns []invalidate.Notice
				for e := start; e < start+window && e <= epochs; e++ {
					ns = append(ns, invalidate.Notice{Epoch: e})
				}
				q.Deliver(ns, &applied, f)
			}
		})
	}
	wg.Wait()
	// Every Deliver has returned, and the one applying returns only when
	// the queue is empty: everything has been applied.
	want := make([]uint64, epochs)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	assert.False(t, overlap.Load(), "the callback ran twice at once")
	assert.Equal(t, want, got)
	assert.EqualValues(t, epochs, applied.Load())
}
