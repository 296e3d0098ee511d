package simulate

import "math"

// SettleMarginS is how long after the limit met its mark a phase of a
// capacity change counts as settled (Result.LimitSwing): a few control
// intervals, for the limit's step to the new capacity to end.
const SettleMarginS = 10

// headroomMetrics computes r's figures against the origin's physical
// limit and, with a capacity change, the adaptive limit's (see Result's
// PhysicalS, PeakOverCapacity and LimitDropS).
func (r *Result) headroomMetrics(sc *Scenario, trig int) {
	s := r.Series
	secs := len(s.OriginCalls)
	capacity := sc.Origin.Capacity
	r.PeakCapacityWindowS = float64(peakWindow(capacity, originLimit(capacity).Burst, secs))
	share := make([]float64, secs)
	for i := range secs {
		share[i] = s.OriginCalls[i] / sc.Origin.capacityAt(i)
	}
	r.PeakOverCapacity = round6(windowPeak(share, int(r.PeakCapacityWindowS)))

	r.PhysicalS, r.ConvergeOverPhysical = -1, -1
	if k := sc.Trigger.Kind; (k == KindRogueInvalidate || k == KindIncident) && capacity > r.SteadyRPS && r.Converged {
		// The storm's work at the origin, measured: the calls above the
		// steady load from the trigger until the fleet converged. A
		// configured calls-per-client would flatter a run that paces by
		// it: told clients whose refetch the node cache answers cost the
		// origin nothing.
		end := min(secs, trig+int(math.Ceil(r.ConvergeS)))
		excess := 0.0
		for i := trig; i < end; i++ {
			excess += s.OriginCalls[i] - r.SteadyRPS
		}
		r.PhysicalS = round6(math.Max(excess, 0) / (capacity - r.SteadyRPS))
		r.ConvergeOverPhysical = round6(r.ConvergeS / max(r.PhysicalS, sc.Protection.MinDuration.Seconds()))
	}

	r.LimitDropS, r.LimitReturnS = -1, -1
	if sc.Protection.Headroom == nil || r.Mode != Protected {
		return
	}
	for _, c := range sc.Origin.Changes {
		if c.Factor >= 1 || c.For == 0 {
			continue
		}
		drop, back := int(c.At.Seconds()), int((c.At + c.For).Seconds())
		lim := s.Limit
		// Limit[k] is the limit at the end of second k: k+1 − drop
		// seconds after the drop.
		met := func(from, to int, ok func(float64) bool) int {
			for k := from; k < min(to, secs); k++ {
				if ok(lim[k]) {
					return k
				}
			}
			return -1
		}
		low := capacity * c.Factor
		var swing float64
		if k := met(drop, back, func(l float64) bool { return l <= 1.1*low }); k >= 0 {
			r.LimitDropS = float64(k + 1 - drop)
			swing = max(swing, swingOf(lim[min(k+SettleMarginS, back):back]))
		}
		if k := met(back, secs, func(l float64) bool { return l >= 0.9*capacity }); k >= 0 {
			r.LimitReturnS = float64(k + 1 - back)
			swing = max(swing, swingOf(lim[min(k+SettleMarginS, secs):]))
		}
		r.LimitSwing = round6(swing)
		break
	}
}

// swingOf is max ÷ min − 1 of x (0 when empty or not positive).
func swingOf(x []float64) float64 {
	lo, hi := math.Inf(1), 0.0
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	if len(x) == 0 || lo <= 0 {
		return 0
	}
	return hi/lo - 1
}
