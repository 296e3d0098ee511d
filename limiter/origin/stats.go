package origin

import (
	"math"
	"sync/atomic"
	"time"
)

// counters are a Guard's Stats, kept with atomics so that a decision and
// its record take no lock.
type counters struct {
	outcomes           [outcomes]atomic.Int64
	bgCalls            atomic.Int64 // Background calls; the rest are Foreground
	laneRefused        [lanes]atomic.Int64
	held, heldTime     atomic.Int64
	refusedBudget      atomic.Int64
	refusedConcurrency atomic.Int64
	refusedDeadline    atomic.Int64
	classifyPanics     atomic.Int64
	latency            atomic.Int64
	// ewma is the mean latency of recent calls in ns, as float64 bits (0
	// before the first call), moved by compare-and-swap.
	ewma atomic.Uint64
}

// ewmaWeight is the weight of a new latency in the mean: about the last
// 20 calls.
const ewmaWeight = 1.0 / 20

// add counts one call in lane with outcome o (below Refused).
func (c *counters) add(lane Lane, o Outcome, latency time.Duration) {
	c.outcomes[o].Add(1)
	if lane == Background {
		c.bgCalls.Add(1)
	}
	c.latency.Add(int64(latency))
	x := float64(latency)
	for {
		old := c.ewma.Load()
		m := math.Float64frombits(old)
		if old == 0 {
			m = x
		} else {
			m += (x - m) * ewmaWeight
		}
		if c.ewma.CompareAndSwap(old, math.Float64bits(m)) {
			return
		}
	}
}

// meanLatency returns the mean latency of recent calls, or def before the
// first call.
func (c *counters) meanLatency(def time.Duration) time.Duration {
	if m := math.Float64frombits(c.ewma.Load()); m > 0 {
		return time.Duration(m)
	}
	return def
}

func (c *counters) stats() Stats {
	var s Stats
	for o := range s.Outcomes {
		s.Outcomes[o] = c.outcomes[o].Load()
		if Outcome(o) != Refused {
			s.Calls += s.Outcomes[o]
		}
	}
	s.LaneCalls[Background] = c.bgCalls.Load()
	s.LaneCalls[Foreground] = max(s.Calls-s.LaneCalls[Background], 0)
	for l := range s.LaneRefused {
		s.LaneRefused[l] = c.laneRefused[l].Load()
	}
	s.Held = c.held.Load()
	s.HeldTime = time.Duration(c.heldTime.Load())
	s.RefusedBudget = c.refusedBudget.Load()
	s.RefusedConcurrency = c.refusedConcurrency.Load()
	s.RefusedDeadline = c.refusedDeadline.Load()
	s.ClassifyPanics = c.classifyPanics.Load()
	s.Latency = time.Duration(c.latency.Load())
	s.MeanLatency = time.Duration(math.Float64frombits(c.ewma.Load()))
	return s
}
