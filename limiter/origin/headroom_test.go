package origin_test

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// testHeadroom is a Headroom whose limit and spare the test sets, and
// which counts what the guard reports, by lane and outcome. It allocates
// nothing once made.
type testHeadroom struct {
	limit   atomic.Pointer[limiter.Limit]
	spare   atomic.Uint64 // float64 bits
	reports [2][6]atomic.Int64
	latency atomic.Int64
}

var _ origin.Headroom = (*testHeadroom)(nil)

func newTestHeadroom(l limiter.Limit, spare float64) *testHeadroom {
	h := &testHeadroom{}
	h.set(l, spare)
	return h
}

func (h *testHeadroom) set(l limiter.Limit, spare float64) {
	h.limit.Store(&l)
	h.spare.Store(math.Float64bits(spare))
}

func (h *testHeadroom) Limit() limiter.Limit { return *h.limit.Load() }

func (h *testHeadroom) Spare() float64 { return math.Float64frombits(h.spare.Load()) }

func (h *testHeadroom) Record(lane origin.Lane, latency time.Duration, o origin.Outcome) {
	h.reports[lane][o].Add(1)
	h.latency.Add(int64(latency))
}

// got returns how many reports of o in lane the guard made.
func (h *testHeadroom) got(lane origin.Lane, o origin.Outcome) int64 {
	return h.reports[lane][o].Load()
}

// total returns how many reports the guard made.
func (h *testHeadroom) total() int64 {
	var n int64
	for l := range h.reports {
		for o := range h.reports[l] {
			n += h.reports[l][o].Load()
		}
	}
	return n
}
